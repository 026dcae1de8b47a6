"""AgentRun: start the agent's workflow once, follow it to the end, cancel it when the run is deleted.

While the workflow runs, each poll also reads the calls it waits on (`APPROVALS_QUERY`, only when its
history grew since the last read): phase `AwaitingApproval` with `pendingApprovals` and the
`AwaitingApproval` condition, an Event per call that starts waiting, and back to `Running` once decided.
Calls decided outside Kubernetes (`DECIDED_QUERY`: the CLI, another client, the decision timeout) are
recorded in `status.decisions` and announced by an Event too.

The workflow id derives from the AgentRun's uid and the start uses "use existing / reject duplicate"
policies, so a second start (an operator restart mid-start, a retried handler) attaches to the first
workflow instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import kopf
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.contract import (
    APPROVALS_QUERY,
    DECIDED_QUERY,
    WORKFLOW_NAME,
    DecidedCall,
    PendingCall,
    RunOutput,
)
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import API_VERSION, AgentRun, DurableAgent, workflow_id_for_run
from durable_agents_operator.agentrun_workflow import (
    failed_status,
    finished_message,
    pending_status,
    run_input,
    running_status,
    succeeded_status,
)
from durable_agents_operator.approval_status import (
    DECISION_REASONS,
    closed_fields,
    outside_decisions,
    outside_message,
    record_outside,
    request_message,
    waiting_status,
)
from durable_agents_operator.errors import DependencyNotReady, OperatorError, TemporalUnavailable, to_kopf
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_runtime.failures import failure_message
from durable_agents_runtime.session_client import SessionError, SessionUnreachableError

from . import agentrun_session
from .reporting import emit

__all__ = ["ACTIVE", "TERMINAL", "cancel", "poll", "run_client", "start"]

TERMINAL = ("Succeeded", "Failed")
ACTIVE = ("Running", "AwaitingApproval")
"""Phases of a run whose workflow was started and has not finished: the poll timer follows them."""
CANCEL_ATTEMPTS = 5
"""Deleting a run retries cancelling its workflow this often; then the run is let go (with a Warning)."""

_T = TypeVar("_T")


def _phase(body: Mapping[str, Any]) -> str | None:
    return (body.get("status") or {}).get("phase")


async def start(ops: Operator, body: Mapping[str, Any]) -> None:
    """Start the run's workflow (or attach to the one already started) and mark the run Running."""
    if body["metadata"].get("deletionTimestamp") or _phase(body) in TERMINAL or ops.terminating.holds(body):
        return
    now = ops.clock()
    try:
        run = AgentRun.model_validate(dict(body))
    except ValidationError as exc:
        message = f"invalid AgentRun:\n{format_validation(exc)}"
        await _set_status(ops, body, failed_status(message, completed=now))
        raise kopf.PermanentError(message) from None
    if _phase(body) in ACTIVE:
        return  # started before; the poll timer follows it
    try:
        started = await _started(ops, run, now)
    except (OperatorError, SessionUnreachableError) as exc:
        await _set_status(ops, body, pending_status(str(exc)))
        raise to_kopf(exc if isinstance(exc, OperatorError) else TemporalUnavailable(str(exc))) from None
    except SessionError as exc:
        await _set_status(ops, body, failed_status(str(exc), completed=now))
        await emit(ops, body, reason="Failed", message=str(exc), warning=True, now=now)
        return
    workflow_id = started["workflowId"]
    await _set_status(ops, body, started)
    await emit(ops, body, reason="Started", message=f"started workflow {workflow_id}", warning=False, now=now)


async def _started(ops: Operator, run: AgentRun, now: datetime) -> dict[str, Any]:
    """Start the run's workflow, or send its session turn; the Running status it then has."""
    workflow_id = workflow_id_for_run(run.metadata.uid or "")
    if run.spec.session is not None:
        agent = await _agent(ops, run)
        client = await _client(ops, run, agent)
        return await _timed(ops, agentrun_session.start_turn(client, run, agent, workflow_id, started=now))
    agent = await _start(ops, run, workflow_id)
    return running_status(
        workflow_id=workflow_id, task_queue=agent.task_queue, started=now, generation=run.metadata.generation
    )


