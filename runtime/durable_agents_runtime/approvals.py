"""Human approval of tool calls, and external input, inside the run workflow.

Two halves:

- **Which calls wait** (built with the agent): the manifest's `approvals.tools` rules wrap a declarative
  agent's toolsets in pydantic-ai's `ApprovalRequiredToolset`; code agents use pydantic-ai's own means
  (`requires_approval=True`, raising `ApprovalRequired` or `CallDeferred`, external tools).
- **How a run waits** (`ApprovalGate`, one per run, in the workflow): pydantic-ai hands the calls it could
  not make to the gate's `handle_deferred_tool_calls` hook. The gate records them as `PendingCall`s (read
  with `APPROVALS_QUERY`) and waits on workflow state with `workflow.wait_condition`, up to
  `approvals.timeout`: no worker slot is held and nothing polls. A decision arrives as a `DECIDE_UPDATE`
  (validated first: an unknown or already-decided call id is refused and nothing is recorded); the hook
  then returns the decisions, pydantic-ai runs the approved tools as activities and tells the model about
  denied ones. The waiting run is plain workflow state, so it survives worker kills and Temporal restarts
  by replay, and completed activities are not run again.

Deterministic code only (the gate runs in the workflow sandbox).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.capabilities import AbstractCapability
    from pydantic_ai.tools import (
        DeferredToolRequests,
        DeferredToolResults,
        RunContext,
        ToolDefinition,
        ToolDenied,
    )
    from pydantic_ai.toolsets import AbstractToolset

    from durable_agents_api.config import ApprovalRuleSpec, ApprovalsSpec, format_duration
    from durable_agents_api.contract import (
        APPROVALS_QUERY,
        DECIDE_UPDATE,
        DECIDED_KEPT,
        DECIDED_QUERY,
        DecidedCall,
        Decision,
        DecisionOutcome,
        Decisions,
        PendingCall,
    )

__all__ = [
    "APPROVAL_TIMED_OUT",
    "ARGS_PREVIEW_CHARS",
    "TIMEOUT_DECIDER",
    "ApprovalGate",
    "DecisionHandlers",
    "WaitForDecisions",
    "requiring_approval",
]

ARGS_PREVIEW_CHARS = 200
"""A pending call's arguments are shown cut to this many characters."""
APPROVAL_TIMED_OUT = "ApprovalTimedOut"
"""Error type of a run failed by `approvals.onTimeout: fail`."""
TIMEOUT_DECIDER = "approvals.timeout"
"""Who decided a call nobody decided in time (`approvals.onTimeout: deny`)."""


def requiring_approval(
    toolset: AbstractToolset[Any], toolset_id: str, rules: Sequence[ApprovalRuleSpec]
) -> AbstractToolset[Any]:
    """`toolset`, with calls to the tools the rules name waiting for approval (unchanged if none apply)."""
    patterns = [r.tool for r in rules if r.toolset is None or fnmatch.fnmatchcase(toolset_id, r.toolset)]
    if not patterns:
        return toolset

    def needs_approval(ctx: RunContext[Any], tool: ToolDefinition, args: dict[str, Any]) -> bool:
        return any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in patterns)

    return toolset.approval_required(needs_approval)


def _preview(args: Any) -> str:
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, default=str)
    return text if len(text) <= ARGS_PREVIEW_CHARS else text[: ARGS_PREVIEW_CHARS - 1] + "…"


@dataclass
class WaitForDecisions(AbstractCapability[Any]):
    """Bound to every agent the runtime builds (Temporal needs capabilities at construction): hands the
    calls pydantic-ai could not make to the running workflow's `approval_gate`. Outside a workflow it
    declines, and pydantic-ai's own behaviour applies."""

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[Any], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        gate = getattr(workflow.instance(), "approval_gate", None) if workflow.in_workflow() else None
        return await gate.wait(requests) if isinstance(gate, ApprovalGate) else None


