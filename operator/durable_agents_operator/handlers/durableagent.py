"""DurableAgent: reconcile (parse → build → plan → execute → report) and the health timer.

Both end in `status.agent_status`, the one place the agent's status is assembled. Every failure of
reconcile goes through `_report_failure`: a condition naming the problem, its Event, then the kopf error
that says whether to retry.

With `spec.autoscaling.enabled`, the health timer also decides the worker replicas from the backlog it
read (`autoscaling.decide_for`) and, when they change, applies them through the same build → plan →
execute path as reconcile, records the decision in `status.autoscaling` and emits an Event.

Deletion needs no handler: every child carries an owner reference, so garbage collection removes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from durable_agents_api.errors import format_validation
from durable_agents_api.resources import DurableAgent
from durable_agents_operator.autoscaling import ScaleDecision, decide_for, with_decision
from durable_agents_operator.builders import WorkerTemporal, desired_replicas, resolve_temporal
from durable_agents_operator.builders.agent_objects import AgentObjects, build_agent_objects
from durable_agents_operator.builders.networkpolicy import WorkerPolicy
from durable_agents_operator.errors import (
    DependencyNotReady,
    InvalidSpec,
    KubeApiError,
    NamespaceTerminating,
    OperatorError,
    to_kopf,
)
from durable_agents_operator.kube import Live, execute, execute_new, observe
from durable_agents_operator.naming import deployment_name
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.planner import plan_objects
from durable_agents_operator.rollout_status import RolloutEvent, refused_event, with_rollout
from durable_agents_operator.status import (
    Problem,
    StatusUpdate,
    agent_status,
    failure_status,
    reconcile_owns_status,
    refresh_after,
)
from durable_agents_runtime.health import AgentHealth

from .reporting import emit, log_left_out, report
from .rollout import Rollout, roll_out, shared_keys

__all__ = ["check_health", "reconcile"]


async def reconcile(ops: Operator, body: Mapping[str, Any]) -> None:
    """Make the agent's ConfigMap, Deployment, Service and PDB match its spec, then report status.

    Raises `kopf.PermanentError` for a spec that cannot work (after reporting `InvalidSpec`), and
    `kopf.TemporaryError` (with a delay) for anything that may resolve by itself. In a namespace being
    deleted it stops: the agent goes away with it.
    """
    if body["metadata"].get("deletionTimestamp") or ops.terminating.holds(body):
        return
    now = ops.clock()
    try:
        agent = _parse(body)
        connection = None
        if (ref := agent.spec.temporal.connection_ref) is not None:
            connection = await ops.fetch_connection(_ns(agent), ref.name)
        temporal = resolve_temporal(agent, connection=connection, default=ops.default_params)
        first = not body.get("status")  # never reconciled: its objects are not expected to exist
        live = await _apply(ops, agent, _build(ops, agent, temporal), first=first)
        rolled = await _roll(ops, agent, temporal, body, now)
    except NamespaceTerminating:
        ops.terminating.note(body["metadata"].get("namespace") or "", now)
        return
    except OperatorError as exc:
        await _report_failure(ops, body, exc, now)
        raise to_kopf(exc) from None
    health = await _health_for_status(ops, agent, read=not first)
    deployment = rolled.deployment if rolled is not None else live.get(_deployment_key(agent))
    update = _status(ops, agent, body, deployment, health, now=now, reconciled=True)
    await _publish(ops, body, agent, update, rolled, now)


async def check_health(ops: Operator, body: Mapping[str, Any]) -> None:
    """Read the agent's workflow health (batched per connection), autoscale, and write status.

    Never raises for Temporal or API problems: they show up as conditions, or the next tick retries.
    """
    log_left_out(ops)
    if _not_observed(ops, body):
        return
    try:
        agent = _parse(body)
    except InvalidSpec:
        return  # reconcile reported it; there is nothing to observe
    try:
        seen = await _observe(ops, agent)
        now = ops.clock()
        scaling, deployment = await _autoscale(ops, agent, seen, now)
        rolled = await _roll_scaled(ops, agent, seen, scaling, body, now)
        deployment = rolled.deployment if rolled is not None else deployment
        waiting = ops.waits.count((_ns(agent), _name(agent)))
        update = _status(
            ops,
            agent,
            body,
            deployment,
            seen.health,
            now=now,
            scaling=scaling,
            problem=seen.problem,
            awaiting_approval=waiting,
        )
        await _publish(ops, body, agent, update, rolled, now)
    except NamespaceTerminating:
        ops.terminating.note(_ns(agent), ops.clock())
        return
    except OperatorError:
        return  # the API is unavailable, forbids it, or an object is someone else's: the next tick decides
    if scaling is not None and scaling.scaled:
        message = scaling.event_message
        await emit(ops, body, reason=scaling.status.reason, message=message, warning=False, now=now)


def _not_observed(ops: Operator, body: Mapping[str, Any]) -> bool:
    """Agents the health timer leaves alone: being deleted, in a namespace being deleted, or with a
    status only reconcile may write (a spec it has not reported on yet)."""
    status = body.get("status") or {}
    return bool(
        body["metadata"].get("deletionTimestamp")
        # A tick racing the agent's first reconcile would overwrite what that reports (an ObjectConflict,
        # say) with a status computed from a body that has none yet.
        or "observedGeneration" not in status
        or reconcile_owns_status(status)
        or ops.terminating.holds(body)
    )


@dataclass(frozen=True)
class _Observed:
    """What the health timer saw: the connection (None when it could not be resolved), what keeps the
    agent from working, its health and its worker Deployment."""

    temporal: WorkerTemporal | None
    problem: Problem | None
    health: AgentHealth | None
    deployment: dict[str, Any] | None


async def _observe(ops: Operator, agent: DurableAgent) -> _Observed:
    """The connection, the health read and the worker Deployment; building the desired objects is how a
    spec that became unworkable (a changed TemporalConnection, say) is noticed between reconciles."""
    temporal = health = problem = None
    try:
        connection, params = await ops.resolve(agent)
        temporal = resolve_temporal(agent, connection=connection, default=ops.default_params)
        _build(ops, agent, temporal)
    except (InvalidSpec, DependencyNotReady) as exc:
        problem = Problem.of(exc)
    else:
        health = await ops.health.read(params, agent.task_queue)
    return _Observed(temporal, problem, health, await ops.deployment(_deployment_key(agent)))


async def _autoscale(
    ops: Operator, agent: DurableAgent, seen: _Observed, now: datetime
) -> tuple[ScaleDecision | None, dict[str, Any] | None]:
    """The autoscaler's decision (None: autoscaling off, or no connection to read the backlog on) and
    the worker Deployment after applying it."""
    if seen.temporal is None or (scaling := decide_for(agent, seen.health, now)) is None:
        return None, seen.deployment
    if scaling.replicas == desired_replicas(agent):
        return scaling, seen.deployment
    scaled = with_decision(agent, scaling.status)
    live = await _apply(ops, scaled, _build(ops, scaled, seen.temporal))
    return scaling, live.get(_deployment_key(agent))


async def _health_for_status(ops: Operator, agent: DurableAgent, *, read: bool) -> AgentHealth | None:
    """The last health reading, or with `read` one read now when there is none (after an operator
    restart: reporting "not checked" would flip conditions that were fine and announce it as an event).

    A new agent is not read: it has no workers yet and no conditions to flip, so its first status does
    not wait for Temporal (in a burst of 2,000 new agents that wait was most of the time to status); its
    health timer reads it within an interval.
    """
    try:
        _, params = await ops.resolve(agent)
        known = ops.health.peek(params, agent.task_queue)
        return known if known is not None or not read else await ops.health.read(params, agent.task_queue)
    except OperatorError:
        return None  # the health timer reports connection problems; the rollout state is still worth writing


def _build(ops: Operator, agent: DurableAgent, temporal: WorkerTemporal) -> AgentObjects:
    settings = ops.settings
    policy = WorkerPolicy(egress=settings.worker_egress) if settings.worker_network_policy else None
    return build_agent_objects(
        agent, temporal=temporal, default_image=settings.worker_image, worker_policy=policy
    )


async def _apply(ops: Operator, agent: DurableAgent, objects: AgentObjects, *, first: bool = False) -> Live:
    """Observe → plan → execute; raises `ObjectConflict` (leaving nothing built) when an object is foreign.

    An agent reconciled for the `first` time skips the reads: its objects are applied without taking
    anything from anyone (half the API calls of a burst of new agents); only if one is in the way does it
    observe and plan as usual.
    """
    keys = objects.observed_keys
    if objects.version is not None:
        keys = shared_keys(keys)  # the unversioned Deployment goes once a version is current (rollout)
    desired = {key_of(m): m for m in objects.manifests}
    if first and objects.version is None:
        nothing = plan_objects(desired, dict.fromkeys(keys), owner_uid=agent.metadata.uid)
        if (live := await execute_new(ops.kube, nothing)) is not None:
            return live
    observed = await observe(ops.kube, keys)
    plan = plan_objects(desired, observed, owner_uid=agent.metadata.uid)
    if (conflict := plan.conflict_error()) is not None:
        raise conflict
    return await execute(ops.kube, plan)


async def _roll(
    ops: Operator, agent: DurableAgent, temporal: WorkerTemporal, body: Mapping[str, Any], now: datetime
) -> Rollout | None:
    """One step of a versioned agent's rollout (`handlers.rollout`); None for an unversioned agent."""
    if not agent.spec.versioning.enabled:
        return None
    _, params = await ops.resolve(agent)
    objects = _build(ops, agent, temporal)
    return await roll_out(ops, agent, objects, params, previous=body.get("status") or {}, now=now)


