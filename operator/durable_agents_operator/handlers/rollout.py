"""Rainbow rollouts of a versioned DurableAgent (`spec.versioning.enabled`): observe → plan → execute.

Observe: the agent's per-version Deployments (by label, owned by the agent) and, from Temporal, its
Worker Deployment's routing, each version's open pinned runs and the target's replay gate verdict.
Plan: `version_planner.plan_versions`. Execute: apply the spec's version (ConfigMap and Deployment), scale
the others, move the routing (make a version current or ramp it), and delete versions drained for the
sunset delay (Deployment and ConfigMap). Report: `rollout_status`.

Reconcile runs it on every spec change and the health timer on every tick, which is what moves a
rollout on (workers became ready, the gate answered, runs drained, the sunset delay passed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError

from durable_agents_api.resources import Condition, DurableAgent
from durable_agents_operator.builders import desired_replicas, selector_string
from durable_agents_operator.builders.agent_objects import AgentObjects, VersionObjects, child_keys
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import TemporalUnavailable
from durable_agents_operator.kube import execute
from durable_agents_operator.naming import (
    LABEL_AGENT,
    LABEL_BUILD_ID,
    version_configmap_name,
    version_deployment_name,
)
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.planner import plan_objects
from durable_agents_operator.rollout_status import (
    RolloutEvent,
    rollout_condition,
    rollout_events,
    versions_status,
)
from durable_agents_operator.version_planner import (
    ObservedVersion,
    RolloutPolicy,
    RolloutStep,
    RoutingChange,
    RoutingState,
    VersionPlan,
    plan_versions,
)
from durable_agents_runtime import versioning

__all__ = ["Rollout", "roll_out", "shared_keys"]

_OBSERVE_CALLS = 4
"""Temporal calls of one observation in sequence (the rest run concurrently): its time limit is this
many `temporalTimeout`s."""

_UNVERSIONED_KINDS = ("ConfigMap", "Deployment")
"""What an agent had before `spec.versioning.enabled`: one ConfigMap and one Deployment for all configs."""


def shared_keys(keys: tuple[ObjectKey, ...]) -> tuple[ObjectKey, ...]:
    """The agent's objects shared by all versions (Service, PDB), out of `child_keys`."""
    return tuple(k for k in keys if k.kind not in _UNVERSIONED_KINDS)


@dataclass(frozen=True)
class Rollout:
    """What one rollout step did, for the status and the Events."""

    fields: dict[str, Any]
    """`currentVersion`, `versions` and the scale subresource's `selector`."""
    condition: Condition
    events: list[RolloutEvent] = field(default_factory=list)
    deployment: dict[str, Any] | None = None
    """The Deployment whose replicas the status reports: the current version's (the target's before any
    version is current)."""
    blocked_detail: str | None = None


@dataclass(frozen=True)
class _Seen:
    versions: dict[str, ObservedVersion]
    routing: RoutingState
    gate: versioning.GateVerdict | None
    propagating: bool


