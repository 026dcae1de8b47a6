"""Tool calls that wait for a person: a real dev server, real worker processes, decisions by Temporal Update.

Each model request and tool execution is counted in a file outside the worker (`approval_agents`), so the
tests see that a waiting run resumes where it was: no tool runs twice, no model request is repeated.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import approval_agents
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from test_runs import config

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import (
    APPROVALS_QUERY,
    DECIDE_UPDATE,
    WORKFLOW_NAME,
    Decision,
    DecisionOutcome,
    Decisions,
    PendingCall,
    RunInput,
    RunOutput,
)

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
WAIT = 60.0
"""Seconds a test waits for a run to reach a state (generous: a loaded 2-core machine)."""


def declarative(temporal: Any, model: str = "deleting", **approvals: Any) -> RuntimeConfig:
    agent = {
        "name": "files",
        "model": f"python:approval_agents:{model}",
        "toolsets": [{"id": "files", "entrypoint": "approval_agents:files"}],
    }
    rules = {"tools": [{"toolset": "files", "tool": "delete_*"}], **approvals}
    return config(temporal, agent, approvals=rules)


def code(temporal: Any, name: str, **approvals: Any) -> RuntimeConfig:
    sections = {"approvals": approvals} if approvals else {}
    return config(temporal, {"name": name, "entrypoint": f"approval_agents:{name}"}, **sections)


def env(log: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(HERE), approval_agents.ENV_LOG: str(log)}


def counted(log: Path, kind: str, name: str | None = None) -> int:
    if not log.exists():
        return 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return sum(1 for x in lines if x["kind"] == kind and (name is None or x.get("name") == name))


async def start(client: Client, cfg: RuntimeConfig) -> WorkflowHandle[Any, RunOutput]:
    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="tidy up"),
        id=f"approval-{uuid.uuid4()}",
        task_queue=cfg.temporal.task_queue,
        result_type=RunOutput,
    )


async def pending(handle: WorkflowHandle[Any, Any], count: int = 1) -> list[PendingCall]:
    """The run's pending calls, once there are `count` of them."""
    deadline = time.monotonic() + WAIT
    while True:
        calls = await handle.query(APPROVALS_QUERY, result_type=list[PendingCall])
        if len(calls) >= count:
            return calls
        assert time.monotonic() < deadline, f"the run never waited for {count} decision(s): {calls}"
        await asyncio.sleep(0.2)


async def decide(handle: WorkflowHandle[Any, Any], **decisions: Any) -> DecisionOutcome:
    return await handle.execute_update(
        DECIDE_UPDATE, Decisions(decided_by="ada", **decisions), result_type=DecisionOutcome
    )


async def test_an_approved_call_runs_once_and_the_model_sees_its_result(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)

    [call] = await pending(handle)
    assert (call.tool_name, call.kind) == ("delete_file", "approval")
    assert json.loads(call.args_preview) == {"path": "a.txt"}
    assert call.expires_at is not None and (call.expires_at - call.requested_at).total_seconds() == 24 * 3600
    assert counted(log, "tool", "delete_file") == 0

    outcome = await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
    result = await handle.result()

    assert outcome == DecisionOutcome(decided=[call.tool_call_id], pending=[])
    assert result.output == "model was told: deleted a.txt"
    assert counted(log, "tool", "delete_file") == 1
    assert counted(log, "model") == 2
    # Who decided is in the workflow history (the Update's input).
    history = json.dumps((await handle.fetch_history()).to_json_dict())
    assert "ada" in history


async def test_a_denied_call_does_not_run_and_the_model_sees_the_reason(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)

    await decide(
        handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=False, reason="keep it")]
    )
    result = await handle.result()

    assert "ada denied this call: keep it" in result.output
    assert counted(log, "tool", "delete_file") == 0