async def poll(ops: Operator, body: Mapping[str, Any]) -> None:
    """Check a started run's workflow: while it runs, what it waits on; when it has finished, write output,
    usage and times (or the error)."""
    if _phase(body) not in ACTIVE or ops.terminating.holds(body):
        return
    run = AgentRun.model_validate(dict(body))
    workflow_id = (run.status and run.status.workflow_id) or workflow_id_for_run(run.metadata.uid or "")
    uid, agent = run.metadata.uid or "", (run.metadata.namespace or "default", run.spec.agent_ref.name)
    try:
        if run.spec.session is not None:
            seen = await _turn_outcome(ops, run, workflow_id)
        else:
            seen = await _outcome(ops, run, workflow_id)
    except (OperatorError, SessionUnreachableError) as exc:
        # Temporal or the agent is unavailable: keep the phase and say why; the next tick tries again.
        await _set_status(ops, body, {"message": str(exc)})
        return
    if seen.status is None:
        if seen.pending is not None:
            ops.waits.mark(agent, uid, waiting=bool(seen.pending))
            await _report_waiting(ops, body, seen.pending)
            await _report_decided(ops, body, seen.decided)
        return
    await _finish(ops, body, workflow_id, seen)
    ops.forget_run(uid, agent)


@dataclass(frozen=True)
class _Seen:
    """What one poll saw of a run's workflow: the status of the finished run (None while it runs); while
    it runs, the calls it waits on (None when they could not be read this time); and the calls decided
    outside Kubernetes since the last answer, for `_report_decided`."""

    status: dict[str, Any] | None = None
    pending: list[PendingCall] | None = None
    decided: list[DecidedCall] = field(default_factory=list)

    @classmethod
    def waiting(cls, asked: tuple[list[PendingCall], list[DecidedCall]] | None) -> _Seen:
        return cls() if asked is None else cls(pending=asked[0], decided=asked[1])


async def _finish(ops: Operator, body: Mapping[str, Any], workflow_id: str, seen: _Seen) -> None:
    """Write a finished run's status, record its last decisions, and announce how it ended."""
    assert seen.status is not None
    status = seen.status
    previous = body.get("status") or {}
    await _set_status(ops, body, {**status, **closed_fields(previous, now=ops.clock())})
    await _report_decided(ops, body, seen.decided)
    await emit(
        ops,
        body,
        reason=status["phase"],
        message=finished_message(workflow_id, status),
        warning=status["phase"] == "Failed",
        now=ops.clock(),
    )


async def _start(ops: Operator, run: AgentRun, workflow_id: str) -> DurableAgent:
    """Start the workflow on the run's agent's task queue; the agent it was started for."""
    agent = await _agent(ops, run)
    client = await _client(ops, run, agent)
    try:
        await _timed(ops, _start_workflow(client, run, agent, workflow_id, ops.settings.temporal_timeout))
    except RPCError as exc:
        raise TemporalUnavailable(f"Temporal refused to start workflow {workflow_id}: {exc}") from None
    return agent


async def _report_waiting(ops: Operator, body: Mapping[str, Any], pending: list[PendingCall]) -> None:
    """Write what the running run waits on (when it changed) and announce each call newly waiting."""
    update = waiting_status(body.get("status") or {}, pending, now=ops.clock())
    if not update.due:
        return
    await _set_status(ops, body, {**update.status, "message": None})
    for call in update.requested:
        message = request_message(call)
        await emit(ops, body, reason="ApprovalRequested", message=message, warning=False, now=ops.clock())