async def _roll_scaled(
    ops: Operator,
    agent: DurableAgent,
    seen: _Observed,
    scaling: ScaleDecision | None,
    body: Mapping[str, Any],
    now: datetime,
) -> Rollout | None:
    """The rollout step of the health timer, with the autoscaler's replicas (None without a connection)."""
    if seen.temporal is None:
        return None
    scaled = with_decision(agent, scaling.status) if scaling is not None else agent
    return await _roll(ops, scaled, seen.temporal, body, now)


async def _publish(
    ops: Operator,
    body: Mapping[str, Any],
    agent: DurableAgent,
    update: StatusUpdate,
    rolled: Rollout | None,
    now: datetime,
) -> None:
    """Write the status (with the rollout's part) when it is due, then announce the rollout's Events."""
    update, events = _with_rollout(update, rolled, agent, body, now)
    if update.due:
        await report(ops, body, update.status, update.transitions, now)
    for event in events:
        await emit(ops, body, reason=event.reason, message=event.message, warning=event.warning, now=now)


def _with_rollout(
    update: StatusUpdate, rolled: Rollout | None, agent: DurableAgent, body: Mapping[str, Any], now: datetime
) -> tuple[StatusUpdate, list[RolloutEvent]]:
    if rolled is None:
        return update, []
    merged, newly_blocked = with_rollout(
        update,
        previous=body.get("status") or {},
        fields=rolled.fields,
        condition=rolled.condition,
        now=now,
        generation=agent.metadata.generation,
    )
    return merged, [*rolled.events, *([refused_event(rolled.condition)] if newly_blocked else [])]