async def test_decisions_that_cannot_apply_are_refused_and_change_nothing(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server, model="deleting_two")
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    first, second = await pending(handle, 2)

    with pytest.raises(WorkflowUpdateFailedError) as unknown:
        await decide(handle, decisions=[Decision(tool_call_id="no-such-call", approve=True)])
    assert "no pending call 'no-such-call'" in str(unknown.value.cause)
    assert first.tool_call_id in str(unknown.value.cause)  # it says which calls are pending
    with pytest.raises(WorkflowUpdateFailedError) as no_choice:
        await decide(handle, decisions=[Decision(tool_call_id=first.tool_call_id)])
    assert "approve or deny it" in str(no_choice.value.cause)
    assert len(await pending(handle, 2)) == 2  # nothing changed

    # One by one: the run waits until both are decided.
    outcome = await decide(handle, decisions=[Decision(tool_call_id=first.tool_call_id, approve=True)])
    assert outcome.pending == [second.tool_call_id]
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await decide(handle, decisions=[Decision(tool_call_id=first.tool_call_id, approve=False)])
    assert "already decided (by ada)" in str(twice.value.cause)
    assert counted(log, "tool", "delete_file") == 0

    await decide(handle, decisions=[Decision(tool_call_id=second.tool_call_id, approve=False, reason="no")])
    result = await handle.result()
    assert "deleted a.txt" in result.output and "ada denied this call: no" in result.output
    assert counted(log, "tool", "delete_file") == 1


async def test_all_pending_approvals_decided_at_once_and_unlisted_tools_run_freely(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server, model="listing_and_deleting")
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)
    assert call.tool_name == "delete_file"  # list_files needs no approval

    outcome = await decide(handle, all="approve")
    result = await handle.result()

    assert outcome.decided == [call.tool_call_id]
    assert "deleted a.txt" in result.output and "a.txt" in result.output
    assert (counted(log, "tool", "list_files"), counted(log, "tool", "delete_file")) == (1, 1)


async def test_no_decision_in_time_denies_the_call_and_the_model_is_told(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server, timeout="2s")
    start_worker(cfg, **env(log))

    result = await (await start(temporal_client, cfg)).result()

    assert "no decision within 2s: the call was not made" in result.output
    assert counted(log, "tool", "delete_file") == 0


async def test_no_decision_in_time_fails_the_run_when_the_policy_says_fail(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    cfg = declarative(temporal_dev_server, timeout="2s", onTimeout="fail")
    start_worker(cfg, **env(tmp_path / "calls.jsonl"))

    with pytest.raises(WorkflowFailureError) as failed:
        await (await start(temporal_client, cfg)).result()

    message = str(failed.value.cause)
    assert "no decision on delete_file" in message and "approvals.onTimeout is fail" in message


async def test_a_waiting_run_survives_its_worker_being_killed_and_resumes_where_it_was(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    worker = start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)
    worker.kill()
    start_worker(cfg, **env(log))

    # The new worker rebuilds the pending call by replay, then takes the decision.
    [again] = await pending(handle)
    assert again.tool_call_id == call.tool_call_id
    await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
    result = await handle.result()

    assert result.output == "model was told: deleted a.txt"
    assert counted(log, "tool", "delete_file") == 1
    assert counted(log, "model") == 2  # the first model request was not made again


async def test_a_code_agent_with_requires_approval_waits_the_same_way(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = code(temporal_dev_server, "code_approval")
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)
    assert call.tool_name == "wire_money"

    await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])

    assert (await handle.result()).output == "model was told: wired 10"
    assert counted(log, "tool", "wire_money") == 1


async def test_an_agent_durable_in_code_waits_with_wait_for_decisions_and_is_warned_about_without(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = code(temporal_dev_server, "durable_approval")
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)
    assert call.tool_name == "wire_money"
    await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
    assert (await handle.result()).output == "model was told: wired 20"
    assert counted(log, "tool", "wire_money") == 1

    without = start_worker(code(temporal_dev_server, "durable_without_waiting"), **env(log))
    assert "durable in code without WaitForDecisions" in without.tail()


