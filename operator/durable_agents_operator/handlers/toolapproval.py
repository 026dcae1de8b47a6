"""ToolApproval: deliver a person's decision to the AgentRun's workflow, once, and say what became of it.

The decision goes to the run as the decide Update with an Update id derived from the ToolApproval's uid,
so a handler retried after an operator restart gets the first answer back instead of deciding twice. The
workflow validates it (an unknown or already-decided call id is refused and nothing changes): a refusal
becomes phase `Refused` with the workflow's message. Who decided is `spec.decidedBy` as the API server
admitted it (the chart's admission policies fill it in from the requesting user, or refuse another name);
a ToolApproval without it is refused, so a cluster without those policies cannot decide under a name
typed in freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NoReturn

import kopf
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.contract import DECIDE_UPDATE, DecisionOutcome
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import API_VERSION, AgentRun, ToolApproval
from durable_agents_operator.approval_status import (
    DECISION_REASONS,
    PAST_TENSE,
    TOOL_APPROVAL_UPDATE_PREFIX,
    applied_status,
    decision_word,
    decisions_of,
    failed_status,
    record_decisions,
    refused_status,
    undelivered_status,
)
from durable_agents_operator.errors import OperatorError
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_runtime.failures import failure_message

from .agentrun import ACTIVE, TERMINAL, run_client
from .reporting import emit

__all__ = ["DELIVERY_ATTEMPTS", "decide", "retry_delay"]

DELIVERY_ATTEMPTS = 16
"""Tries to deliver a decision while Temporal (or the run's worker) is unavailable, `retry_delay` apart:
about an hour in all. Then the ToolApproval fails, saying so, and nothing was decided."""
_FIRST_DELAY, _LONGEST_DELAY = 10, 300
_DONE = ("Applied", "Refused", "Failed")


class _Refused(Exception):
    """The decision cannot apply; the message says why and what to do."""


def retry_delay(retry: int) -> int:
    """Seconds before delivery attempt `retry + 1` (10 s, doubling, at most 5 min)."""
    return min(_FIRST_DELAY * 2**retry, _LONGEST_DELAY)


async def decide(ops: Operator, body: Mapping[str, Any], *, retry: int = 0) -> None:
    """Send the ToolApproval's decision to its run and record the outcome in both objects' status."""
    if body["metadata"].get("deletionTimestamp") or (body.get("status") or {}).get("phase") in _DONE:
        return
    decided_by = ((body.get("spec") or {}).get("decidedBy") or "").strip() or None
    try:
        approval, run = await _parse(ops, body, decided_by)
        outcome = await _deliver(ops, body, approval, run, decided_by or "", retry=retry)
    except _Refused as refused:
        await _set_status(ops, body, refused_status(str(refused), decided_by=decided_by))
        await emit(ops, body, reason="Refused", message=str(refused), warning=True, now=ops.clock())
        return
    now = ops.clock()
    workflow_id = (run.status and run.status.workflow_id) or ""
    await _record_on_run(ops, approval, run, outcome, decided_by or "")
    await _set_status(
        ops, body, applied_status(outcome, decided_by=decided_by or "", workflow_id=workflow_id, now=now)
    )
    word = decision_word(approval)
    calls = ", ".join(outcome.decided)
    await emit(
        ops,
        body,
        reason="Applied",
        message=f"{decided_by} {PAST_TENSE[word]} {calls}",
        warning=False,
        now=now,
    )


async def _parse(
    ops: Operator, body: Mapping[str, Any], decided_by: str | None
) -> tuple[ToolApproval, AgentRun]:
    """The ToolApproval and the AgentRun it decides on, or `_Refused` saying why it cannot apply."""
    try:
        approval = ToolApproval.model_validate(dict(body))
    except ValidationError as exc:
        raise _Refused(f"invalid ToolApproval:\n{format_validation(exc)}") from None
    if decided_by is None:
        raise _Refused(
            "spec.decidedBy is empty, so who decides is unknown: the API server fills it in from the "
            "requesting user with the durable-agents chart's admission policies. Install the chart (or its "
            "policies), then create the ToolApproval again"
        )
    namespace = approval.metadata.namespace or "default"
    name = approval.spec.run_ref.name
    found = await ops.kube.get(ObjectKey(API_VERSION, "AgentRun", namespace, name))
    if found is None:
        raise _Refused(f"AgentRun {name!r} does not exist in namespace {namespace}: fix spec.runRef")
    run = AgentRun.model_validate(found)
    phase = run.status.phase if run.status else None
    if phase in TERMINAL:
        raise _Refused(f"AgentRun {name!r} has finished ({phase}): it waits for no decision")
    if phase not in ACTIVE or not (run.status and run.status.workflow_id):
        raise _Refused(
            f"AgentRun {name!r} has not started yet (phase {phase or 'none'}): it waits for no decision"
        )
    return approval, run


# What `_deliver` turns into a refusal or a later attempt (`_undelivered`).
_DELIVERY_ERRORS = (
    WorkflowUpdateFailedError,
    RPCError,
    TimeoutError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)


async def _deliver(
    ops: Operator,
    body: Mapping[str, Any],
    approval: ToolApproval,
    run: AgentRun,
    decided_by: str,
    *,
    retry: int,
) -> DecisionOutcome:
    """The decide Update's answer; `_Refused` when the run refused it, `kopf.TemporaryError` (after
    saying so in status) when it could not be delivered now."""
    assert run.status is not None and run.status.workflow_id is not None
    workflow_id = run.status.workflow_id
    timeout = ops.settings.temporal_timeout
    try:
        client = await run_client(ops, run)
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(
            handle.execute_update(
                DECIDE_UPDATE,
                decisions_of(approval, decided_by),
                id=f"{TOOL_APPROVAL_UPDATE_PREFIX}{approval.metadata.uid}",
                result_type=DecisionOutcome,
                rpc_timeout=timedelta(seconds=timeout),
            ),
            timeout,
        )
    except _DELIVERY_ERRORS as exc:
        problem = _undelivered(exc, workflow_id, timeout)
    except OperatorError as exc:
        problem = str(exc)
    await _not_delivered(ops, body, problem, retry)


def _undelivered(exc: Exception, workflow_id: str, timeout: float) -> str:
    """Why Temporal did not take the decision (tried again later); `_Refused` when the run refused it or
    has finished (trying again cannot help)."""
    if isinstance(exc, WorkflowUpdateFailedError):
        cause = failure_message(exc.cause) if exc.cause is not None else str(exc)
        raise _Refused(f"the run refused the decision, nothing changed: {cause}") from None
    if isinstance(exc, RPCError):
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise _Refused(f"workflow {workflow_id} has finished: it waits for no decision ({exc})") from None
        return f"Temporal did not take the decision for workflow {workflow_id}: {exc}"
    return f"workflow {workflow_id} did not answer within {timeout:g}s (no worker of its agent polling?)"


async def _not_delivered(ops: Operator, body: Mapping[str, Any], problem: str, retry: int) -> NoReturn:
    """Say the decision was not delivered: tried again later (`kopf.TemporaryError`) up to
    `DELIVERY_ATTEMPTS` times, then failed for good (`kopf.PermanentError`). A warning Event on the first
    miss and on the last."""
    now = ops.clock()
    if retry + 1 >= DELIVERY_ATTEMPTS:
        message = (
            f"{problem}; not delivered after {DELIVERY_ATTEMPTS} attempts, so nothing was decided: create "
            "the ToolApproval again once Temporal and the agent's workers are reachable"
        )
        await _set_status(ops, body, failed_status(message))
        await emit(ops, body, reason="DeliveryFailed", message=message, warning=True, now=now)
        raise kopf.PermanentError(message)
    delay = retry_delay(retry)
    message = f"{problem}; trying again in {delay}s (attempt {retry + 1} of {DELIVERY_ATTEMPTS})"
    await _set_status(ops, body, undelivered_status(message))
    if retry == 0:
        await emit(ops, body, reason="NotDelivered", message=message, warning=True, now=now)
    raise kopf.TemporaryError(message, delay=delay)


async def _record_on_run(
    ops: Operator, approval: ToolApproval, run: AgentRun, outcome: DecisionOutcome, decided_by: str
) -> None:
    """Append who decided which call to the AgentRun's `status.decisions`, and announce it there."""
    key = ObjectKey(API_VERSION, "AgentRun", run.metadata.namespace or "default", run.metadata.name or "")
    now = ops.clock()
    async with ops.run_lock(run.metadata.uid or ""):
        current = await ops.kube.get(key)
        if current is None:
            return
        previous = (current.get("status") or {}).get("decisions") or []
        records = record_decisions(previous, approval, outcome, decided_by=decided_by, now=now)
        await ops.kube.patch_status(key, {"decisions": records})
    word = decision_word(approval)
    reason = DECISION_REASONS[word]
    reason_text = f": {approval.spec.reason}" if approval.spec.reason else ""
    message = (
        f"{decided_by} {PAST_TENSE[word]} {', '.join(outcome.decided)} "
        f"(ToolApproval {approval.metadata.name}){reason_text}"
    )
    await emit(ops, current, reason=reason, message=message, warning=False, now=now)


async def _set_status(ops: Operator, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    await ops.kube.patch_status(key_of(body), status)