@dataclass
class ApprovalGate:
    """The run's pending calls and the decisions made on them (workflow state, rebuilt by replay)."""

    policy: ApprovalsSpec
    pending: dict[str, PendingCall] = field(default_factory=dict)
    decided: dict[str, tuple[Decision, str]] = field(default_factory=dict)
    """Decided call ids → (decision, who decided), for the calls of the current wait."""
    decided_before: dict[str, str] = field(default_factory=dict)
    """Every call id decided in this run → who decided (to refuse a second decision clearly)."""
    log: list[DecidedCall] = field(default_factory=list)
    """The last `DECIDED_KEPT` decisions, for `DECIDED_QUERY`."""

    # --- the decide Update ---------------------------------------------------------------------------

    def validate(self, decisions: Decisions) -> None:
        """Refuse a decision that cannot apply, before anything is recorded (the Update's validator)."""
        if not decisions.decided_by.strip():
            raise ValueError("decidedBy is empty: say who decides")
        if not decisions.decisions and decisions.all is None:
            raise ValueError("no decision: name the call ids to decide, or decide all pending approvals")
        seen: set[str] = set()
        for decision in decisions.decisions:
            call_id = decision.tool_call_id
            if call_id in seen:
                raise ValueError(f"call {call_id!r} is decided twice in one request")
            seen.add(call_id)
            call = self.pending.get(call_id)
            if call is None:
                if call_id in self.decided_before:
                    raise ValueError(
                        f"call {call_id!r} was already decided (by {self.decided_before[call_id]}): nothing "
                        "changed"
                    )
                raise ValueError(f"this run has no pending call {call_id!r}: {self._pending_hint()}")
            if call.kind == "approval" and decision.approve is None:
                raise ValueError(
                    f"call {call_id!r} ({call.tool_name}) waits for approval: approve or deny it"
                )
            if call.kind != "approval" and decision.approve is not None:
                raise ValueError(
                    f"call {call_id!r} ({call.tool_name}) waits for its result from outside, not for "
                    "approval: answer it with the result"
                )
        if decisions.all is not None and not any(c.kind == "approval" for c in self.pending.values()):
            raise ValueError(f"this run has no pending approvals: {self._pending_hint()}")

    def decide(self, decisions: Decisions) -> DecisionOutcome:
        """Record validated decisions; the waiting run goes on once every pending call is decided."""
        chosen = list(decisions.decisions)
        named = {d.tool_call_id for d in chosen}
        if decisions.all is not None:
            approve = decisions.all == "approve"
            chosen += [
                Decision(tool_call_id=call_id, approve=approve, reason=decisions.reason)
                for call_id, call in self.pending.items()
                if call.kind == "approval" and call_id not in named
            ]
        update = workflow.current_update_info()
        for decision in chosen:
            call = self.pending.pop(decision.tool_call_id)
            self._record(call, decision, decisions.decided_by, update.id if update is not None else None)
        self._show_details()
        return DecisionOutcome(decided=[d.tool_call_id for d in chosen], pending=list(self.pending))

    def _record(self, call: PendingCall, decision: Decision, who: str, update_id: str | None) -> None:
        self.decided[call.tool_call_id] = (decision, who)
        self.decided_before[call.tool_call_id] = who
        word = "Answer" if decision.approve is None else "Approve" if decision.approve else "Deny"
        self.log.append(
            DecidedCall(
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                decision=word,
                decided_by=who,
                decided_at=workflow.now(),
                reason=decision.reason,
                update_id=update_id,
            )
        )
        del self.log[:-DECIDED_KEPT]

    def _pending_hint(self) -> str:
        if not self.pending:
            return "it waits for no decision"
        return "pending are " + ", ".join(f"{c.tool_call_id} ({c.tool_name})" for c in self.pending.values())

    def _show_details(self) -> None:
        # What the Temporal UI shows for the run while it waits.
        names = sorted({c.tool_name for c in self.pending.values()})
        workflow.set_current_details(f"awaiting decision: {', '.join(names)}" if names else "")

    # --- the wait ----------------------------------------------------------------------------------

    async def wait(self, requests: DeferredToolRequests) -> DeferredToolResults:
        """Record `requests` as pending, wait for their decisions (or the timeout), return them."""
        now = workflow.now()
        update = workflow.current_update_info()
        timeout: timedelta = self.policy.timeout
        expires = now + timeout
        waiting = [(call, "approval") for call in requests.approvals] + [
            (call, requests.kind(call.tool_call_id)) for call in requests.calls
        ]
        for call, kind in waiting:
            self.pending[call.tool_call_id] = PendingCall(
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                kind=kind,  # pyright: ignore[reportArgumentType]
                args_preview=_preview(call.args_as_dict() if call.args else {}),
                requested_at=now,
                expires_at=expires,
                turn_id=update.id if update is not None else None,
            )
        self._show_details()
        ids = [call.tool_call_id for call, _ in waiting]
        try:
            await workflow.wait_condition(lambda: all(i in self.decided for i in ids), timeout=timeout)
        except TimeoutError:
            self._time_out(ids, timeout)
        results = DeferredToolResults()
        for call, kind in waiting:
            decision, who = self.decided.pop(call.tool_call_id)
            results.answered_by[call.tool_call_id] = who
            if kind != "approval":
                results.calls[call.tool_call_id] = decision.result
            elif decision.approve:
                results.approvals[call.tool_call_id] = True
            else:
                reason = decision.reason or "no reason given"
                said = reason if who == TIMEOUT_DECIDER else f"{who} denied this call: {reason}"
                results.approvals[call.tool_call_id] = ToolDenied(said)
        self._show_details()
        return results

    def _time_out(self, ids: list[str], timeout: timedelta) -> None:
        late = [self.pending[i] for i in ids if i in self.pending]
        names = ", ".join(f"{c.tool_name} ({c.tool_call_id})" for c in late)
        waited = format_duration(timeout)
        if self.policy.on_timeout == "fail":
            raise ApplicationError(
                f"no decision on {names} within approvals.timeout ({waited}); approvals.onTimeout is fail. "
                "Decide sooner, or raise approvals.timeout",
                type=APPROVAL_TIMED_OUT,
                non_retryable=True,
            )
        for call in late:
            message = f"no decision within {waited}: the call was not made; go on without it"
            decision = (
                Decision(tool_call_id=call.tool_call_id, approve=False, reason=message)
                if call.kind == "approval"
                else Decision(tool_call_id=call.tool_call_id, result=message)
            )
            self.pending.pop(call.tool_call_id, None)
            self._record(call, decision, TIMEOUT_DECIDER, None)


class DecisionHandlers:
    """The query and Update through which people see and decide a workflow's pending calls; a workflow
    class that sets `approval_gate` in its init inherits them (the run and the session workflow)."""

    approval_gate: ApprovalGate

    @workflow.query(name=APPROVALS_QUERY)
    def pending_calls(self) -> list[PendingCall]:
        """The tool calls this workflow waits on: for approval, or for their result from outside."""
        return list(self.approval_gate.pending.values())

    @workflow.query(name=DECIDED_QUERY)
    def decided_calls(self) -> list[DecidedCall]:
        """The calls decided so far (the last `DECIDED_KEPT`), whoever decided them."""
        return list(self.approval_gate.log)

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, decisions: Decisions) -> DecisionOutcome:
        """Approve or deny pending calls, or answer external ones; the waiting turn goes on once all are
        decided. Who decided is in the Update's input, so the workflow history records it."""
        return self.approval_gate.decide(decisions)

    @decide.validator
    def _validate_decisions(self, decisions: Decisions) -> None:
        self.approval_gate.validate(decisions)
