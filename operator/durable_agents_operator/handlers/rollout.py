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
    ANNOTATION_ROLLBACK,
    LABEL_AGENT,
    LABEL_BUILD_ID,
    version_configmap_name,
    version_deployment_name,
)
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.planner import plan_objects
from durable_agents_operator.rollback_request import (
    RollbackAnswer,
    RollbackHold,
    answer_rollback,
    hold_from_status,
)
from durable_agents_operator.rollout_status import (
    RolloutEvent,
    retirement_events,
    rollback_events,
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
from durable_agents_operator.version_retirement import (
    Retirement,
    deletion_candidates,
    due_for_deletion,
    retirement_after,
    retiring_from_status,
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
    known: dict[str, str] = field(default_factory=dict)
    """Every version Temporal knows: build id → the server's status word."""


@dataclass
class _Live:
    """The agent's per-version Deployments and ConfigMaps by build id, kept up to date while executing."""

    deployments: dict[str, dict[str, Any]]
    configmaps: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class _Step:
    """One rollout step's inputs."""

    ops: Operator
    agent: DurableAgent
    spec_version: VersionObjects
    gated: bool
    """The replay gate runs in this agent's workers."""
    deployment_name: str
    previous: Mapping[str, Any]
    now: datetime

    @property
    def key(self) -> tuple[str, str]:
        return _ns(self.agent), _name(self.agent)


@dataclass(frozen=True)
class _Done:
    """What the execute step did."""

    routed: bool
    deleted: tuple[str, ...]
    current: str | None
    retirement: Retirement


async def roll_out(
    ops: Operator,
    agent: DurableAgent,
    objects: AgentObjects,
    params: ConnectionParams,
    *,
    previous: Mapping[str, Any],
    now: datetime,
) -> Rollout:
    """One observe → plan → execute step of the agent's rollout towards `objects.version` (or the
    version a rollback holds), acting on a rollback annotation first.

    Raises `ObjectConflict` when a version's object belongs to someone else, and `KubeApiError`s as
    they come; Temporal problems end in a `Rollout` condition `Unknown` (the spec's Deployment is still
    applied unless a rollback holds another version, nothing else moves)."""
    assert objects.version is not None, "roll_out needs a versioned agent"
    versioning_spec = objects.config.versioning
    gated = versioning_spec is not None and versioning_spec.replay_histories > 0
    deployment_name = versioning.deployment_name(objects.config)
    step = _Step(ops, agent, objects.version, gated, deployment_name, previous, now)
    async with ops.rollout_lock(step.key):
        return await _step(step, params)


async def _step(step: _Step, params: ConnectionParams) -> Rollout:
    spec_id = step.spec_version.build_id
    live = await _live_versions(step.ops, step.agent)
    hold = held_before = _held(step)
    limit = _OBSERVE_CALLS * step.ops.settings.temporal_timeout
    try:
        client = await step.ops.temporal.client(params)
        state = await asyncio.wait_for(versioning.describe_deployment(client, step.deployment_name), limit)
        request = _rollback_request(step.agent)
        answer = _answer(request, step, live, state) if request is not None else None
        hold = answer.hold if answer is not None and answer.refused is None else hold
        await _apply_unless_held(step, live, hold)
        target = hold.build_id if hold is not None else spec_id
        seen = await asyncio.wait_for(_observe(client, step, target, live.deployments, state), limit)
    except (TemporalUnavailable, versioning.VersioningError, RPCError, TimeoutError) as exc:
        await _apply_unless_held(step, live, hold)
        return _unreachable(step, live, str(exc) or f"no answer within {limit:g}s")
    policy = _policy(step.agent)
    plan = plan_versions(target, seen.versions, seen.routing, policy, step.now, forced=hold is not None)
    done = await _execute(step, client, plan, live, seen)
    if request is not None:
        await step.ops.kube.annotate(_agent_key(step.agent), {ANNOTATION_ROLLBACK: None})
    step.ops.rollback_holds[step.key] = hold
    events = rollback_events(request, answer, spec_id, had_hold=held_before is not None)
    return _report(step, plan, seen, done, live, hold, events)


def _held(step: _Step) -> RollbackHold | None:
    """The rollback hold still in force: the last step's (newer than the status a concurrent handler was
    given), else the status'."""
    spec_id = step.spec_version.build_id
    if step.key in step.ops.rollback_holds:
        hold = step.ops.rollback_holds[step.key]
        return hold if hold is not None and hold.holds(spec_id) else None
    return hold_from_status(step.previous.get("rollback"), spec_id)


def _rollback_request(agent: DurableAgent) -> str | None:
    return (agent.metadata.annotations or {}).get(ANNOTATION_ROLLBACK)


def _answer(
    request: str, step: _Step, live: _Live, state: versioning.DeploymentState | None
) -> RollbackAnswer:
    return answer_rollback(
        request,
        spec_build_id=step.spec_version.build_id,
        previous_version=step.previous.get("previousVersion"),
        deployments=set(live.deployments),
        registered={v.build_id for v in state.versions} if state is not None else set(),
    )


async def _apply_unless_held(step: _Step, live: _Live, hold: RollbackHold | None) -> None:
    """Apply the spec's version, unless a rollback holds another one (then the spec's version drains and
    is sunset like any older version, and is not created again)."""
    if hold is None:
        spec_id = step.spec_version.build_id
        live.deployments[spec_id] = await _apply_target(step.ops, step.agent, step.spec_version, live)


def _unreachable(step: _Step, live: _Live, reason: str) -> Rollout:
    """The rollout when Temporal could not be read: the previous status stays, nothing moved."""
    current = step.previous.get("currentVersion")
    condition = rollout_condition(step.spec_version.build_id, None, None, reason)
    fields = {k: step.previous.get(k) for k in ("versions", "currentVersion", "rollback")}
    shown = live.deployments.get(current or "") or live.deployments.get(step.spec_version.build_id)
    return Rollout(_with_selector(fields, _name(step.agent), current), condition, [], shown)


async def _execute(step: _Step, client: Client, plan: VersionPlan, live: _Live, seen: _Seen) -> _Done:
    """Scale, move the routing, sunset drained versions, delete sunset versions in Temporal and, once a
    version is current, retire what the agent had before it was versioned."""
    await _scale(step.ops, step.agent, plan, live)
    timeout = step.ops.settings.temporal_timeout
    routed = await _route(client, step.deployment_name, plan, timeout)
    current = current_after(plan, routed, seen.routing)
    keep = {plan.target, *([current] if current else [])}  # a held-back spec version may go
    candidates = deletion_candidates(seen.known, set(live.deployments), keep)
    deleted = await _sunset(step.ops, step.agent, plan, live)
    retirement = await _delete_in_temporal(step, client, candidates)
    if current is not None and (routed or not step.previous.get("currentVersion")):
        await _retire_unversioned(step.ops, step.agent)
    return _Done(routed, deleted, current, retirement)


async def _delete_in_temporal(step: _Step, client: Client, candidates: tuple[str, ...]) -> Retirement:
    """Try the due deletions of sunset versions in Temporal, each bounded by the Temporal timeout; a
    version that still has open runs (its Deployment was deleted by hand) is left alone."""
    retiring = retiring_from_status(step.previous.get("retiringVersions"))
    outcomes: dict[str, str | None] = {}
    for build_id in due_for_deletion(candidates, retiring, step.now):
        outcome = await _delete_version(client, WorkerDeploymentVersion(step.deployment_name, build_id), step)
        if outcome is not _STILL_OPEN:
            outcomes[build_id] = outcome
    return retirement_after(
        candidates, retiring, outcomes, step.previous.get("retiredVersions") or [], step.now
    )


_STILL_OPEN = "open runs remain"


async def _delete_version(client: Client, version: WorkerDeploymentVersion, step: _Step) -> str | None:
    """None when deleted, else why not (`_STILL_OPEN`: not tried)."""
    try:
        async with asyncio.timeout(step.ops.settings.temporal_timeout):
            if await versioning.pinned_open_runs(client, version) != 0:
                return _STILL_OPEN
            await versioning.delete_version(client, version)
    except versioning.VersioningError as exc:
        return str(exc)
    except (RPCError, TimeoutError) as exc:
        return str(exc) or f"no answer within {step.ops.settings.temporal_timeout:g}s"
    return None


def _report(
    step: _Step,
    plan: VersionPlan,
    seen: _Seen,
    done: _Done,
    live: _Live,
    hold: RollbackHold | None,
    events: list[RolloutEvent],
) -> Rollout:
    """The status fields, the `Rollout` condition and the Events of this step."""
    detail = _gate_detail(seen.gate)
    condition = rollout_condition(plan.target, plan, detail, None, propagating=seen.propagating)
    events = [
        *events,
        *rollout_events(
            plan.target, plan, routed=done.routed, deleted=done.deleted, previous_current=seen.routing.current
        ),
        *retirement_events(done.retirement),
    ]
    was = seen.routing.current
    fields = {
        "currentVersion": done.current,
        "previousVersion": was if was and was != done.current else step.previous.get("previousVersion"),
        "versions": versions_status(plan, seen.versions, done.deleted),
        "rollback": hold.to_status() if hold is not None else None,
        "retiredVersions": done.retirement.retired or None,
        "retiringVersions": [r.to_status() for r in done.retirement.retiring.values()] or None,
    }
    shown = live.deployments.get(done.current or "") or live.deployments.get(plan.target)
    return Rollout(_with_selector(fields, _name(step.agent), done.current), condition, events, shown, detail)


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
    step: _Step,
    target: str,
    deployments: Mapping[str, dict[str, Any]],
    state: versioning.DeploymentState | None,
) -> _Seen:
    """Temporal's view of every version with a Deployment (and the target), as planner input."""
    known = {v.build_id: v.status for v in state.versions} if state is not None else {}
    build_ids = sorted({*deployments, target})
    counts = await _open_runs(client, step.deployment_name, build_ids, set(known))
    info = await _describe(client, step.deployment_name, target if target in known else None)
    ramping = await _describe(client, step.deployment_name, state.ramping if state is not None else None)
    facts = _VersionFacts(target, set(known), counts, info, step.gated, step.now)
    drained = _drained_before(step.previous)
    versions = {b: _observed_version(b, deployments.get(b), facts, drained) for b in build_ids}
    verdict = info.gate if info is not None and step.gated else None
    propagating = state is not None and state.propagating
    return _Seen(versions, _routing_state(state, ramping), verdict, propagating, known)


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


def _agent_key(agent: DurableAgent) -> ObjectKey:
    return ObjectKey(agent.api_version, agent.kind, _ns(agent), _name(agent))


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