async def test_external_input_answers_a_deferred_call_with_its_result(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = code(temporal_dev_server, "asking")
    start_worker(cfg, **env(log))
    handle = await start(temporal_client, cfg)
    [call] = await pending(handle)
    assert (call.tool_name, call.kind) == ("ask_user", "external")

    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
    assert "answer it with the result" in str(wrong.value.cause)
    await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, result="Lisbon")])

    assert (await handle.result()).output == "model was told: Lisbon"
    assert counted(log, "tool", "ask_user") == 1


def test_approval_rules_are_refused_for_code_agents_with_the_fix(temporal_dev_server: Any):
    from durable_agents_runtime.agents import build_agent
    from durable_agents_runtime.errors import AgentLoadError

    cfg = RuntimeConfig.model_validate(
        {
            **code(temporal_dev_server, "code_approval").to_api(),
            "approvals": {"tools": [{"tool": "wire_money"}]},
        }
    )
    sys.path.insert(0, str(HERE))
    with pytest.raises(AgentLoadError, match="requires_approval=True"):
        build_agent(cfg)


async def test_a_waiting_run_survives_temporal_and_every_worker_being_killed(
    tmp_path: Path, start_worker: Any
):
    import os
    import signal

    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    from durable_agents_runtime.devserver import DevServer

    log = tmp_path / "calls.jsonl"
    server = DevServer(tmp_path / "temporal").start()
    try:
        cfg = declarative(server)
        worker = start_worker(cfg, **env(log))
        client = await Client.connect(
            server.address, namespace=server.namespace, plugins=[PydanticAIPlugin()]
        )
        handle = await start(client, cfg)
        [call] = await pending(handle)

        worker.kill()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        server.stop()  # reaps it and releases the state directory
        server = DevServer(
            server.state_dir,
            port=server.port,
            http_port=server.http_port,
            metrics_port=server.metrics_port,
            namespace=server.namespace,
        ).start()
        start_worker(cfg, **env(log))
        client = await Client.connect(
            server.address, namespace=server.namespace, plugins=[PydanticAIPlugin()]
        )
        handle = client.get_workflow_handle(handle.id, result_type=RunOutput)

        [again] = await pending(handle)
        await decide(handle, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
        result = await handle.result()
    finally:
        server.stop()

    assert again.tool_call_id == call.tool_call_id
    assert result.output == "model was told: deleted a.txt"
    assert (counted(log, "tool", "delete_file"), counted(log, "model")) == (1, 2)


async def test_a_session_turn_waits_for_approval_and_goes_on_once_decided(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
):
    from durable_agents_api.contract import SessionMessage
    from durable_agents_runtime import decisions
    from durable_agents_runtime.errors import DecisionError
    from durable_agents_runtime.session_client import start_message

    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    start_worker(cfg, **env(log))
    update = await start_message(
        temporal_client,
        agent="files",
        task_queue=cfg.temporal.task_queue,
        session_id=f"s-{uuid.uuid4().hex[:8]}",
        message=SessionMessage(prompt="tidy up"),
    )
    session = temporal_client.get_workflow_handle(update.workflow_id)

    [call] = await pending(session)
    assert (call.tool_name, call.turn_id) == ("delete_file", update.id)
    assert counted(log, "tool", "delete_file") == 0
    with pytest.raises(DecisionError, match=r"has no pending call 'nope'.*nothing changed"):
        await decisions.decide(
            session, Decisions(decided_by="ada", decisions=[Decision(tool_call_id="nope", approve=True)])
        )

    await decide(session, decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)])
    reply = await asyncio.wait_for(update.result(), WAIT)

    assert (reply.output, reply.turn) == ("model was told: deleted a.txt", 1)
    assert counted(log, "tool", "delete_file") == 1
    assert await session.query(APPROVALS_QUERY, result_type=list[PendingCall]) == []
