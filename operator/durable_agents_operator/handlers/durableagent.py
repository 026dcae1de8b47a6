"""DurableAgent: reconcile (parse → resolve → build → plan → apply → report) and the health timer.

With `spec.autoscaling.enabled`, the health timer also decides the worker replicas from the backlog it
read (`durable_agents_operator.autoscaling.decide`) and, when they change, applies them through the same
build → plan → apply path as reconcile, records the decision in `status.autoscaling` and emits an Event.

Deletion needs no handler: every child carries an owner reference, so garbage collection removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from durable_agents_operator.api import (
    AutoscalingSpec,
    AutoscalingStatus,
    DurableAgent,
    DurableAgentStatus,
)
from durable_agents_operator.autoscaling import ScaleDecision, decide
from durable_agents_operator.builders import (
    WorkerTemporal,
    desired_replicas,
    resolve_temporal,
    selector_string,
)
from durable_agents_operator.builders.agent_objects import AgentObjects, build_agent_objects, child_keys
from durable_agents_operator.conditions import (
    READY,
    AgentObservation,
    DeploymentObservation,
    HealthObservation,
    Reason,
    agent_conditions,
)
from durable_agents_operator.errors import (
    DependencyNotReady,
    InvalidSpec,
    KubeApiError,
    KubeInvalid,
    OperatorError,
    to_kopf,
)
from durable_agents_operator.naming import deployment_name
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.planner import Action, Apply, Conflict, Delete, plan
from durable_agents_operator.timestamps import timestamp
from durable_agents_runtime.errors import format_validation
from durable_agents_runtime.health import AgentHealth

from .reporting import emit, report, status_due

__all__ = ["check_health", "reconcile"]


# Health fields of `AgentHealth.to_dict()` that go into status as they are.
_HEALTH_FIELDS = ("workers", "backlog", "runs", "lastFailure")


async def reconcile(ops: Operator, body: Mapping[str, Any]) -> None:
    """Make the agent's ConfigMap, Deployment, Service and PDB match its spec, then report status.

    Raises `kopf.PermanentError` for a spec that cannot work (after reporting `InvalidSpec`), and
    `kopf.TemporaryError` (with a delay) for anything that may resolve by itself.
    """
    if body["metadata"].get("deletionTimestamp"):
        return
    now = ops.clock()
    try:
        agent = DurableAgent.model_validate(dict(body))
    except ValidationError as exc:
        message = f"invalid DurableAgent:\n{format_validation(exc)}"
        await _report_stuck(ops, body, now, spec_error=message)
        raise kopf.PermanentError(message) from None

    try:
        objects = await _desired(ops, agent)
        observed, actions = await _plan(ops, agent, objects)
        conflicts = [a for a in actions if isinstance(a, Conflict)]
        if conflicts:
            message = "; ".join(c.message for c in conflicts)
            await _report_stuck(ops, body, now, blocked=(Reason.OBJECT_CONFLICT, message))
            raise kopf.TemporaryError(message, delay=60)
        live = await _execute(ops, observed, actions)
    except (InvalidSpec, KubeInvalid) as exc:
        await _report_stuck(ops, body, now, spec_error=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    except DependencyNotReady as exc:
        await _report_stuck(ops, body, now, blocked=(exc.reason, str(exc)))
        raise to_kopf(exc) from None
    except OperatorError as exc:
        raise to_kopf(exc) from None

    deployment = live.get(_deployment_key(agent))
    health = None
    try:
        _, params = await ops.resolve(agent)
        # Without a reading (first reconcile, or after a restart) read now: reporting "not checked"
        # would flip conditions that were fine and announce it as an event.
        health = ops.health.peek(params, agent.task_queue) or await ops.health.read(params, agent.task_queue)
    except OperatorError:
        pass  # the health timer reports connection problems; the rollout state is still worth writing
    observation = _observation(ops, agent, deployment=deployment, health=health)
    update = agent_conditions(observation, _conditions(body), now)
    status = {
        "observedGeneration": agent.metadata.generation,
        "taskQueue": agent.task_queue,
        **_replica_status(agent, deployment),
        "conditions": update.to_api(),
    }
    current = body.get("status") or {}
    if update.transitions or any(current.get(field) != value for field, value in status.items()):
        await report(ops, body, status, update.transitions, now)


async def check_health(ops: Operator, body: Mapping[str, Any]) -> None:
    """Read the agent's workflow health (batched per connection) and write it, with conditions, to status.

    Never raises for Temporal or API problems: they show up as conditions, or the next tick retries.
    """
    if body["metadata"].get("deletionTimestamp"):
        return
    try:
        agent = DurableAgent.model_validate(dict(body))
    except ValidationError:
        return  # reconcile reported it; there is nothing to observe
    previous = _conditions(body)
    if any(c.get("type") == READY and c.get("reason") == Reason.OBJECT_CONFLICT for c in previous):
        return  # reconcile owns this state until the conflicting object is gone
    spec_error = blocked = health = temporal = None
    try:
        connection, params = await ops.resolve(agent)
        temporal = resolve_temporal(agent, connection=connection, default=ops.default_params)
        build_agent_objects(agent, temporal=temporal, default_image=ops.settings.worker_image)
    except InvalidSpec as exc:
        spec_error = str(exc)
    except DependencyNotReady as exc:
        blocked = (exc.reason, str(exc))
    except OperatorError:
        return  # the Kubernetes API is unavailable or forbids reads; try again next tick
    else:
        health = await ops.health.read(params, agent.task_queue)
    try:
        deployment = await ops.kube.get(_deployment_key(agent))
    except OperatorError:
        return
    now = ops.clock()
    scaling = None
    if temporal is not None and _autoscaling(agent) is not None:
        scaling = _decide(agent, health, now)
        if scaling.replicas != desired_replicas(agent):
            agent = _with_autoscaling(agent, scaling.status)
            try:
                deployment = await _apply_scale(ops, agent, temporal)
            except OperatorError:
                return  # nothing scaled and nothing recorded: the next tick decides again
            if deployment is None:
                return  # reconcile reports the conflicting object; scale once it is resolved
    observation = _observation(
        ops,
        agent,
        deployment=deployment,
        health=health,
        spec_error=spec_error,
        blocked=blocked,
        # Conditions describe the generation reconcile last handled, not one it has not seen yet.
        generation=(body.get("status") or {}).get("observedGeneration"),
    )
    update = agent_conditions(observation, previous, now)
    status: dict[str, Any] = {**_replica_status(agent, deployment), "conditions": update.to_api()}
    if health is not None and health.reachable:
        reading = health.to_dict()
        status.update({field: reading.get(field) for field in _HEALTH_FIELDS})
    if scaling is not None:
        status["autoscaling"] = scaling.to_api()
    elif (body.get("status") or {}).get("autoscaling") is not None:
        status["autoscaling"] = None  # autoscaling was turned off: its last decision no longer applies
    current = body.get("status") or {}
    if not update.transitions and not status_due(current, status, "lastHealthCheck", now, ops.settings):
        return
    status["lastHealthCheck"] = timestamp(now)
    try:
        await report(ops, body, status, update.transitions, now)
    except OperatorError:
        return
    if scaling is not None and scaling.scaled:
        await emit(
            ops, body, reason=scaling.status.reason, message=scaling.event_message, warning=False, now=now
        )


def _autoscaling(agent: DurableAgent) -> AutoscalingSpec | None:
    autoscaling = agent.spec.autoscaling
    return autoscaling if autoscaling is not None and autoscaling.enabled else None


def _decide(agent: DurableAgent, health: AgentHealth | None, now: datetime) -> ScaleDecision:
    spec = _autoscaling(agent)
    assert spec is not None, "only called with autoscaling enabled"
    previous = agent.status.autoscaling if agent.status is not None else None
    return decide(spec, paused=agent.spec.paused, health=health, previous=previous, now=now)


def _with_autoscaling(agent: DurableAgent, decision: AutoscalingStatus) -> DurableAgent:
    """`agent` as if `decision` were already recorded: what the builders read the replica count from."""
    status = agent.status or DurableAgentStatus()
    return agent.model_copy(update={"status": status.model_copy(update={"autoscaling": decision})})


async def _apply_scale(ops: Operator, agent: DurableAgent, temporal: WorkerTemporal) -> dict[str, Any] | None:
    """Build → plan → apply for the new replica count (the Deployment and its disruption budget change);
    the live Deployment, or None when an object belongs to someone else (then nothing is applied)."""
    objects = build_agent_objects(agent, temporal=temporal, default_image=ops.settings.worker_image)
    observed, actions = await _plan(ops, agent, objects)
    if any(isinstance(a, Conflict) for a in actions):
        return None
    live = await _execute(ops, observed, actions)
    return live.get(_deployment_key(agent))


async def _plan(
    ops: Operator, agent: DurableAgent, objects: AgentObjects
) -> tuple[dict[ObjectKey, dict[str, Any] | None], list[Action]]:
    keys = child_keys(_name(agent), _ns(agent))
    observed = dict(zip(keys, await asyncio.gather(*(ops.kube.get(k) for k in keys)), strict=True))
    return observed, plan({key_of(m): m for m in objects.manifests}, observed, owner_uid=agent.metadata.uid)


async def _execute(
    ops: Operator, observed: Mapping[ObjectKey, dict[str, Any] | None], actions: list[Action]
) -> dict[ObjectKey, dict[str, Any] | None]:
    live = dict(observed)
    for action in actions:
        if isinstance(action, Apply):
            live[action.key] = await ops.kube.apply(action.manifest)
        elif isinstance(action, Delete):
            await ops.kube.delete(action.key, uid=action.uid)
            live[action.key] = None
    return live


async def _desired(ops: Operator, agent: DurableAgent) -> AgentObjects:
    connection = None
    ref = agent.spec.temporal.connection_ref
    if ref is not None:
        connection = await ops.fetch_connection(_ns(agent), ref.name)
    temporal = resolve_temporal(agent, connection=connection, default=ops.default_params)
    return build_agent_objects(agent, temporal=temporal, default_image=ops.settings.worker_image)


def _observation(
    ops: Operator,
    agent: DurableAgent,
    *,
    deployment: Mapping[str, Any] | None,
    health: HealthObservation | None,
    spec_error: str | None = None,
    blocked: tuple[str, str] | None = None,
    generation: int | None = None,
) -> AgentObservation:
    return AgentObservation(
        generation=generation if generation is not None else agent.metadata.generation,
        desired_replicas=desired_replicas(agent),
        paused=agent.spec.paused,
        autoscaling=_autoscaling(agent) is not None,
        task_queue=agent.task_queue,
        spec_error=spec_error,
        blocked=blocked,
        deployment=DeploymentObservation.from_manifest(deployment) if deployment is not None else None,
        health=health,
        live_within=ops.settings.live_within,
    )


async def _report_stuck(
    ops: Operator,
    body: Mapping[str, Any],
    now: datetime,
    *,
    spec_error: str | None = None,
    blocked: tuple[str, str] | None = None,
) -> None:
    """Report a spec that cannot work, or a missing dependency: conditions and a Warning event."""
    meta = body["metadata"]
    observation = AgentObservation(
        generation=meta.get("generation"), desired_replicas=0, spec_error=spec_error, blocked=blocked
    )
    update = agent_conditions(observation, _conditions(body), now)
    status = {"observedGeneration": meta.get("generation"), "conditions": update.to_api()}
    # If this write fails, the caller's error (raised next) says more than the failed write would.
    with contextlib.suppress(KubeApiError):
        await report(ops, body, status, update.transitions, now)


def _replica_status(agent: DurableAgent, deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    observed = (deployment or {}).get("status") or {}
    return {
        "replicas": observed.get("replicas", 0),
        "readyReplicas": observed.get("readyReplicas", 0),
        "selector": selector_string(_name(agent)),
    }


def _conditions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((body.get("status") or {}).get("conditions") or [])


def _deployment_key(agent: DurableAgent) -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", _ns(agent), deployment_name(_name(agent)))


def _name(agent: DurableAgent) -> str:
    return agent.metadata.name or ""


def _ns(agent: DurableAgent) -> str:
    return agent.metadata.namespace or "default"