async def _outcome(ops: Operator, run: AgentRun, workflow_id: str) -> _Seen:
    """What the run's workflow says: finished (its status and last decisions) or running."""
    try:
        client = await _client(ops, run)
        handle = client.get_workflow_handle(workflow_id, result_type=RunOutput)
        description = await _timed(ops, handle.describe())
        if description.status == WorkflowExecutionStatus.RUNNING:
            return _Seen.waiting(await _pending_calls(ops, run.metadata.uid or "", handle, description))
        finished = description.close_time or ops.clock()
        if description.status == WorkflowExecutionStatus.COMPLETED:
            output = await _timed(ops, handle.result())
            return _Seen(succeeded_status(output, completed=finished), decided=output.decided_calls)
        return _Seen(failed_status(await _failure(ops, handle, description.status), completed=finished))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise TemporalUnavailable(f"could not check workflow {workflow_id}: {exc}") from None
        gone = f"workflow {workflow_id} no longer exists in Temporal (removed after its retention period?)"
        return _Seen(failed_status(gone, completed=None))


async def _turn_outcome(ops: Operator, run: AgentRun, workflow_id: str) -> _Seen:
    """As `_outcome`, for a session turn: the turn's status once answered, else the calls it waits on (the
    session's pending calls marked with this turn's message id)."""
    client = await _client(ops, run)
    status = await _timed(ops, agentrun_session.turn_status(client, run, ops.clock()))
    if status is not None:
        return _Seen(status)
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await _timed(ops, handle.describe())
    except RPCError as exc:
        raise TemporalUnavailable(f"could not check session workflow {workflow_id}: {exc}") from None
    asked = await _pending_calls(ops, run.metadata.uid or "", handle, description)
    if asked is None:
        return _Seen()
    turn_id = workflow_id_for_run(run.metadata.uid or "")
    return _Seen(pending=[c for c in asked[0] if c.turn_id == turn_id], decided=asked[1])


async def _pending_calls(
    ops: Operator, uid: str, handle: WorkflowHandle[Any, Any], description: WorkflowExecutionDescription
) -> tuple[list[PendingCall], list[DecidedCall]] | None:
    """The calls the running workflow waits on and those decided so far, asked only when its history grew
    since the last answer (a query of an evicted workflow costs its worker a replay; an unchanged history
    has no new decision, so none is returned then). None when the query failed this time (no worker
    polling, or a worker too old to answer it): the status keeps what it said."""
    length = description.history_length
    seen = ops.pending_seen.get(uid)
    if seen is not None and seen[0] == length:
        return seen[1], []
    rpc_timeout = timedelta(seconds=ops.settings.temporal_timeout)
    try:
        calls = await _timed(
            ops, handle.query(APPROVALS_QUERY, result_type=list[PendingCall], rpc_timeout=rpc_timeout)
        )
        decided = await _timed(
            ops, handle.query(DECIDED_QUERY, result_type=list[DecidedCall], rpc_timeout=rpc_timeout)
        )
    except (RPCError, WorkflowQueryFailedError, TemporalUnavailable):
        return None
    ops.pending_seen[uid] = (length, calls)
    return calls, decided


async def _report_decided(ops: Operator, body: Mapping[str, Any], decided: list[DecidedCall]) -> None:
    """Record in `status.decisions`, and announce, the calls decided outside Kubernetes (the CLI, another
    Temporal client, the decision timeout); ToolApprovals record their own."""
    uid = body["metadata"].get("uid") or ""
    if not decided:
        return
    async with ops.run_lock(uid):
        current = await ops.kube.get(key_of(body))
        if current is None:
            return
        previous = (current.get("status") or {}).get("decisions") or []
        new = outside_decisions(previous, decided)
        if not new:
            return
        await ops.kube.patch_status(key_of(body), {"decisions": record_outside(previous, new)})
    for call in new:
        await emit(
            ops,
            body,
            reason=DECISION_REASONS[call.decision],
            message=outside_message(call),
            warning=False,
            now=ops.clock(),
        )


