"""Approvals through the operator, with a real dev server and a real `durable-agents worker` process: an
AgentRun that waits shows it in status, ToolApprovals decide its calls through the decide Update, and
refusals change nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import kopf
import pytest
from operator_support import (
    API,
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    make_real_operator,
    roll_out,
)

from durable_agents_api.config import RuntimeConfig
from durable_agents_operator.handlers import agentrun, durableagent, toolapproval
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.operator_state import Operator

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]

RUNTIME_TESTS = Path(__file__).parents[1] / "runtime"
RUN = ObjectKey(API, "AgentRun", "ns", "tidy")


def status(kube: FakeKube, key: ObjectKey) -> dict[str, Any]:
    return kube.objects[key].get("status") or {}


def put_approval(kube: FakeKube, name: str, **spec: Any) -> ObjectKey:
    kube.put(
        {
            "apiVersion": API,
            "kind": "ToolApproval",
            "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4())},
            "spec": {"runRef": {"name": "tidy"}, **spec},
        }
    )
    return ObjectKey(API, "ToolApproval", "ns", name)


async def poll_until(ops: Operator, kube: FakeKube, done: Any, what: str) -> dict[str, Any]:
    for _ in range(300):
        await agentrun.poll(ops, kube.body(RUN))
        if done(status(kube, RUN)):
            return status(kube, RUN)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run never {what}: {status(kube, RUN)}")


def events(kube: FakeKube, reason: str) -> list[str]:
    return [e["message"] for e in kube.events if e["reason"] == reason]


async def serve_files(
    ops: Operator, kube: FakeKube, start_worker: Any, log: Path, *, model: str, queue: str, **approvals: Any
) -> Any:
    """The `files` agent (approval_agents, `delete_*` needs approval) reconciled and served by a real
    worker; a first AgentRun `tidy` on it is started. The worker process."""
    manifest = agent_manifest(temporal={"taskQueue": f"{queue}-{uuid.uuid4().hex[:8]}"})
    manifest["spec"]["agent"] = {
        "name": "files",
        "model": f"python:approval_agents:{model}",
        "toolsets": [{"id": "files", "entrypoint": "approval_agents:files"}],
    }
    manifest["spec"]["approvals"] = {"tools": [{"toolset": "files", "tool": "delete_*"}], **approvals}
    await durableagent.reconcile(ops, kube.put(manifest))
    rendered = kube.objects[ObjectKey("v1", "ConfigMap", "ns", "hello-runtime")]["data"]["runtime.json"]
    return await asyncio.to_thread(
        start_worker,
        RuntimeConfig.model_validate_json(rendered),
        PYTHONPATH=str(RUNTIME_TESTS),
        APPROVAL_AGENTS_LOG=str(log),
    )


def start_tidy(kube: FakeKube, **spec: Any) -> None:
    run = {"apiVersion": API, "kind": "AgentRun", "metadata": {"name": "tidy", "uid": str(uuid.uuid4())}}
    kube.put({**run, "spec": {"agentRef": {"name": "hello"}, "prompt": "tidy up", **spec}})


async def test_a_waiting_run_is_shown_decided_by_tool_approvals_and_refusals_change_nothing(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    worker = await serve_files(ops, kube, start_worker, log, model="deleting_two", queue="approvals")
    start_tidy(kube)
    await agentrun.start(ops, kube.body(RUN))

    # The run waits: phase, the pending calls, the condition, an Event per call, the agent's count.
    waiting = await poll_until(
        ops, kube, lambda s: len(s.get("pendingApprovals") or []) == 2, "waited for two approvals"
    )
    assert waiting["phase"] == "AwaitingApproval", worker.tail()
    first, second = waiting["pendingApprovals"]
    assert (first["toolName"], first["kind"], json.loads(first["argsPreview"])) == (
        "delete_file",
        "approval",
        {"path": "a.txt"},
    )
    assert first["expiresAt"] is not None
    [cond] = [c for c in waiting["conditions"] if c["type"] == "AwaitingApproval"]
    assert (cond["status"], cond["reason"]) == ("True", "ToolCallsPending")
    assert len(events(kube, "ApprovalRequested")) == 2
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert status(kube, agent_key())["awaitingApproval"] == 1

    # A poll of an unchanged wait does not rewrite the status.
    writes = kube.count("patch_status", "AgentRun")
    await agentrun.poll(ops, kube.body(RUN))
    assert kube.count("patch_status", "AgentRun") == writes

    # Refused: an unknown call id, and a ToolApproval nobody is recorded for. Nothing changes.
    unknown = put_approval(kube, "unknown", toolCallId="no-such-call", decision="Approve", decidedBy="ada")
    await toolapproval.decide(ops, kube.body(unknown))
    refused = status(kube, unknown)
    assert refused["phase"] == "Refused"
    assert (
        "no pending call 'no-such-call'" in refused["message"] and first["toolCallId"] in refused["message"]
    )
    anonymous = put_approval(kube, "anonymous", toolCallId=first["toolCallId"], decision="Approve")
    await toolapproval.decide(ops, kube.body(anonymous))
    assert status(kube, anonymous)["phase"] == "Refused"
    assert "admission policies" in status(kube, anonymous)["message"]
    assert len(await_pending := status(kube, RUN)["pendingApprovals"]) == 2, await_pending
    assert "decisions" not in status(kube, RUN)

    # Approve one: Applied, the other still waits, who decided is on the run.
    one = put_approval(kube, "approve-a", toolCallId=first["toolCallId"], decision="Approve", decidedBy="ada")
    await toolapproval.decide(ops, kube.body(one))
    applied = status(kube, one)
    assert applied["phase"] == "Applied", applied
    assert (applied["decidedCalls"], applied["stillPending"]) == (
        [first["toolCallId"]],
        [second["toolCallId"]],
    )
    # Handled again (an operator restart before the status was written): the same answer, recorded once.
    kube.objects[one].pop("status")
    await toolapproval.decide(ops, kube.body(one))
    assert status(kube, one)["phase"] == "Applied", status(kube, one)
    [record] = status(kube, RUN)["decisions"]
    assert (record["toolCallId"], record["decision"], record["decidedBy"], record["toolApproval"]) == (
        first["toolCallId"],
        "Approve",
        "ada",
        "approve-a",
    )
    assert any("ada approved" in m for m in events(kube, "ToolCallApproved"))
    still = await poll_until(
        ops, kube, lambda s: len(s.get("pendingApprovals") or []) == 1, "showed one call"
    )
    assert still["phase"] == "AwaitingApproval"

    # Deny everything left: the run finishes, the model was told, the denied tool never ran.
    rest = put_approval(kube, "deny-rest", all=True, decision="Deny", reason="keep b", decidedBy="bob")
    await toolapproval.decide(ops, kube.body(rest))
    assert status(kube, rest)["phase"] == "Applied"
    finished = await poll_until(ops, kube, lambda s: s.get("phase") == "Succeeded", "finished")
    assert "deleted a.txt" in finished["output"] and "bob denied this call: keep b" in finished["output"]
    assert finished["pendingApprovals"] == []
    [cond] = [c for c in finished["conditions"] if c["type"] == "AwaitingApproval"]
    assert (cond["status"], cond["reason"]) == ("False", "RunFinished")
    assert [(r["decidedBy"], r["decision"]) for r in finished["decisions"]] == [
        ("ada", "Approve"),
        ("bob", "Deny"),
    ]
    tools = [json.loads(line) for line in log.read_text().splitlines() if '"tool"' in line]
    assert [t.get("path") for t in tools] == ["a.txt"]
    clock.advance(120)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert status(kube, agent_key())["awaitingApproval"] == 0

    # A decision on a finished run is refused clearly.
    late = put_approval(kube, "late", all=True, decision="Approve", decidedBy="ada")
    await toolapproval.decide(ops, kube.body(late))
    assert status(kube, late)["phase"] == "Refused"
    assert "has finished (Succeeded)" in status(kube, late)["message"]


async def test_a_call_waiting_for_input_is_answered_with_a_tool_approvals_result(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any, tmp_path: Path
) -> None:
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    manifest = agent_manifest(temporal={"taskQueue": f"asking-{uuid.uuid4().hex[:8]}"})
    manifest["spec"]["agent"] = {"name": "asking", "entrypoint": "approval_agents:asking"}
    await durableagent.reconcile(ops, kube.put(manifest))
    rendered = kube.objects[ObjectKey("v1", "ConfigMap", "ns", "hello-runtime")]["data"]["runtime.json"]
    await asyncio.to_thread(
        start_worker,
        RuntimeConfig.model_validate_json(rendered),
        PYTHONPATH=str(RUNTIME_TESTS),
        APPROVAL_AGENTS_LOG=str(tmp_path / "calls.jsonl"),
    )
    run = {"apiVersion": API, "kind": "AgentRun", "metadata": {"name": "tidy", "uid": str(uuid.uuid4())}}
    kube.put({**run, "spec": {"agentRef": {"name": "hello"}, "prompt": "plan a trip"}})
    await agentrun.start(ops, kube.body(RUN))
    waiting = await poll_until(ops, kube, lambda s: s.get("phase") == "AwaitingApproval", "waited for input")
    [pending] = waiting["pendingApprovals"]
    assert (pending["toolName"], pending["kind"]) == ("ask_user", "external")
    assert any("waits for its result from outside" in m for m in events(kube, "ApprovalRequested"))

    # Approving a call that waits for a result is refused, saying what it needs.
    wrong = put_approval(
        kube, "approve-input", toolCallId=pending["toolCallId"], decision="Approve", decidedBy="ada"
    )
    await toolapproval.decide(ops, kube.body(wrong))
    assert status(kube, wrong)["phase"] == "Refused"
    assert "answer it with the result" in status(kube, wrong)["message"]

    answer = put_approval(kube, "answer", toolCallId=pending["toolCallId"], result="Lisbon", decidedBy="ada")
    await toolapproval.decide(ops, kube.body(answer))
    assert status(kube, answer)["phase"] == "Applied"
    finished = await poll_until(ops, kube, lambda s: s.get("phase") == "Succeeded", "finished")
    assert finished["output"] == "model was told: Lisbon"
    [record] = finished["decisions"]
    assert (record["decision"], record["decidedBy"]) == ("Answer", "ada")
    assert any("ada answered" in m for m in events(kube, "ToolCallAnswered"))


async def test_a_session_turn_that_waits_is_shown_and_decided_like_a_run(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    await serve_files(ops, kube, start_worker, log, model="deleting", queue="session-approvals")
    start_tidy(kube, session="desk")
    await agentrun.start(ops, kube.body(RUN))

    waiting = await poll_until(ops, kube, lambda s: s.get("phase") == "AwaitingApproval", "waited")
    [call] = waiting["pendingApprovals"]
    assert call["toolName"] == "delete_file"
    assert any("delete_file" in m for m in events(kube, "ApprovalRequested"))

    approve = put_approval(kube, "approve", all=True, decision="Approve", decidedBy="ada")
    await toolapproval.decide(ops, kube.body(approve))
    assert status(kube, approve)["phase"] == "Applied", status(kube, approve)
    finished = await poll_until(ops, kube, lambda s: s.get("phase") == "Succeeded", "finished")
    assert finished["output"] == "model was told: deleted a.txt"
    assert [(r["decidedBy"], r["decision"]) for r in finished["decisions"]] == [("ada", "Approve")]
    assert counted_tools(log) == ["a.txt"]


def counted_tools(log: Path) -> list[str | None]:
    return [json.loads(line).get("path") for line in log.read_text().splitlines() if '"tool"' in line]


async def test_a_decision_temporal_cannot_take_is_tried_again_then_fails_saying_nothing_changed(
    kube: FakeKube, clock: Clock
) -> None:
    from durable_agents_runtime.devserver import free_port

    ops = make_real_operator(kube, clock=clock, temporal_address=f"127.0.0.1:{free_port()}")
    kube.put(agent_manifest())
    start_tidy(kube)
    kube.objects[RUN]["status"] = {"phase": "AwaitingApproval", "workflowId": "agentrun-x", "taskQueue": "q"}
    approval = put_approval(kube, "approve", all=True, decision="Approve", decidedBy="ada")

    with pytest.raises(kopf.TemporaryError, match=r"trying again in 10s \(attempt 1 of 16\)") as first:
        await toolapproval.decide(ops, kube.body(approval), retry=0)
    assert first.value.delay == 10
    assert status(kube, approval)["phase"] == "Pending"
    assert len(events(kube, "NotDelivered")) == 1
    with pytest.raises(kopf.TemporaryError) as later:
        await toolapproval.decide(ops, kube.body(approval), retry=6)
    assert later.value.delay == 300
    assert len(events(kube, "NotDelivered")) == 1

    with pytest.raises(kopf.PermanentError, match="not delivered after 16 attempts, so nothing was decided"):
        await toolapproval.decide(ops, kube.body(approval), retry=toolapproval.DELIVERY_ATTEMPTS - 1)
    assert status(kube, approval)["phase"] == "Failed"
    [failed] = events(kube, "DeliveryFailed")
    assert "create the ToolApproval again" in failed
    # Failed is final: handled again (an operator restart), it is left alone.
    await toolapproval.decide(ops, kube.body(approval), retry=0)
    assert status(kube, approval)["phase"] == "Failed"
    assert "decisions" not in status(kube, RUN)


async def test_calls_decided_with_a_temporal_client_or_by_the_timeout_are_recorded_and_announced(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any, tmp_path: Path
) -> None:
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client

    from durable_agents_api.contract import Decision, Decisions
    from durable_agents_runtime import decisions

    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    log = tmp_path / "calls.jsonl"
    await serve_files(ops, kube, start_worker, log, model="deleting_two", queue="outside", timeout="6s")
    start_tidy(kube)
    await agentrun.start(ops, kube.body(RUN))
    waiting = await poll_until(
        ops, kube, lambda s: len(s.get("pendingApprovals") or []) == 2, "waited for two approvals"
    )
    first, second = waiting["pendingApprovals"]

    # Decided the way `durable-agents approve` does it: straight to Temporal, no ToolApproval.
    client = await Client.connect(
        dev_server.address, namespace=dev_server.namespace, plugins=[PydanticAIPlugin()]
    )
    handle = client.get_workflow_handle(waiting["workflowId"])
    chosen = Decisions(
        decisions=[Decision(tool_call_id=first["toolCallId"], approve=True)], decided_by="carol"
    )
    await decisions.decide(handle, chosen)
    # Nobody decides the second call: the 6 s timeout denies it and the run finishes.
    finished = await poll_until(ops, kube, lambda s: s.get("phase") == "Succeeded", "finished")

    records = [
        (r["toolCallId"], r["decision"], r["decidedBy"], r.get("toolApproval")) for r in finished["decisions"]
    ]
    assert records == [
        (first["toolCallId"], "Approve", "carol", None),
        (second["toolCallId"], "Deny", "approvals.timeout", None),
    ]
    assert events(kube, "ToolCallApproved") == [
        f"carol approved delete_file ({first['toolCallId']}) with a Temporal client"
    ]
    [denied] = events(kube, "ToolCallDenied")
    assert denied.startswith(f"nobody decided delete_file ({second['toolCallId']}) in time, so it was denied")
