"""Approvals in Kubernetes status (pure): an AgentRun waiting for decisions, and what a ToolApproval did.

- **AgentRun**: while its workflow runs, the poll reads the run's pending calls (`APPROVALS_QUERY`) and
  `waiting_status` turns them into phase `AwaitingApproval` (or back to `Running`), `pendingApprovals`
  and the `AwaitingApproval` condition, plus the calls newly waiting (one Event each). A finished run
  gets `closed_fields`: nothing pending, the condition False.
- **ToolApproval**: `decisions_of` is the decide Update's input; `applied_status`, `refused_status` and
  `undelivered_status` its status; `record_decisions` appends who decided which call to the AgentRun.
- **Decided elsewhere** (the CLI, another Temporal client, the decision timeout): `outside_decisions`
  picks, from the workflow's decided calls (`DECIDED_QUERY`), those no ToolApproval carried and the
  AgentRun has not recorded; `record_outside` appends them and `outside_message` announces each.

`AwaitingApproval` condition (kstatus "abnormal-true": True means a person is needed):
True/`ToolCallsPending` while any call waits; False/`NoPendingCalls` while the run goes on without
waiting; False/`RunFinished` once it ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durable_agents_api.contract import DecidedCall, Decision, DecisionOutcome, Decisions, PendingCall
from durable_agents_api.resources import Condition, ToolApproval
from durable_agents_operator.conditions import merge_conditions
from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "AWAITING_APPROVAL",
    "DECISION_REASONS",
    "MAX_DECISIONS_KEPT",
    "MAX_PENDING_SHOWN",
    "PAST_TENSE",
    "TOOL_APPROVAL_UPDATE_PREFIX",
    "WaitingUpdate",
    "Waits",
    "applied_status",
    "closed_fields",
    "decision_word",
    "decisions_of",
    "failed_status",
    "outside_decisions",
    "outside_message",
    "record_decisions",
    "record_outside",
    "refused_status",
    "request_message",
    "undelivered_status",
    "waiting_status",
]

AWAITING_APPROVAL = "AwaitingApproval"
"""AgentRun condition, abnormal-true: True while a tool call of the run waits for a decision."""
TOOL_CALLS_PENDING = "ToolCallsPending"
NO_PENDING_CALLS = "NoPendingCalls"
RUN_FINISHED = "RunFinished"
MAX_PENDING_SHOWN = 20
"""Pending calls listed in an AgentRun's status (the condition message counts them all)."""
MAX_DECISIONS_KEPT = 50
"""Decisions kept in an AgentRun's status, latest last (the workflow history keeps every one)."""


@dataclass(frozen=True)
class WaitingUpdate:
    """The AgentRun status fields for the pending calls read now, the calls newly waiting (one Event
    each), and whether anything changed (an unchanged status is not written again)."""

    status: dict[str, Any]
    requested: list[PendingCall]
    due: bool


def _cond(status: Literal["True", "False"], reason: str, message: str) -> Condition:
    return Condition(type=AWAITING_APPROVAL, status=status, reason=reason, message=message)


def _entry(call: PendingCall) -> dict[str, Any]:
    return {
        "toolCallId": call.tool_call_id,
        "toolName": call.tool_name,
        "kind": call.kind,
        "argsPreview": call.args_preview,
        "requestedAt": timestamp(call.requested_at),
        "expiresAt": timestamp(call.expires_at) if call.expires_at else None,
    }


def _waiting_message(calls: Sequence[PendingCall]) -> str:
    shown = ", ".join(f"{c.tool_name} ({c.tool_call_id})" for c in calls[:5])
    more = f" and {len(calls) - 5} more" if len(calls) > 5 else ""
    return f"{len(calls)} tool call(s) wait for a decision: {shown}{more}; decide with a ToolApproval"


