"""Versions of an agent, their open pinned runs, the rollout strategy and now → what to do. Pure.

A DurableAgent's config is a version (a build id, see `durable_agents_runtime.versioning`) with a worker
Deployment of its own. `plan_versions` decides, from what was observed, which Deployments to create, scale
and delete and how Temporal should route new runs; the reconcile gathers the inputs and applies the plan,
as temporal-worker-controller's `GeneratePlan` does. One small function per decision:

- `_routing`: the target becomes current at once (`AllAtOnce`, a rollback — by spec or, `forced`, by
  annotation, whatever the strategy —, the first version), step by
  step (`Progressive`: ramp percentages with pauses, then current) or never by the operator (`Manual`).
  It waits while the target has no ready worker or its replay gate has not passed, and never moves
  traffic to a target the gate refused: the current version keeps serving.
- `_roles`: every version not current, ramping or the target is draining while it has open pinned runs
  (unknown counts as open: runs awaiting approval must never lose their workers) and drained once it has
  none.
- `_replicas`: the current version and the target get the spec's replicas (what `kubectl scale` and the
  autoscaler set); a draining version keeps its workers, never fewer than one; a drained one goes to zero.
- `_deletions`: a drained version's Deployment is deleted once it has been drained for the sunset delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "DEFAULT_SUNSET_DELAY",
    "ObservedVersion",
    "RolloutPolicy",
    "RolloutStep",
    "RoutingChange",
    "RoutingState",
    "VersionPlan",
    "VersionRole",
    "current_after",
    "plan_versions",
]

DEFAULT_SUNSET_DELAY = timedelta(minutes=5)
"""How long a drained version's Deployment is kept (at zero replicas) before it is deleted."""

Strategy = Literal["AllAtOnce", "Progressive", "Manual"]
VersionRole = Literal["current", "ramping", "target", "draining", "drained"]
"""`target`: the spec's version, not yet taking traffic. `draining`: open pinned runs remain."""
ReplayGate = Literal["Passed", "Refused", "Pending", "Off"]


@dataclass(frozen=True)
class RolloutStep:
    """One step of a progressive rollout: this share of new runs, for at least `pause`."""

    ramp_percentage: float
    pause: timedelta


@dataclass(frozen=True)
class RolloutPolicy:
    """The spec's rollout settings."""

    strategy: Strategy = "AllAtOnce"
    steps: tuple[RolloutStep, ...] = ()
    replicas: int = 1
    """Workers for the current version (and the target): the spec's replicas or the autoscaler's."""
    sunset_delay: timedelta = DEFAULT_SUNSET_DELAY


@dataclass(frozen=True)
class ObservedVersion:
    """What the cluster and Temporal say about one version."""

    build_id: str
    replicas: int | None = None
    """Replicas of its Deployment; None when it has no Deployment."""
    ready_replicas: int = 0
    registered: bool = False
    """Temporal knows the version (a worker of it has polled)."""
    pinned_open_runs: int | None = None
    """Open runs on the version; None when the count could not be read."""
    drained_since: datetime | None = None
    """When the operator first saw it with no open runs (from status)."""
    last_current_at: datetime | None = None
    """When it was last the current version (from status); set means a return to it is a rollback."""
    replay_gate: ReplayGate = "Off"


@dataclass(frozen=True)
class RoutingState:
    """The Worker Deployment's routing as Temporal reports it."""

    current: str | None = None
    ramping: str | None = None
    ramp_percentage: float = 0.0
    ramp_changed_at: datetime | None = None


@dataclass(frozen=True)
class RoutingChange:
    """One routing call: make `build_id` current, ramp it to `ramp_percentage`, or (None) stop ramping."""

    build_id: str | None
    set_current: bool = False
    ramp_percentage: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class VersionPlan:
    """The actions of one reconcile, and each version's role for the status."""

    target: str = ""
    """The version the plan moves towards."""
    create_target: bool = False
    scale: Mapping[str, int] = field(default_factory=dict)
    delete: tuple[str, ...] = ()
    routing: RoutingChange | None = None
    roles: Mapping[str, VersionRole] = field(default_factory=dict)
    drained_since: Mapping[str, datetime] = field(default_factory=dict)
    """Versions seen drained, with the time they were first seen so (to keep in status)."""
    waiting: str | None = None
    """Why the target does not take traffic yet (None when it does, or needs nothing)."""
    blocked: str | None = None
    """Why the rollout cannot go on by itself (a refused replay gate)."""


def plan_versions(
    target: str,
    versions: Mapping[str, ObservedVersion],
    routing: RoutingState,
    policy: RolloutPolicy,
    now: datetime,
    *,
    forced: bool = False,
) -> VersionPlan:
    """The plan that moves the agent towards version `target` (the spec's build id, or with `forced`
    the version a rollback asked for: current at once, whatever the strategy)."""
    target_seen = versions.get(target, ObservedVersion(target))
    change, waiting, blocked = _routing(target_seen, routing, policy, now, forced=forced)
    current_after = target if change is not None and change.set_current else routing.current
    ramping_after = _ramping_after(change, routing)
    roles, drained_since = _roles(target, versions, current_after, ramping_after, now)
    scale = _replicas(target, versions, roles, policy)
    return VersionPlan(
        target=target,
        create_target=target_seen.replicas is None,
        scale=scale,
        delete=_deletions(versions, roles, drained_since, policy, now),
        routing=change,
        roles=roles,
        drained_since=drained_since,
        waiting=waiting,
        blocked=blocked,
    )


