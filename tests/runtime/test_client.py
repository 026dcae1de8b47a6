"""The Python client (`durable_agents_runtime.client`) against the session's dev server and real worker
processes: a run that waits for an approval, streamed and decided through the client; a session turn
streamed; health; and the blocking client for code without an event loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import approval_agents
import pytest
from pydantic_ai.messages import FunctionToolCallEvent, PartDeltaEvent, TextPartDelta
from pydantic_ai.run import AgentRunResultEvent
from test_approvals import declarative
from test_runs import config

from durable_agents_api.contract import Decision, Decisions, SessionReply
from durable_agents_runtime.client import AgentsClient, SyncAgentsClient
from durable_agents_runtime.errors import DecisionError, RunNotFoundError

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
WAIT = 60.0


@pytest.fixture(scope="module")
def queues(
    temporal_dev_server: Any, start_module_worker: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Task queues of two workers started side by side: `files` (its delete_file waits for approval) and
    `echo` (a session agent that streams its reply word by word)."""
    log = tmp_path_factory.mktemp("client") / "calls.jsonl"
    files = declarative(temporal_dev_server)
    echo = config(temporal_dev_server, {"name": "session_echo", "entrypoint": "session_agents:echo"})
    env = {"PYTHONPATH": str(HERE), approval_agents.ENV_LOG: str(log)}
    workers = [start_module_worker(cfg, wait=False, **env) for cfg in (files, echo)]
    for worker in workers:
        worker.wait_ready(180)
    return {"files": files.temporal.task_queue, "echo": echo.temporal.task_queue}


async def pending_of(agents: AgentsClient, run_id: str) -> list[Any]:
    async def first() -> list[Any]:
        while not (calls := await agents.pending_calls(run_id)):
            await asyncio.sleep(0.2)
        return calls

    return await asyncio.wait_for(first(), WAIT)


async def test_a_run_is_started_streamed_approved_and_its_output_read(
    temporal_dev_server: Any, queues: dict[str, str]
) -> None:
    agents = await AgentsClient.connect(
        address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
    )
    run_id = await agents.start_run(queues["files"], "tidy up", watch=True)

    async def collect() -> list[Any]:
        return [event async for event in agents.run_events(run_id)]

    events = asyncio.create_task(collect())
    [call] = await pending_of(agents, run_id)
    assert call.tool_name == "delete_file"
    [summary] = [r for r in await agents.list_runs(queues["files"]) if r.run_id == run_id]
    assert summary.status == "running" and [c.tool_call_id for c in summary.pending or []] == [
        call.tool_call_id
    ]

    outcome = await agents.decide(
        run_id,
        Decisions(decisions=[Decision(tool_call_id=call.tool_call_id, approve=True)], decided_by="ada"),
    )
    output = await asyncio.wait_for(agents.result(run_id), WAIT)
    seen = await asyncio.wait_for(events, WAIT)

    assert outcome.decided == [call.tool_call_id]
    assert output.output == "model was told: deleted a.txt"
    assert any(isinstance(e, FunctionToolCallEvent) and e.part.tool_name == "delete_file" for e in seen)
    assert isinstance(seen[-1], AgentRunResultEvent)
    assert (await agents.describe_run(run_id)).status == "completed"
    # A finished run refuses decisions, and an unknown one is named as such.
    with pytest.raises(DecisionError, match="finished"):
        await agents.decide(run_id, Decisions(all="approve", decided_by="ada"))
    with pytest.raises(RunNotFoundError, match="no run 'run-nope'"):
        await agents.describe_run("run-nope")
    health = await agents.health([queues["files"]])
    assert health[queues["files"]].workers >= 1 and health[queues["files"]].completed >= 1


async def test_a_session_reply_streams_as_it_is_written_and_lands_in_history(
    temporal_dev_server: Any, queues: dict[str, str]
) -> None:
    agents = await AgentsClient.connect(
        address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
    )
    session = f"s-{uuid.uuid4().hex[:8]}"
    common = {"agent": "session_echo", "task_queue": queues["echo"], "session_id": session}

    items = [item async for item in agents.stream_message(prompt="hello there", **common)]

    reply = items[-1]
    assert isinstance(reply, SessionReply) and reply.turn == 1
    assert reply.output_text.strip() == "reply to 'hello there' after 1 prompts"
    deltas = "".join(
        e.delta.content_delta
        for e in items
        if isinstance(e, PartDeltaEvent) and isinstance(e.delta, TextPartDelta)
    )
    assert "after 1 prompts" in deltas
    history = await agents.session_history(**common)
    assert [e.role for e in history] == ["user", "agent"]
    assert session in [s.session_id for s in await agents.list_sessions(queues["echo"])]


def test_the_blocking_client_runs_a_turn_and_decides_a_call(
    temporal_dev_server: Any, queues: dict[str, str]
) -> None:
    with SyncAgentsClient.connect(
        address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
    ) as agents:
        reply = agents.send_message(
            agent="session_echo",
            task_queue=queues["echo"],
            session_id=f"s-{uuid.uuid4().hex[:8]}",
            prompt="hi",
        )
        assert reply.output_text == "reply to 'hi' after 1 prompts"
        run_id = agents.start_run(queues["files"], "tidy up")
        for _ in range(int(WAIT / 0.2)):
            if agents.pending_calls(run_id):
                break
            time.sleep(0.2)
        agents.decide(run_id, Decisions(all="deny", reason="keep it", decided_by="ada"))
        output = agents.result(run_id, timeout=WAIT)
        assert "ada denied this call: keep it" in output.output_text