async def cancel(ops: Operator, body: Mapping[str, Any], *, retry: int) -> None:
    """On deletion: cancel the run's workflow unless it has finished. Gives up after a few attempts.
    A session turn cancels nothing: the session is not the run's alone."""
    if _phase(body) in TERMINAL or (body.get("spec") or {}).get("session"):
        return
    try:
        run = AgentRun.model_validate(dict(body))
    except ValidationError:
        return  # never started
    workflow_id = (run.status and run.status.workflow_id) or workflow_id_for_run(run.metadata.uid or "")
    try:
        client = await _client(ops, run)
        await _timed(ops, client.get_workflow_handle(workflow_id).cancel(reason="AgentRun deleted"))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            await _retry_or_let_go(ops, body, f"could not cancel workflow {workflow_id}: {exc}", retry)
    except DependencyNotReady:
        pass  # no agent, so no Temporal to cancel on; a workflow, if any, ends by its own timeout
    except OperatorError as exc:
        await _retry_or_let_go(ops, body, f"could not cancel workflow {workflow_id}: {exc}", retry)
    finally:
        ops.forget_run(run.metadata.uid or "", (run.metadata.namespace or "default", run.spec.agent_ref.name))


async def _retry_or_let_go(ops: Operator, body: Mapping[str, Any], message: str, retry: int) -> None:
    if retry + 1 < CANCEL_ATTEMPTS:
        raise kopf.TemporaryError(message, delay=10)
    await emit(
        ops,
        body,
        reason="CancelFailed",
        message=f"{message}; the AgentRun is deleted anyway, cancel the workflow with the Temporal CLI",
        warning=True,
        now=ops.clock(),
    )


async def _agent(ops: Operator, run: AgentRun) -> DurableAgent:
    namespace = run.metadata.namespace or "default"
    name = run.spec.agent_ref.name
    body = await ops.kube.get(ObjectKey(API_VERSION, "DurableAgent", namespace, name))
    if body is None:
        raise DependencyNotReady(
            f"DurableAgent {name!r} does not exist in namespace {namespace}: create it or fix spec.agentRef",
            reason="AgentNotFound",
        )
    try:
        return DurableAgent.model_validate(body)
    except ValidationError as exc:
        raise DependencyNotReady(
            f"DurableAgent {name!r} is invalid; fix it first:\n{format_validation(exc)}",
            reason="AgentInvalid",
        ) from None


async def run_client(ops: Operator, run: AgentRun) -> Client:
    """The Temporal client of the run's workflow (see `_client`)."""
    return await _client(ops, run)


async def _client(ops: Operator, run: AgentRun, agent: DurableAgent | None = None) -> Client:
    """The client of the run's Temporal; the connection is remembered per run, so a running run can
    still be followed (and cancelled) after its DurableAgent is gone, until the operator restarts."""
    uid = run.metadata.uid or ""
    params = ops.runs.get(uid)
    if params is None:
        _, params = await ops.resolve(agent or await _agent(ops, run))
        ops.runs[uid] = params
    return await ops.temporal.client(params)


async def _start_workflow(
    client: Client, run: AgentRun, agent: DurableAgent, workflow_id: str, timeout: float
) -> None:
    # WorkflowAlreadyStarted: it ran and closed earlier; the poll timer reads its result.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            WORKFLOW_NAME,
            run_input(run),
            id=workflow_id,
            task_queue=agent.task_queue,
            execution_timeout=run.spec.timeout,
            # A running workflow with this id is the same run: attach to it. A closed one is too: do not
            # run the prompt again.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            rpc_timeout=timedelta(seconds=timeout),
        )


async def _failure(
    ops: Operator, handle: WorkflowHandle[Any, Any], status: WorkflowExecutionStatus | None
) -> str:
    try:
        await _timed(ops, handle.result())
    except WorkflowFailureError as exc:
        return failure_message(exc.cause)
    name = status.name.lower().replace("_", " ") if status is not None else "closed"
    return f"workflow {name}"


async def _timed(ops: Operator, call: Awaitable[_T]) -> _T:
    timeout = ops.settings.temporal_timeout
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise TemporalUnavailable(f"Temporal did not answer within {timeout:g}s") from None


async def _set_status(ops: Operator, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    await ops.kube.patch_status(key_of(body), status)