def waiting_status(
    previous: Mapping[str, Any], calls: Sequence[PendingCall], *, now: datetime
) -> WaitingUpdate:
    """Phase, `pendingApprovals` and the `AwaitingApproval` condition of a running run whose workflow
    waits on `calls` (none: it runs on)."""
    if calls:
        condition = _cond("True", TOOL_CALLS_PENDING, _waiting_message(calls))
    else:
        condition = _cond("False", NO_PENDING_CALLS, "no tool call waits for a decision")
    conditions = merge_conditions(previous.get("conditions") or [], [condition], now=now, generation=None)
    status = {
        "phase": "AwaitingApproval" if calls else "Running",
        "pendingApprovals": [_entry(c) for c in calls[:MAX_PENDING_SHOWN]],
        "conditions": conditions.to_api(),
    }
    known = {p.get("toolCallId") for p in previous.get("pendingApprovals") or []}
    requested = [c for c in calls if c.tool_call_id not in known]
    due = any(previous.get(field) != value for field, value in status.items())
    return WaitingUpdate(status, requested, due)


def closed_fields(previous: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """Fields to add to a finished run's status: nothing pending, `AwaitingApproval` False."""
    condition = _cond("False", RUN_FINISHED, "the run has finished")
    conditions = merge_conditions(previous.get("conditions") or [], [condition], now=now, generation=None)
    return {"pendingApprovals": [], "conditions": conditions.to_api()}


def request_message(call: PendingCall) -> str:
    """The Event text for a call that started waiting."""
    what = "approval" if call.kind == "approval" else "its result from outside"
    until = f" until {timestamp(call.expires_at)}" if call.expires_at else ""
    return f"{call.tool_name} ({call.tool_call_id}) waits for {what}{until}; arguments: {call.args_preview}"


@dataclass(frozen=True)
class Waits:
    """Which AgentRuns wait for a decision, by DurableAgent: what the AgentRun polls saw last.

    The DurableAgent's `awaitingApproval` count comes from here, so counting costs no Temporal or API
    call. It counts only AgentRuns this operator process has polled since it started (a poll per run
    every few seconds fills it in after a restart), and never runs started outside Kubernetes (the CLI,
    a Temporal client)."""

    by_agent: dict[tuple[str, str], set[str]]

    @classmethod
    def empty(cls) -> Waits:
        return cls({})

    def mark(self, agent: tuple[str, str], run_uid: str, waiting: bool) -> None:
        """Record whether the run `run_uid` of `agent` (namespace, name) waits now."""
        runs = self.by_agent.setdefault(agent, set())
        if waiting:
            runs.add(run_uid)
        else:
            runs.discard(run_uid)
            if not runs:
                del self.by_agent[agent]

    def count(self, agent: tuple[str, str]) -> int:
        """How many of `agent`'s runs wait for a decision."""
        return len(self.by_agent.get(agent, ()))


# --- ToolApproval --------------------------------------------------------------------------------------


def decisions_of(approval: ToolApproval, decided_by: str) -> Decisions:
    """The decide Update's input for `approval`."""
    spec = approval.spec
    if spec.all:
        return Decisions(
            all="approve" if spec.decision == "Approve" else "deny", reason=spec.reason, decided_by=decided_by
        )
    call_id = spec.tool_call_id or ""
    if spec.decision is None:
        decision = Decision(tool_call_id=call_id, result=spec.result, reason=spec.reason)
    else:
        decision = Decision(tool_call_id=call_id, approve=spec.decision == "Approve", reason=spec.reason)
    return Decisions(decisions=[decision], decided_by=decided_by)


DECISION_REASONS = {"Approve": "ToolCallApproved", "Deny": "ToolCallDenied", "Answer": "ToolCallAnswered"}
"""Event reason of a decision, by what it decided."""
TOOL_APPROVAL_UPDATE_PREFIX = "toolapproval-"
"""Update ids of decisions ToolApprovals carry (`toolapproval-<uid>`): they record themselves."""
PAST_TENSE = {"Approve": "approved", "Deny": "denied", "Answer": "answered"}


def outside_decisions(
    previous: Sequence[Mapping[str, Any]], decided: Sequence[DecidedCall]
) -> list[DecidedCall]:
    """The calls in `decided` no ToolApproval carried and `previous` (`status.decisions`) lacks."""
    known = {r.get("toolCallId") for r in previous}
    return [
        call
        for call in decided
        if call.tool_call_id not in known
        and not (call.update_id or "").startswith(TOOL_APPROVAL_UPDATE_PREFIX)
    ]


def record_outside(previous: Sequence[Mapping[str, Any]], new: Sequence[DecidedCall]) -> list[dict[str, Any]]:
    """`status.decisions` with `new` appended (no ToolApproval named), the last `MAX_DECISIONS_KEPT` kept."""
    added = [
        {
            "toolCallId": call.tool_call_id,
            "decision": call.decision,
            "decidedBy": call.decided_by,
            "decidedAt": timestamp(call.decided_at),
        }
        for call in new
    ]
    return [*(dict(r) for r in previous), *added][-MAX_DECISIONS_KEPT:]


def outside_message(call: DecidedCall) -> str:
    """The Event text of a call decided outside Kubernetes."""
    reason = f": {call.reason}" if call.reason else ""
    what, done = f"{call.tool_name} ({call.tool_call_id})", PAST_TENSE[call.decision]
    if call.update_id is None:
        return f"nobody decided {what} in time, so it was {done}{reason}"
    return f"{call.decided_by} {done} {what} with a Temporal client{reason}"


def decision_word(approval: ToolApproval) -> str:
    """Approve, Deny or Answer: what `approval` decides."""
    return approval.spec.decision or "Answer"


def applied_status(
    outcome: DecisionOutcome, *, decided_by: str, workflow_id: str, now: datetime
) -> dict[str, Any]:
    """Status of a ToolApproval the run took."""
    left = f"; still pending: {', '.join(outcome.pending)}" if outcome.pending else "; the run goes on"
    return {
        "phase": "Applied",
        "message": f"decided {', '.join(outcome.decided)} as {decided_by}{left}",
        "decidedCalls": outcome.decided,
        "stillPending": outcome.pending,
        "decidedBy": decided_by,
        "workflowId": workflow_id,
        "appliedTime": timestamp(now),
    }


def refused_status(message: str, *, decided_by: str | None = None) -> dict[str, Any]:
    """Status of a ToolApproval that was refused (nothing changed in the run): `message` says why."""
    return {"phase": "Refused", "message": message, "decidedBy": decided_by}


def undelivered_status(message: str) -> dict[str, Any]:
    """Status of a ToolApproval not delivered yet (Temporal unavailable): it is tried again."""
    return {"phase": "Pending", "message": message}


def failed_status(message: str) -> dict[str, Any]:
    """Status of a ToolApproval that could not be delivered in all its attempts: nothing was decided."""
    return {"phase": "Failed", "message": message}


def record_decisions(
    previous: Sequence[Mapping[str, Any]],
    approval: ToolApproval,
    outcome: DecisionOutcome,
    *,
    decided_by: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The AgentRun's `decisions` after `approval` decided `outcome.decided`, the last
    `MAX_DECISIONS_KEPT` kept. A ToolApproval already recorded (a retried handler) is not added twice."""
    name = approval.metadata.name or ""
    if any(r.get("toolApproval") == name for r in previous):
        return [dict(r) for r in previous][-MAX_DECISIONS_KEPT:]
    added = [
        {
            "toolCallId": call_id,
            "decision": decision_word(approval),
            "decidedBy": decided_by,
            "decidedAt": timestamp(now),
            "toolApproval": name,
        }
        for call_id in outcome.decided
    ]
    return [*(dict(r) for r in previous), *added][-MAX_DECISIONS_KEPT:]
