"""DurableAgent schedules: keep the agent's Temporal Schedules equal to `spec.schedules`, report them in
status, and delete them with the agent.

Separate kopf handlers on the DurableAgent (ids `schedules`), next to its reconcile and health timer:

- `reconcile` on create, resume and spec changes: sync (`durable_agents_runtime.schedules`), then write
  `status.schedules`, `status.nextScheduledRun` and the `SchedulesSynced` condition. Temporal down →
  the condition says so and kopf retries after a delay, at most `RECONCILE_RETRIES` times; the timer
  keeps converging after that. A schedule Temporal refuses → `SchedulesSynced=False/InvalidSpec` naming
  it (and its `status.schedules[].message`), the other schedules synced all the same, no retry until
  the spec changes (the timer still reports it).
- `refresh`, a timer every health interval: the same sync, which repairs a schedule deleted or changed
  behind the operator's back and moves next run and last run forward. It never raises.
- `delete`: on deletion of an agent that has (or had) schedules, delete every schedule under its id
  prefix. The finalizer is only added to agents with schedules (the handler's `when`), so other agents
  are deleted as before, by garbage collection alone. Temporal down → retried `DELETE_ATTEMPTS` times,
  then the agent is let go with a Warning naming the schedule ids left behind and the command that
  deletes them; without its TemporalConnection it is let go at once, with the same Warning.

A spec that does not validate is left to the agent's reconcile, which reports `InvalidSpec` with the
field; so is a missing TemporalConnection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from pydantic import ValidationError

from durable_agents_api.resources import DurableAgent
from durable_agents_api.schedules import AgentSchedule
from durable_agents_operator.conditions import Reason
from durable_agents_operator.errors import DependencyNotReady, OperatorError, TemporalUnavailable
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.schedule_status import ScheduleProblem, schedules_status
from durable_agents_runtime.errors import ScheduleUnreachableError
from durable_agents_runtime.schedules import (
    ScheduleObservation,
    ScheduleOwner,
    delete_schedules,
    sync_schedules,
)

from .reporting import emit, report

__all__ = ["DELETE_ATTEMPTS", "RECONCILE_RETRIES", "delete", "reconcile", "refresh", "wanted"]

RECONCILE_RETRIES = 5
"""Attempts of the change handler while Temporal is unreachable; the timer carries on afterwards."""
DELETE_ATTEMPTS = 5
"""Attempts to delete an agent's schedules before the agent is let go (with a Warning)."""


def wanted(spec: Mapping[str, Any] | None, status: Mapping[str, Any] | None) -> bool:
    """Whether the schedules handlers concern this agent: it declares schedules or its status lists some
    (removed from the spec, still to delete)."""
    return bool((spec or {}).get("schedules")) or bool((status or {}).get("schedules"))


async def reconcile(ops: Operator, body: Mapping[str, Any]) -> None:
    """Sync and report; raises `kopf.TemporaryError` while Temporal cannot be reached."""
    problem = await _sync(ops, body)
    if problem is not None and problem.reason != Reason.INVALID_SPEC:
        raise kopf.TemporaryError(problem.message, delay=TemporalUnavailable.retry_after)


async def refresh(ops: Operator, body: Mapping[str, Any]) -> None:
    """Sync and report; problems end up in the condition, never raised."""
    await _sync(ops, body)


async def delete(ops: Operator, body: Mapping[str, Any], *, retry: int) -> None:
    """Delete every Temporal Schedule of the agent being deleted."""
    meta = body["metadata"]
    owner = ScheduleOwner(meta.get("namespace") or "default", meta["name"], task_queue="")
    known = [s.get("name", "") for s in (body.get("status") or {}).get("schedules") or []]
    try:
        agent = DurableAgent.model_validate(dict(body))
        _, params = await ops.resolve(agent)
        client = await ops.temporal.client(params)
        await delete_schedules(client, owner, known=known, rpc_timeout=ops.settings.temporal_timeout)
    except ValidationError:
        # Never parsed, so never synced by this operator; nothing it could have created to look for.
        return
    except (OperatorError, ScheduleUnreachableError) as exc:
        # Without its TemporalConnection (deleted first, say, in a namespace being deleted) there is no
        # Temporal to retry against: let go at once.
        if retry + 1 < DELETE_ATTEMPTS and not isinstance(exc, DependencyNotReady):
            raise kopf.TemporaryError(f"could not delete the agent's schedules: {exc}", delay=10) from None
        await emit(
            ops,
            body,
            reason="ScheduleDeleteFailed",
            message=f"could not delete the Temporal Schedules {owner.prefix}* ({exc}); the DurableAgent is "
            f"deleted anyway: delete them with `temporal schedule delete --schedule-id ID` (list them with "
            f"`temporal schedule list --query 'ScheduleId STARTS_WITH \"{owner.prefix}\"'`)",
            warning=True,
            now=ops.clock(),
        )


async def _sync(ops: Operator, body: Mapping[str, Any]) -> ScheduleProblem | None:
    """One sync and its status write; the problem it met, if any."""
    if body["metadata"].get("deletionTimestamp") or ops.terminating.holds(body):
        return None
    try:
        agent = DurableAgent.model_validate(dict(body))
    except ValidationError:
        return None  # the agent's reconcile reports InvalidSpec, naming the field
    schedules = agent.spec.schedules or []
    previous = body.get("status") or {}
    try:
        observed, problem = await _synced(ops, agent, schedules, previous)
    except OperatorError:
        return None  # a missing or invalid TemporalConnection: the agent's reconcile reports it
    now = ops.clock()
    update = schedules_status(
        observed,
        wanted=len(schedules),
        problem=problem,
        previous=previous,
        generation=agent.metadata.generation,
        now=now,
    )
    if update.due:
        await report(ops, body, update.status, (), now)
    if update.event is not None:
        event = update.event
        await emit(ops, body, reason=event.reason, message=event.message, warning=event.warning, now=now)
    return problem


async def _synced(
    ops: Operator, agent: DurableAgent, schedules: Sequence[AgentSchedule], previous: Mapping[str, Any]
) -> tuple[tuple[ScheduleObservation, ...] | None, ScheduleProblem | None]:
    """Make the agent's Temporal Schedules match `schedules`: what Temporal holds now (None when it
    could not be read) and the problem met, if any. Raises `OperatorError` for a connection that cannot
    be resolved."""
    known = [s.get("name", "") for s in previous.get("schedules") or []]
    namespace, name = agent.metadata.namespace or "default", agent.metadata.name or ""
    owner = ScheduleOwner(namespace, name, agent.task_queue, paused=agent.spec.paused)
    try:
        _, params = await ops.resolve(agent)
        client = await ops.temporal.client(params)
        timeout = ops.settings.temporal_timeout
        result = await sync_schedules(client, owner, schedules, known=known, rpc_timeout=timeout)
    except (TemporalUnavailable, ScheduleUnreachableError) as exc:
        return None, ScheduleProblem.unreachable(str(exc))
    if not result.rejected:
        return result.schedules, None
    rejected = "; ".join(
        f"spec.schedules[{i}] ({s.name}): {result.rejected[s.name]}"
        for i, s in enumerate(schedules)
        if s.name in result.rejected
    )
    return result.schedules, ScheduleProblem.rejected(rejected)
