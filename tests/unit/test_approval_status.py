"""Approvals in Kubernetes status: an AgentRun waiting for decisions, and what a ToolApproval did. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_agents_api.contract import Decision, DecisionOutcome, Decisions, PendingCall
from durable_agents_api.resources import AgentRunStatus, ToolApproval, ToolApprovalStatus
from durable_agents_operator.approval_status import (
    AWAITING_APPROVAL,
    MAX_DECISIONS_KEPT,
    MAX_PENDING_SHOWN,
    Waits,
    applied_status,
    closed_fields,
    decisions_of,
    record_decisions,
    refused_status,
    request_message,
    waiting_status,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def call(call_id: str = "c1", tool: str = "delete_file", kind: str = "approval") -> PendingCall:
    return PendingCall(
        tool_call_id=call_id,
        tool_name=tool,
        kind=kind,  # pyright: ignore[reportArgumentType]
        args_preview='{"path": "a.txt"}',
        requested_at=NOW,
        expires_at=NOW + timedelta(hours=24),
    )


def condition(status: dict[str, Any]) -> tuple[str, str]:
    [found] = [c for c in status["conditions"] if c["type"] == AWAITING_APPROVAL]
    return found["status"], found["reason"]


def approval(spec: dict[str, Any], name: str = "ok-1") -> ToolApproval:
    return ToolApproval.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "u1"},
            "spec": {"runRef": {"name": "r"}, **spec},
        }
    )


# --- an AgentRun while it waits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous_pending", "now_pending", "phase", "cond", "requested"),
    [
        ([], [call("c1")], "AwaitingApproval", ("True", "ToolCallsPending"), ["c1"]),
        (["c1"], [call("c1")], "AwaitingApproval", ("True", "ToolCallsPending"), []),
        (["c1"], [call("c1"), call("c2")], "AwaitingApproval", ("True", "ToolCallsPending"), ["c2"]),
        (["c1"], [], "Running", ("False", "NoPendingCalls"), []),
        ([], [], "Running", ("False", "NoPendingCalls"), []),
    ],
)
def test_a_running_run_is_awaiting_approval_exactly_while_calls_wait(
    previous_pending: list[str],
    now_pending: list[PendingCall],
    phase: str,
    cond: tuple[str, str],
    requested: list[str],
) -> None:
    previous = {"phase": "Running", "pendingApprovals": [{"toolCallId": i} for i in previous_pending]}
    update = waiting_status(previous, now_pending, now=NOW)
    assert update.status["phase"] == phase
    assert condition(update.status) == cond
    assert [c.tool_call_id for c in update.requested] == requested  # one Event each
    assert [p["toolCallId"] for p in update.status["pendingApprovals"]] == [
        c.tool_call_id for c in now_pending
    ]
    AgentRunStatus.model_validate(update.status)  # the shape the CRD describes


def test_a_pending_call_in_status_carries_what_a_person_needs_to_decide() -> None:
    [entry] = waiting_status({}, [call()], now=NOW).status["pendingApprovals"]
    assert entry == {
        "toolCallId": "c1",
        "toolName": "delete_file",
        "kind": "approval",
        "argsPreview": '{"path": "a.txt"}',
        "requestedAt": "2026-12-01T12:00:00Z",
        "expiresAt": "2026-12-02T12:00:00Z",
    }


def test_an_unchanged_wait_is_not_written_again_and_keeps_its_transition_time() -> None:
    first = waiting_status({"phase": "Running"}, [call()], now=NOW)
    later = waiting_status(first.status, [call()], now=NOW + timedelta(minutes=5))
    assert later.due is False and later.requested == []
    assert later.status["conditions"] == first.status["conditions"]
    decided = waiting_status(first.status, [], now=NOW + timedelta(minutes=6))
    assert decided.due is True
    [stamp] = [c["lastTransitionTime"] for c in decided.status["conditions"]]
    assert stamp == "2026-12-01T12:06:00Z"


def test_many_waiting_calls_are_listed_up_to_a_bound_and_all_counted_in_the_condition() -> None:
    calls = [call(f"c{i}") for i in range(MAX_PENDING_SHOWN + 5)]
    status = waiting_status({}, calls, now=NOW).status
    assert len(status["pendingApprovals"]) == MAX_PENDING_SHOWN
    [cond] = status["conditions"]
    assert (
        cond["message"].startswith(f"{MAX_PENDING_SHOWN + 5} tool call(s) wait")
        and "20 more" in cond["message"]
    )


def test_a_finished_run_waits_for_nothing() -> None:
    waiting = waiting_status({}, [call()], now=NOW).status
    closed = closed_fields(waiting, now=NOW)
    assert closed["pendingApprovals"] == []
    assert condition(closed) == ("False", "RunFinished")


@pytest.mark.parametrize(
    ("kind", "says"),
    [("approval", "waits for approval until 2026-12-02T12:00:00Z"), ("external", "waits for its result")],
)
def test_the_request_event_says_what_waits_for_what(kind: str, says: str) -> None:
    message = request_message(call(kind=kind))
    assert says in message and "delete_file (c1)" in message and '"a.txt"' in message


def test_waiting_runs_are_counted_per_agent_from_what_the_polls_saw() -> None:
    waits = Waits.empty()
    waits.mark(("ns", "a"), "r1", waiting=True)
    waits.mark(("ns", "a"), "r2", waiting=True)
    waits.mark(("ns", "a"), "r1", waiting=True)  # polled again: still one run
    waits.mark(("other", "a"), "r3", waiting=True)
    assert (waits.count(("ns", "a")), waits.count(("other", "a")), waits.count(("ns", "b"))) == (2, 1, 0)
    waits.mark(("ns", "a"), "r1", waiting=False)
    waits.mark(("ns", "a"), "r2", waiting=False)
    assert waits.count(("ns", "a")) == 0 and ("ns", "a") not in waits.by_agent


# --- a ToolApproval ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"toolCallId": "c1", "decision": "Approve"},
            Decisions(decisions=[Decision(tool_call_id="c1", approve=True)], decided_by="ada"),
        ),
        (
            {"toolCallId": "c1", "decision": "Deny", "reason": "not now"},
            Decisions(
                decisions=[Decision(tool_call_id="c1", approve=False, reason="not now")], decided_by="ada"
            ),
        ),
        ({"all": True, "decision": "Approve"}, Decisions(all="approve", decided_by="ada")),
        (
            {"all": True, "decision": "Deny", "reason": "no"},
            Decisions(all="deny", reason="no", decided_by="ada"),
        ),
        (
            {"toolCallId": "c1", "result": "Paris"},
            Decisions(decisions=[Decision(tool_call_id="c1", result="Paris")], decided_by="ada"),
        ),
    ],
)
def test_a_tool_approval_becomes_the_decide_update_input(spec: dict[str, Any], expected: Decisions) -> None:
    assert decisions_of(approval(spec), "ada") == expected


def test_an_applied_approval_says_what_it_decided_and_what_still_waits() -> None:
    status = applied_status(
        DecisionOutcome(decided=["c1"], pending=["c2"]), decided_by="ada", workflow_id="agentrun-u", now=NOW
    )
    assert status["phase"] == "Applied"
    assert (status["decidedCalls"], status["stillPending"], status["decidedBy"]) == (["c1"], ["c2"], "ada")
    assert status["message"] == "decided c1 as ada; still pending: c2"
    ToolApprovalStatus.model_validate(status)
    refused = refused_status("this run has no pending call 'x'", decided_by="ada")
    assert refused["phase"] == "Refused" and "no pending call" in refused["message"]


def test_who_decided_which_call_is_appended_once_and_bounded() -> None:
    first = approval({"toolCallId": "c1", "decision": "Deny", "reason": "no"}, name="deny-1")
    records = record_decisions(
        [], first, DecisionOutcome(decided=["c1"], pending=[]), decided_by="ada", now=NOW
    )
    assert records == [
        {
            "toolCallId": "c1",
            "decision": "Deny",
            "decidedBy": "ada",
            "decidedAt": "2026-12-01T12:00:00Z",
            "toolApproval": "deny-1",
        }
    ]
    again = record_decisions(
        records, first, DecisionOutcome(decided=["c1"], pending=[]), decided_by="ada", now=NOW
    )
    assert again == records  # a retried handler does not record twice
    everyone = approval({"all": True, "decision": "Approve"}, name="all-1")
    both = record_decisions(
        records, everyone, DecisionOutcome(decided=["c2", "c3"], pending=[]), decided_by="bob", now=NOW
    )
    assert [(r["toolCallId"], r["decision"], r["decidedBy"]) for r in both] == [
        ("c1", "Deny", "ada"),
        ("c2", "Approve", "bob"),
        ("c3", "Approve", "bob"),
    ]
    many = [{"toolCallId": f"x{i}", "toolApproval": f"t{i}"} for i in range(MAX_DECISIONS_KEPT)]
    kept = record_decisions(
        many, first, DecisionOutcome(decided=["c1"], pending=[]), decided_by="ada", now=NOW
    )
    assert (
        len(kept) == MAX_DECISIONS_KEPT
        and kept[-1]["toolApproval"] == "deny-1"
        and kept[0]["toolCallId"] == "x1"
    )