async def roll_out(
    ops: Operator,
    agent: DurableAgent,
    objects: AgentObjects,
    params: ConnectionParams,
    *,
    previous: Mapping[str, Any],
    now: datetime,
) -> Rollout:
    """One observe → plan → execute step of the agent's rollout towards `objects.version`.

    Raises `ObjectConflict` when a version's object belongs to someone else, and `KubeApiError`s as
    they come; Temporal problems end in a `Rollout` condition `Unknown` (the spec's Deployment is still
    applied, nothing else moves)."""
    target = objects.version
    assert target is not None, "roll_out needs a versioned agent"
    name, namespace = agent.metadata.name or "", agent.metadata.namespace or "default"
    deployments = await _owned(ops, "apps/v1", "Deployment", agent)
    configmaps = await _owned(ops, "v1", "ConfigMap", agent)
    live_target = await _apply_target(ops, agent, target, deployments, configmaps)
    deployments[target.build_id] = live_target
    deployment_name = versioning.deployment_name(objects.config)
    timeout = ops.settings.temporal_timeout
    try:
        client = await ops.temporal.client(params)
        seen = await asyncio.wait_for(
            _observe(client, deployment_name, objects, deployments, previous, now), _OBSERVE_CALLS * timeout
        )
    except (TemporalUnavailable, versioning.VersioningError, RPCError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {_OBSERVE_CALLS * timeout:g}s"
        condition = rollout_condition(target.build_id, None, None, reason)
        fields = {"versions": previous.get("versions"), "currentVersion": previous.get("currentVersion")}
        shown = deployments.get(previous.get("currentVersion") or "") or live_target
        return Rollout(_with_selector(fields, name, previous.get("currentVersion")), condition, [], shown)

    policy = _policy(agent)
    plan = plan_versions(target.build_id, seen.versions, seen.routing, policy, now)
    for build_id, replicas in plan.scale.items():
        if build_id in deployments:
            deployments[build_id] = (
                await ops.kube.scale(_deployment_key(namespace, name, build_id), replicas)
                or deployments[build_id]
            )
    routed = await _route(client, deployment_name, plan, timeout)
    deleted = await _sunset(ops, agent, plan, deployments, configmaps, target.build_id)
    current = (
        plan.routing.build_id
        if routed and plan.routing is not None and plan.routing.set_current
        else seen.routing.current
    )
    if current is not None and (routed or not previous.get("currentVersion")):
        await _retire_unversioned(ops, agent)
    detail = _gate_detail(seen.gate)
    condition = rollout_condition(target.build_id, plan, detail, None, propagating=seen.propagating)
    events = rollout_events(
        target.build_id,
        plan,
        routed=routed,
        deleted=deleted,
        previous_current=seen.routing.current,
    )
    fields = {"currentVersion": current, "versions": versions_status(plan, seen.versions, deleted)}
    shown = deployments.get(current or "") or deployments.get(target.build_id)
    return Rollout(_with_selector(fields, name, current), condition, events, shown, detail)


def _policy(agent: DurableAgent) -> RolloutPolicy:
    spec = agent.spec.versioning
    return RolloutPolicy(
        strategy=spec.strategy,
        steps=tuple(RolloutStep(s.ramp_percentage, s.pause) for s in spec.steps),
        replicas=desired_replicas(agent),
        sunset_delay=spec.sunset_delay,
    )


async def _owned(
    ops: Operator, api_version: str, kind: str, agent: DurableAgent
) -> dict[str, dict[str, Any]]:
    """The agent's per-version objects of `kind`, by build id (objects it does not control are left out)."""
    name, namespace, uid = (
        agent.metadata.name or "",
        agent.metadata.namespace or "default",
        agent.metadata.uid,
    )
    items = await ops.kube.list(
        api_version, kind, namespace, label_selector=f"{LABEL_AGENT}={name},{LABEL_BUILD_ID}"
    )
    owned: dict[str, dict[str, Any]] = {}
    for item in items:
        meta = item.get("metadata") or {}
        build_id = (meta.get("labels") or {}).get(LABEL_BUILD_ID)
        agent_label = (meta.get("labels") or {}).get(LABEL_AGENT)
        controlled = any(
            ref.get("controller") and ref.get("uid") == uid for ref in meta.get("ownerReferences") or []
        )
        if build_id and agent_label == name and controlled:
            owned[build_id] = item
    return owned


async def _apply_target(
    ops: Operator,
    agent: DurableAgent,
    target: VersionObjects,
    deployments: Mapping[str, dict[str, Any]],
    configmaps: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """Apply the spec's version (ConfigMap first: the Deployment mounts it); changes that keep the build
    id (resources, the Temporal address, tracing) roll its pods in place."""
    desired = {key_of(target.configmap): target.configmap, key_of(target.deployment): target.deployment}
    observed: dict[ObjectKey, dict[str, Any] | None] = {
        key_of(target.configmap): configmaps.get(target.build_id)
        or await ops.kube.get(key_of(target.configmap)),
        key_of(target.deployment): deployments.get(target.build_id)
        or await ops.kube.get(key_of(target.deployment)),
    }
    plan = plan_objects(desired, observed, owner_uid=agent.metadata.uid)
    if (conflict := plan.conflict_error()) is not None:
        raise conflict
    live = await execute(ops.kube, plan)
    deployment = live[key_of(target.deployment)]
    assert deployment is not None
    return deployment


async def _observe(
    client: Client,
    deployment_name: str,
    objects: AgentObjects,
    deployments: Mapping[str, dict[str, Any]],
    previous: Mapping[str, Any],
    now: datetime,
) -> _Seen:
    target = objects.version
    assert target is not None
    state = await versioning.describe_deployment(client, deployment_name)
    registered = {v.build_id for v in state.versions} if state is not None else set()
    build_ids = sorted({*deployments, target.build_id})

    async def open_runs(build_id: str) -> int | None:
        if build_id not in registered:
            return 0  # never polled: nothing can be pinned to it
        try:
            return await versioning.pinned_open_runs(
                client, WorkerDeploymentVersion(deployment_name, build_id)
            )
        except Exception:  # unknown counts as open: runs awaiting approval must keep their workers
            return None

    counts = dict(zip(build_ids, await asyncio.gather(*(open_runs(b) for b in build_ids)), strict=True))
    info = (
        await versioning.describe_version(client, WorkerDeploymentVersion(deployment_name, target.build_id))
        if target.build_id in registered
        else None
    )
    ramp_since = None
    if state is not None and state.ramping is not None:
        ramping = await versioning.describe_version(
            client, WorkerDeploymentVersion(deployment_name, state.ramping)
        )
        ramp_since = ramping.ramping_since if ramping is not None else None
    gated = objects.config.versioning is not None and objects.config.versioning.replay_histories > 0
    drained_before = {
        row.get("buildId"): row.get("drainedSince") for row in previous.get("versions") or [] if row
    }
    versions: dict[str, ObservedVersion] = {}
    for build_id in build_ids:
        live = deployments.get(build_id)
        is_target = build_id == target.build_id
        gate = _gate(info) if is_target and gated else "Off"
        versions[build_id] = ObservedVersion(
            build_id=build_id,
            replicas=((live or {}).get("spec") or {}).get("replicas") if live is not None else None,
            ready_replicas=((live or {}).get("status") or {}).get("readyReplicas", 0),
            registered=build_id in registered,
            pinned_open_runs=counts[build_id],
            drained_since=_parse_time(drained_before.get(build_id)),
            last_current_at=_was_current(info, now) if is_target else None,
            replay_gate=gate,
        )
    routing = RoutingState(
        current=state.current if state is not None else None,
        ramping=state.ramping if state is not None else None,
        ramp_percentage=state.ramp_percentage if state is not None else 0.0,
        ramp_changed_at=ramp_since,
    )
    gate_verdict = info.gate if info is not None and gated else None
    return _Seen(versions, routing, gate_verdict, state is not None and state.propagating)


async def _route(client: Client, deployment_name: str, plan: VersionPlan, timeout: float) -> bool:
    """Perform the plan's routing change; whether one was made (a failure waits for the next tick)."""
    change = plan.routing
    if change is None:
        return False
    try:
        async with asyncio.timeout(2 * timeout):
            await _change_routing(client, deployment_name, change, timeout)
    except (versioning.VersioningError, RPCError, TimeoutError):
        return False
    return True


async def _change_routing(
    client: Client, deployment_name: str, change: RoutingChange, timeout: float
) -> None:
    if change.build_id is None:
        await versioning.stop_ramping(client, deployment_name)
        return
    version = WorkerDeploymentVersion(deployment_name, change.build_id)
    if change.set_current:
        await versioning.promote(client, version, timeout=timeout)
    else:
        await versioning.set_ramping(client, version, change.ramp_percentage, timeout=timeout)


async def _sunset(
    ops: Operator,
    agent: DurableAgent,
    plan: VersionPlan,
    deployments: dict[str, dict[str, Any]],
    configmaps: Mapping[str, dict[str, Any]],
    target: str,
) -> tuple[str, ...]:
    """Delete the Deployments (and ConfigMaps) of versions drained for the sunset delay, and ConfigMaps
    whose version has no Deployment left."""
    name, namespace = agent.metadata.name or "", agent.metadata.namespace or "default"
    for build_id in plan.delete:
        live = deployments.pop(build_id)
        await ops.kube.delete(
            _deployment_key(namespace, name, build_id), uid=(live.get("metadata") or {}).get("uid")
        )
    for build_id, configmap in configmaps.items():
        if build_id != target and build_id not in deployments:
            await ops.kube.delete(
                ObjectKey("v1", "ConfigMap", namespace, version_configmap_name(name, build_id)),
                uid=(configmap.get("metadata") or {}).get("uid"),
            )
    return plan.delete


async def _retire_unversioned(ops: Operator, agent: DurableAgent) -> None:
    """Delete the Deployment and ConfigMap the agent had before it was versioned, once a version is
    current: from then on Temporal hands the unversioned runs still open to the current version."""
    name, namespace = agent.metadata.name or "", agent.metadata.namespace or "default"
    for key in child_keys(name, namespace):
        if key.kind not in _UNVERSIONED_KINDS:
            continue
        live = await ops.kube.get(key)
        meta = (live or {}).get("metadata") or {}
        if any(
            r.get("controller") and r.get("uid") == agent.metadata.uid
            for r in meta.get("ownerReferences") or []
        ):
            await ops.kube.delete(key, uid=meta.get("uid"))


def _gate(info: versioning.VersionInfo | None) -> Literal["Passed", "Refused", "Pending"]:
    """The target's gate: `Pending` until one of its workers recorded the verdict."""
    if info is None or info.gate is None:
        return "Pending"
    return "Passed" if info.gate.passed else "Refused"


def _was_current(info: versioning.VersionInfo | None, now: datetime) -> datetime | None:
    if info is None or not info.was_current:
        return None
    return info.last_current_time or now


def _gate_detail(verdict: versioning.GateVerdict | None) -> str | None:
    if verdict is None or verdict.passed:
        return None
    if verdict.workflow_id:
        return f"workflow {verdict.workflow_id}: {verdict.command}"
    return verdict.summary


def _with_selector(fields: dict[str, Any], agent: str, current: str | None) -> dict[str, Any]:
    """The scale subresource's selector: the current version's pods (what `kubectl scale` and an HPA act
    on), every worker pod of the agent before a version is current."""
    selector = selector_string(agent)
    if current:
        selector = f"{selector},{LABEL_BUILD_ID}={current}"
    return {**fields, "selector": selector}


def _deployment_key(namespace: str, agent: str, build_id: str) -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", namespace, version_deployment_name(agent, build_id))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
