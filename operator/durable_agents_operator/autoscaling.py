"""Backlog-driven worker scaling (`spec.autoscaling`): the decision, as a pure function.

While `spec.autoscaling.enabled`, the worker Deployment's replicas come from the task queue the health
timer already reads, not from `spec.replicas`:

    wanted  = ceil(backlog / targetBacklogPerWorker)     backlog = waiting workflow + activity tasks
    wanted  = max(wanted, 1) if any run is running       a run in flight needs a worker even with
                                                         nothing queued (its next task lands at once)
    desired = min(max(wanted, minReplicas), maxReplicas)
    0 while spec.paused                                  pausing wins over everything

Stabilisation: the replicas go up only when `scaleUpDelay` (default 15 s) has passed since the last
change, and down only when `scaleDownDelay` (default 2 min) has; until then the decision says so
(`ScaleUpDelayed`, `ScaleDownDelayed`) and keeps the count. The first decision is not delayed. Pausing
and resuming are not scalings: they leave `lastScaleTime` as it is.

When Temporal cannot be read (or has not been read yet) nothing changes: an unknown backlog is not an
empty one, and scaling down a busy agent because its Temporal is briefly unreachable would hurt.

Before the first decision the Deployment gets `minReplicas`. The decision is recorded in
`status.autoscaling` (replicas, desiredReplicas, lastScaleTime, reason, message); the builders read the
replica count from there, so reconciling a spec change keeps the autoscaled count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from durable_agents_api.resources import AutoscalingSpec, AutoscalingStatus, DurableAgent, DurableAgentStatus
from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "DEFAULT_SCALE_DOWN_DELAY",
    "DEFAULT_SCALE_UP_DELAY",
    "BacklogObservation",
    "ScaleDecision",
    "ScaleReason",
    "autoscaled_replicas",
    "decide",
    "decide_for",
    "enabled_autoscaling",
    "with_decision",
]

DEFAULT_SCALE_UP_DELAY = timedelta(seconds=15)
"""Least time between two changes when the second one adds workers (`scaleUpDelay` unset)."""
DEFAULT_SCALE_DOWN_DELAY = timedelta(minutes=2)
"""Least time between two changes when the second one removes workers (`scaleDownDelay` unset)."""


class ScaleReason:
    """`status.autoscaling.reason` values (one CamelCase word each). Part of the API."""

    SCALED_UP = "ScaledUp"
    """The backlog asked for more workers and the replicas were raised."""
    SCALED_DOWN = "ScaledDown"
    """The backlog asked for fewer workers and the replicas were lowered."""
    STEADY = "Steady"
    """The replicas are what the backlog asks for."""
    SCALE_UP_DELAYED = "ScaleUpDelayed"
    """More workers are wanted, but the last change is more recent than `scaleUpDelay`."""
    SCALE_DOWN_DELAYED = "ScaleDownDelayed"
    """Fewer workers are wanted, but the last change is more recent than `scaleDownDelay`."""
    PAUSED = "Paused"
    """`spec.paused`: no workers, whatever the backlog."""
    TEMPORAL_UNREACHABLE = "TemporalUnreachable"
    """The backlog could not be read; the replicas are kept."""
    NOT_CHECKED = "NotChecked"
    """The backlog has not been read yet; the replicas are kept."""


class BacklogObservation(Protocol):
    """What the decision needs from one health read of the task queue (`AgentHealth` has it)."""

    @property
    def reachable(self) -> bool: ...
    @property
    def backlog_count(self) -> int: ...
    @property
    def running(self) -> int: ...


@dataclass(frozen=True)
class ScaleDecision:
    """The replicas to run now and why; `status` is what goes into `status.autoscaling`."""

    previous_replicas: int
    status: AutoscalingStatus

    @property
    def replicas(self) -> int:
        """The worker Deployment's replica count."""
        return self.status.replicas

    @property
    def scaled(self) -> bool:
        """Whether this decision changes the replica count (worth an Event)."""
        return self.status.reason in (ScaleReason.SCALED_UP, ScaleReason.SCALED_DOWN)

    @property
    def event_message(self) -> str:
        """The Event text, e.g. "Scaled workers from 1 to 3: backlog 25, target 10 per worker"."""
        return f"Scaled workers from {self.previous_replicas} to {self.replicas}: {self.status.message}"

    def to_api(self) -> dict[str, Any]:
        """`status.autoscaling` as it is written (camelCase, JSON-ready)."""
        data = self.status.model_dump(by_alias=True, exclude={"last_scale_time"})
        last = self.status.last_scale_time
        # Left out rather than null: a null in a merge patch deletes, and the next comparison with the
        # stored status would see a difference every tick.
        if last is not None:
            data["lastScaleTime"] = timestamp(last)
        return data


