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
    current_after,
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


@dataclass
class _Live:
    """The agent's per-version Deployments and ConfigMaps by build id, kept up to date while executing."""

    deployments: dict[str, dict[str, Any]]
    configmaps: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class _Done:
    """What the execute step did."""

    routed: bool
    deleted: tuple[str, ...]
    current: str | None


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
    live = await _live_versions(ops, agent)
    live.deployments[target.build_id] = await _apply_target(ops, agent, target, live)
    deployment_name = versioning.deployment_name(objects.config)
    limit = _OBSERVE_CALLS * ops.settings.temporal_timeout
    try:
        client = await ops.temporal.client(params)
        seen = await asyncio.wait_for(
            _observe(client, deployment_name, objects, live.deployments, previous, now), limit
        )
    except (TemporalUnavailable, versioning.VersioningError, RPCError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {limit:g}s"
        return _unreachable(agent, target.build_id, live, previous, reason)
    plan = plan_versions(target.build_id, seen.versions, seen.routing, _policy(agent), now)
    done = await _execute(ops, client, agent, deployment_name, plan, live, seen, previous)
    return _report(agent, target.build_id, plan, seen, done, live)


def _unreachable(
    agent: DurableAgent, target: str, live: _Live, previous: Mapping[str, Any], reason: str
) -> Rollout:
    """The rollout when Temporal could not be read: the previous status stays, nothing moved."""
    current = previous.get("currentVersion")
    condition = rollout_condition(target, None, None, reason)
    fields = {"versions": previous.get("versions"), "currentVersion": current}
    shown = live.deployments.get(current or "") or live.deployments[target]
    return Rollout(_with_selector(fields, _name(agent), current), condition, [], shown)


async def _execute(
    ops: Operator,
    client: Client,
    agent: DurableAgent,
    deployment_name: str,
    plan: VersionPlan,
    live: _Live,
    seen: _Seen,
    previous: Mapping[str, Any],
) -> _Done:
    """Scale, move the routing, sunset drained versions and, once a version is current, retire what the
    agent had before it was versioned."""
    await _scale(ops, agent, plan, live)
    routed = await _route(client, deployment_name, plan, ops.settings.temporal_timeout)
    deleted = await _sunset(ops, agent, plan, live)
    current = current_after(plan, routed, seen.routing)
    if current is not None and (routed or not previous.get("currentVersion")):
        await _retire_unversioned(ops, agent)
    return _Done(routed, deleted, current)


def _report(
    agent: DurableAgent, target: str, plan: VersionPlan, seen: _Seen, done: _Done, live: _Live
) -> Rollout:
    """The status fields, the `Rollout` condition and the Events of this step."""
    detail = _gate_detail(seen.gate)
    condition = rollout_condition(target, plan, detail, None, propagating=seen.propagating)
    events = rollout_events(
        target, plan, routed=done.routed, deleted=done.deleted, previous_current=seen.routing.current
    )
    fields = {
        "currentVersion": done.current,
        "versions": versions_status(plan, seen.versions, done.deleted),
    }
    shown = live.deployments.get(done.current or "") or live.deployments.get(target)
    return Rollout(_with_selector(fields, _name(agent), done.current), condition, events, shown, detail)


def _policy(agent: DurableAgent) -> RolloutPolicy:
    spec = agent.spec.versioning
    return RolloutPolicy(
        strategy=spec.strategy,
        steps=tuple(RolloutStep(s.ramp_percentage, s.pause) for s in spec.steps),
        replicas=desired_replicas(agent),
        sunset_delay=spec.sunset_delay,
    )


async def _live_versions(ops: Operator, agent: DurableAgent) -> _Live:
    deployments, configmaps = await asyncio.gather(
        _owned(ops, "apps/v1", "Deployment", agent), _owned(ops, "v1", "ConfigMap", agent)
    )
    return _Live(deployments, configmaps)


async def _owned(
    ops: Operator, api_version: str, kind: str, agent: DurableAgent
) -> dict[str, dict[str, Any]]:
    """The agent's per-version objects of `kind`, by build id (objects it does not control are left out)."""
    items = await ops.kube.list(
        api_version, kind, _ns(agent), label_selector=f"{LABEL_AGENT}={_name(agent)},{LABEL_BUILD_ID}"
    )
    owned: dict[str, dict[str, Any]] = {}
    for item in items:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        build_id = labels.get(LABEL_BUILD_ID)
        if build_id and labels.get(LABEL_AGENT) == _name(agent) and _controlled_by(meta, agent):
            owned[build_id] = item
    return owned


def _controlled_by(meta: Mapping[str, Any], agent: DurableAgent) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == agent.metadata.uid
        for ref in meta.get("ownerReferences") or []
    )