def current_after(plan: VersionPlan, routed: bool, routing: RoutingState) -> str | None:
    """The current version once the plan ran: its routing change's, if made (`routed`), else Temporal's."""
    change = plan.routing
    if routed and change is not None and change.set_current:
        return change.build_id
    return routing.current


def _ramping_after(change: RoutingChange | None, routing: RoutingState) -> str | None:
    if change is None:
        return routing.ramping
    if change.set_current or change.build_id is None:
        return None
    return change.build_id


def _routing(
    target: ObservedVersion, routing: RoutingState, policy: RolloutPolicy, now: datetime, *, forced: bool
) -> tuple[RoutingChange | None, str | None, str | None]:
    """(the routing change, why the target waits, why the rollout is blocked)."""
    if routing.current == target.build_id:
        if routing.ramping is not None:
            return RoutingChange(None, reason="the current version is the target: stop ramping"), None, None
        return None, None, None
    if target.replay_gate == "Refused":
        return None, None, f"the replay gate refused version {target.build_id}"
    if target.ready_replicas < 1 or not target.registered:
        return None, f"version {target.build_id} has no ready, registered worker yet", None
    promote = RoutingChange(target.build_id, set_current=True)
    if forced:
        return _because(promote, "rollback asked for by annotation"), None, None
    if target.replay_gate == "Pending":
        return None, f"the replay gate of version {target.build_id} is running", None
    if routing.current is None:
        return _because(promote, "the first version"), None, None
    if policy.strategy == "Manual":
        return None, f"strategy Manual: make version {target.build_id} current by hand", None
    if target.last_current_at is not None:
        return _because(promote, "rollback to a version that was current before"), None, None
    if policy.strategy == "AllAtOnce" or not policy.steps:
        return _because(promote, "strategy AllAtOnce"), None, None
    return _progressive(target.build_id, routing, policy.steps, now)


def _because(change: RoutingChange, reason: str) -> RoutingChange:
    return RoutingChange(change.build_id, change.set_current, change.ramp_percentage, reason)


def _progressive(
    build_id: str, routing: RoutingState, steps: tuple[RolloutStep, ...], now: datetime
) -> tuple[RoutingChange | None, str | None, str | None]:
    # A ramp of another version (or none) starts the steps from the first; a ramp that does not match
    # the step it falls in is reset to that step, so every step's share and pause are always honoured.
    if routing.ramping != build_id:
        first = steps[0]
        return RoutingChange(build_id, ramp_percentage=first.ramp_percentage, reason="step 1"), None, None
    index = _step_index(steps, routing.ramp_percentage)
    step = steps[index]
    if routing.ramp_percentage != step.ramp_percentage:
        reason = f"step {index + 1} (reset)"
        return RoutingChange(build_id, ramp_percentage=step.ramp_percentage, reason=reason), None, None
    if routing.ramp_changed_at is None or routing.ramp_changed_at + step.pause > now:
        return None, f"step {index + 1} of {len(steps)}: {step.ramp_percentage:g}% of new runs", None
    if index + 1 < len(steps):
        following = steps[index + 1]
        change = RoutingChange(
            build_id, ramp_percentage=following.ramp_percentage, reason=f"step {index + 2}"
        )
        return change, None, None
    return RoutingChange(build_id, set_current=True, reason="the last step's pause is over"), None, None


def _step_index(steps: tuple[RolloutStep, ...], percentage: float) -> int:
    index = 0
    for i, step in enumerate(steps):
        if step.ramp_percentage > percentage:
            break
        index = i
    return index


def _roles(
    target: str,
    versions: Mapping[str, ObservedVersion],
    current: str | None,
    ramping: str | None,
    now: datetime,
) -> tuple[dict[str, VersionRole], dict[str, datetime]]:
    roles: dict[str, VersionRole] = {}
    drained_since: dict[str, datetime] = {}
    for build_id in {target, *versions}:
        seen = versions.get(build_id, ObservedVersion(build_id))
        if build_id == current:
            roles[build_id] = "current"
        elif build_id == ramping:
            roles[build_id] = "ramping"
        elif build_id == target:
            roles[build_id] = "target"
        elif seen.pinned_open_runs is None or seen.pinned_open_runs > 0:
            roles[build_id] = "draining"
        else:
            roles[build_id] = "drained"
            drained_since[build_id] = seen.drained_since or now
    return roles, drained_since


def _replicas(
    target: str,
    versions: Mapping[str, ObservedVersion],
    roles: Mapping[str, VersionRole],
    policy: RolloutPolicy,
) -> dict[str, int]:
    scale: dict[str, int] = {}
    for build_id, role in roles.items():
        seen = versions.get(build_id, ObservedVersion(build_id))
        if role in ("current", "ramping", "target"):
            wanted = policy.replicas
        elif role == "draining":
            # Pinned runs only run on their version: keep its workers, at least one.
            wanted = max(seen.replicas or 0, 1)
        else:
            wanted = 0
        if seen.replicas is None:
            continue  # no Deployment: the target's is created with these replicas, others are gone
        if seen.replicas != wanted:
            scale[build_id] = wanted
    return scale


def _deletions(
    versions: Mapping[str, ObservedVersion],
    roles: Mapping[str, VersionRole],
    drained_since: Mapping[str, datetime],
    policy: RolloutPolicy,
    now: datetime,
) -> tuple[str, ...]:
    return tuple(
        sorted(
            build_id
            for build_id, role in roles.items()
            if role == "drained"
            and versions.get(build_id, ObservedVersion(build_id)).replicas is not None
            and now - drained_since[build_id] >= policy.sunset_delay
        )
    )