def _status(
    ops: Operator,
    agent: DurableAgent,
    body: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    health: AgentHealth | None,
    *,
    now: datetime,
    scaling: ScaleDecision | None = None,
    problem: Problem | None = None,
    reconciled: bool = False,
    awaiting_approval: int | None = None,
) -> StatusUpdate:
    return agent_status(
        agent,
        deployment=deployment,
        health=health,
        scaling=scaling,
        previous=body.get("status") or {},
        now=now,
        live_within=ops.settings.live_within,
        refresh_after=refresh_after(ops.settings.health_interval),
        problem=problem,
        reconciled=reconciled,
        awaiting_approval=awaiting_approval,
    )


async def _report_failure(ops: Operator, body: Mapping[str, Any], exc: OperatorError, now: datetime) -> None:
    """Conditions and a Warning event for a spec that cannot work or a missing or foreign dependency;
    nothing for errors a retry fixes (their write would fail the same way)."""
    problem = Problem.of(exc)
    if problem is None:
        return
    update = failure_status(
        problem, generation=body["metadata"].get("generation"), previous=body.get("status") or {}, now=now
    )
    # If this write fails, the caller's error (raised next) says more than the failed write would.
    with contextlib.suppress(KubeApiError):
        await report(ops, body, update.status, update.transitions, now)


def _parse(body: Mapping[str, Any]) -> DurableAgent:
    try:
        return DurableAgent.model_validate(dict(body))
    except ValidationError as exc:
        raise InvalidSpec(f"invalid DurableAgent:\n{format_validation(exc)}") from None


def _deployment_key(agent: DurableAgent) -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", _ns(agent), deployment_name(_name(agent)))


def _name(agent: DurableAgent) -> str:
    return agent.metadata.name or ""


def _ns(agent: DurableAgent) -> str:
    return agent.metadata.namespace or "default"