async def _apply_target(
    ops: Operator, agent: DurableAgent, target: VersionObjects, live: _Live
) -> dict[str, Any]:
    """Apply the spec's version (ConfigMap first: the Deployment mounts it); changes that keep the build
    id (resources, the Temporal address, tracing) roll its pods in place."""
    desired = {key_of(target.configmap): target.configmap, key_of(target.deployment): target.deployment}
    observed: dict[ObjectKey, dict[str, Any] | None] = {
        key_of(target.configmap): live.configmaps.get(target.build_id)
        or await ops.kube.get(key_of(target.configmap)),
        key_of(target.deployment): live.deployments.get(target.build_id)
        or await ops.kube.get(key_of(target.deployment)),
    }
    plan = plan_objects(desired, observed, owner_uid=agent.metadata.uid)
    if (conflict := plan.conflict_error()) is not None:
        raise conflict
    applied = await execute(ops.kube, plan)
    deployment = applied[key_of(target.deployment)]
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
    """Temporal's view of every version with a Deployment (and the target), as planner input."""
    target = objects.version
    assert target is not None
    state = await versioning.describe_deployment(client, deployment_name)
    registered = {v.build_id for v in state.versions} if state is not None else set()
    build_ids = sorted({*deployments, target.build_id})
    counts = await _open_runs(client, deployment_name, build_ids, registered)
    info = await _describe(
        client, deployment_name, target.build_id if target.build_id in registered else None
    )
    ramping = await _describe(client, deployment_name, state.ramping if state is not None else None)
    gated = objects.config.versioning is not None and objects.config.versioning.replay_histories > 0
    facts = _VersionFacts(target.build_id, registered, counts, info, gated, now)
    versions = {
        b: _observed_version(b, deployments.get(b), facts, _drained_before(previous)) for b in build_ids
    }
    routing = _routing_state(state, ramping)
    verdict = info.gate if info is not None and gated else None
    return _Seen(versions, routing, verdict, state is not None and state.propagating)


async def _open_runs(
    client: Client, deployment_name: str, build_ids: list[str], registered: set[str]
) -> dict[str, int | None]:
    """Open pinned runs of each version, read concurrently."""

    async def count(build_id: str) -> int | None:
        if build_id not in registered:
            return 0  # never polled: nothing can be pinned to it
        try:
            return await versioning.pinned_open_runs(
                client, WorkerDeploymentVersion(deployment_name, build_id)
            )
        except Exception:  # unknown counts as open: runs awaiting approval must keep their workers
            return None

    counts = await asyncio.gather(*(count(b) for b in build_ids))
    return dict(zip(build_ids, counts, strict=True))


async def _describe(
    client: Client, deployment_name: str, build_id: str | None
) -> versioning.VersionInfo | None:
    if build_id is None:
        return None
    return await versioning.describe_version(client, WorkerDeploymentVersion(deployment_name, build_id))


@dataclass(frozen=True)
class _VersionFacts:
    """What Temporal said, shared by every version's `ObservedVersion`."""

    target: str
    registered: set[str]
    counts: Mapping[str, int | None]
    target_info: versioning.VersionInfo | None
    gated: bool
    now: datetime


def _observed_version(
    build_id: str,
    live: Mapping[str, Any] | None,
    facts: _VersionFacts,
    drained_before: Mapping[str, Any],
) -> ObservedVersion:
    """One version as the planner sees it: its Deployment (None: has none) and Temporal's facts."""
    is_target = build_id == facts.target
    return ObservedVersion(
        build_id=build_id,
        replicas=(live.get("spec") or {}).get("replicas") if live is not None else None,
        ready_replicas=((live or {}).get("status") or {}).get("readyReplicas", 0),
        registered=build_id in facts.registered,
        pinned_open_runs=facts.counts[build_id],
        drained_since=_parse_time(drained_before.get(build_id)),
        last_current_at=_was_current(facts.target_info, facts.now) if is_target else None,
        replay_gate=_gate(facts.target_info) if is_target and facts.gated else "Off",
    )


def _drained_before(previous: Mapping[str, Any]) -> dict[str, Any]:
    return {row.get("buildId"): row.get("drainedSince") for row in previous.get("versions") or [] if row}


def _routing_state(
    state: versioning.DeploymentState | None, ramping: versioning.VersionInfo | None
) -> RoutingState:
    if state is None:
        return RoutingState()
    return RoutingState(
        current=state.current,
        ramping=state.ramping,
        ramp_percentage=state.ramp_percentage,
        ramp_changed_at=ramping.ramping_since if ramping is not None else None,
    )


async def _scale(ops: Operator, agent: DurableAgent, plan: VersionPlan, live: _Live) -> None:
    for build_id, replicas in plan.scale.items():
        if build_id in live.deployments:
            key = _deployment_key(_ns(agent), _name(agent), build_id)
            live.deployments[build_id] = await ops.kube.scale(key, replicas) or live.deployments[build_id]


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


async def _sunset(ops: Operator, agent: DurableAgent, plan: VersionPlan, live: _Live) -> tuple[str, ...]:
    """Delete the Deployments (and ConfigMaps) of versions drained for the sunset delay, and ConfigMaps
    whose version has no Deployment left."""
    name, namespace = _name(agent), _ns(agent)
    for build_id in plan.delete:
        deployment = live.deployments.pop(build_id)
        await ops.kube.delete(_deployment_key(namespace, name, build_id), uid=_uid(deployment))
    for build_id, configmap in list(live.configmaps.items()):
        if build_id != plan.target and build_id not in live.deployments:
            key = ObjectKey("v1", "ConfigMap", namespace, version_configmap_name(name, build_id))
            await ops.kube.delete(key, uid=_uid(configmap))
            del live.configmaps[build_id]
    return plan.delete


async def _retire_unversioned(ops: Operator, agent: DurableAgent) -> None:
    """Delete the Deployment and ConfigMap the agent had before it was versioned, once a version is
    current: from then on Temporal hands the unversioned runs still open to the current version."""
    for key in child_keys(_name(agent), _ns(agent)):
        if key.kind not in _UNVERSIONED_KINDS:
            continue
        meta = ((await ops.kube.get(key)) or {}).get("metadata") or {}
        if _controlled_by(meta, agent):
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


def _uid(body: Mapping[str, Any]) -> str | None:
    return (body.get("metadata") or {}).get("uid")


def _name(agent: DurableAgent) -> str:
    return agent.metadata.name or ""


def _ns(agent: DurableAgent) -> str:
    return agent.metadata.namespace or "default"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