def autoscaled_replicas(spec: AutoscalingSpec, previous: AutoscalingStatus | None) -> int:
    """The replicas the autoscaler last set, or `minReplicas` before its first decision."""
    return spec.min_replicas if previous is None else previous.replicas


def decide(
    spec: AutoscalingSpec,
    *,
    paused: bool,
    health: BacklogObservation | None,
    previous: AutoscalingStatus | None,
    now: datetime,
) -> ScaleDecision:
    """The replicas for this health reading (see the module docstring for the rules). Pure."""
    current = autoscaled_replicas(spec, previous)
    last = previous.last_scale_time if previous is not None else None
    desired_before = previous.desired_replicas if previous is not None else current

    def keep(
        reason: str, message: str, *, desired: int = desired_before, replicas: int = current
    ) -> ScaleDecision:
        status = AutoscalingStatus(
            replicas=replicas, desired_replicas=desired, last_scale_time=last, reason=reason, message=message
        )
        return ScaleDecision(current, status)

    if paused:
        return keep(ScaleReason.PAUSED, "spec.paused: no workers", desired=0, replicas=0)
    if health is None:
        return keep(ScaleReason.NOT_CHECKED, "the backlog has not been read yet; replicas kept")
    if not health.reachable:
        return keep(ScaleReason.TEMPORAL_UNREACHABLE, "Temporal could not be read; replicas kept")

    desired = _desired(spec, backlog=health.backlog_count, running=health.running)
    basis = f"backlog {health.backlog_count}, target {spec.target_backlog_per_worker} per worker"
    if health.running:
        basis += f", {health.running} running"
    if desired == current:
        return keep(ScaleReason.STEADY, basis, desired=desired)
    up = desired > current
    delay = _delay(spec, up=up)
    if last is not None and now - last < delay:
        wait = math.ceil((last + delay - now).total_seconds())
        reason = ScaleReason.SCALE_UP_DELAYED if up else ScaleReason.SCALE_DOWN_DELAYED
        direction = "up" if up else "down"
        return keep(reason, f"{basis}; scaling {direction} to {desired} in {wait}s", desired=desired)
    status = AutoscalingStatus(
        replicas=desired,
        desired_replicas=desired,
        last_scale_time=now,
        reason=ScaleReason.SCALED_UP if up else ScaleReason.SCALED_DOWN,
        message=basis,
    )
    return ScaleDecision(current, status)


def enabled_autoscaling(agent: DurableAgent) -> AutoscalingSpec | None:
    """`spec.autoscaling` when it is enabled; None when the agent runs `spec.replicas` workers."""
    autoscaling = agent.spec.autoscaling
    return autoscaling if autoscaling is not None and autoscaling.enabled else None


def decide_for(agent: DurableAgent, health: BacklogObservation | None, now: datetime) -> ScaleDecision | None:
    """`decide` for an agent, over the decision recorded in its status; None without autoscaling."""
    spec = enabled_autoscaling(agent)
    if spec is None:
        return None
    previous = agent.status.autoscaling if agent.status is not None else None
    return decide(spec, paused=agent.spec.paused, health=health, previous=previous, now=now)


def with_decision(agent: DurableAgent, decision: AutoscalingStatus) -> DurableAgent:
    """`agent` as if `decision` were already recorded: what the builders read the replica count from."""
    status = agent.status or DurableAgentStatus()
    return agent.model_copy(update={"status": status.model_copy(update={"autoscaling": decision})})


def _desired(spec: AutoscalingSpec, *, backlog: int, running: int) -> int:
    wanted = math.ceil(backlog / spec.target_backlog_per_worker)
    if running > 0:
        wanted = max(wanted, 1)
    return min(max(wanted, spec.min_replicas), spec.max_replicas)


def _delay(spec: AutoscalingSpec, *, up: bool) -> timedelta:
    if up:
        return spec.scale_up_delay if spec.scale_up_delay is not None else DEFAULT_SCALE_UP_DELAY
    return spec.scale_down_delay if spec.scale_down_delay is not None else DEFAULT_SCALE_DOWN_DELAY
