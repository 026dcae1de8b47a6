"""The DurableAgent's status from what the handlers observed. Pure: no client, no clock (`now` is passed in).

Reconcile and the health timer write different parts of one status, through `agent_status`:

- reconcile records the generation it handled (`observedGeneration`, `taskQueue`) and the rollout;
- the health timer records what it read from Temporal (`workers`, `backlog`, `runs`, `lastFailure`, only
  when the read worked), the AgentRuns awaiting approval (`awaitingApproval`, from the operator's AgentRun
  polls: no Temporal call), the autoscaler's decision and `lastHealthCheck`, with conditions about the
  generation reconcile last handled (not one it has not seen yet).

Both write the replica counts, the scale subresource's selector and the conditions. A status that did
not change is not written again, except that the timer refreshes `lastHealthCheck` every
`refresh_after` seconds so a reader can tell a steady agent from a stopped operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durable_agents_api.resources import DurableAgent
from durable_agents_operator.autoscaling import ScaleDecision, enabled_autoscaling, with_decision
from durable_agents_operator.builders import desired_replicas, selector_string
from durable_agents_operator.conditions import (
    READY,
    AgentObservation,
    DeploymentObservation,
    Reason,
    Transition,
    agent_conditions,
    connection_conditions,
)
from durable_agents_operator.errors import DependencyNotReady, ObjectConflict, OperatorError
from durable_agents_operator.health_status import HEALTH_FIELDS, health_fields
from durable_agents_runtime.health import AgentHealth
from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "STATUS_REFRESH",
    "Problem",
    "StatusUpdate",
    "agent_status",
    "connection_status",
    "failure_status",
    "reconcile_owns_status",
    "refresh_after",
    "status_due",
]

STATUS_REFRESH = 60.0
"""Seconds after which an unchanged observation is written anyway, to move its check time."""


@dataclass(frozen=True)
class Problem:
    """Why a resource cannot work: its spec must change (`blocked_by` None: reason `InvalidSpec`), or
    something it needs is missing, unreachable or someone else's (`blocked_by` is the condition reason)."""

    message: str
    blocked_by: str | None = None

    @classmethod
    def of(cls, exc: OperatorError) -> Problem | None:
        """The problem an error reports in status; None for errors a retry fixes (API or Temporal down)."""
        if exc.retry_after is None:
            return cls(str(exc))
        if isinstance(exc, DependencyNotReady | ObjectConflict):
            return cls(str(exc), blocked_by=exc.reason)
        return None


@dataclass(frozen=True)
class StatusUpdate:
    """The status fields to merge-patch, the condition transitions to announce, and whether to write."""

    status: dict[str, Any]
    transitions: list[Transition]
    due: bool


def agent_status(
    agent: DurableAgent,
    *,
    deployment: Mapping[str, Any] | None,
    health: AgentHealth | None,
    scaling: ScaleDecision | None,
    previous: Mapping[str, Any],
    now: datetime,
    live_within: float,
    refresh_after: float,
    problem: Problem | None = None,
    reconciled: bool = False,
    awaiting_approval: int | None = None,
) -> StatusUpdate:
    """The status to write for this observation, over the `previous` status.

    `reconciled`: written by reconcile, which has just handled the agent's generation; otherwise by the
    health timer. `scaling`: the autoscaler's decision this tick (already applied to the Deployment).
    `awaiting_approval`: the agent's AgentRuns waiting for a decision (written by the health timer).
    """
    if scaling is not None:
        agent = with_decision(agent, scaling.status)
    generation = agent.metadata.generation if reconciled else previous.get("observedGeneration")
    observation = AgentObservation(
        generation=generation if generation is not None else agent.metadata.generation,
        desired_replicas=desired_replicas(agent),
        paused=agent.spec.paused,
        autoscaling=enabled_autoscaling(agent) is not None,
        task_queue=agent.task_queue,
        spec_error=problem.message if problem is not None and problem.blocked_by is None else None,
        blocked=(problem.blocked_by, problem.message) if problem is not None and problem.blocked_by else None,
        deployment=DeploymentObservation.from_manifest(deployment) if deployment is not None else None,
        health=health,
        live_within=live_within,
    )
    update = agent_conditions(observation, previous.get("conditions") or [], now)
    status: dict[str, Any] = {**_replicas(agent, deployment), "conditions": update.to_api()}
    if reconciled:
        status = {"observedGeneration": agent.metadata.generation, "taskQueue": agent.task_queue, **status}
        due = bool(update.transitions) or _differs(previous, status)
        return StatusUpdate(status, update.transitions, due)
    if health is not None and health.reachable:
        reading = health_fields(health)
        status.update({field: reading.get(field) for field in HEALTH_FIELDS})
    if awaiting_approval is not None:
        status["awaitingApproval"] = awaiting_approval
    if scaling is not None:
        status["autoscaling"] = scaling.to_api()
    elif previous.get("autoscaling") is not None:
        status["autoscaling"] = None  # autoscaling was turned off: its last decision no longer applies
    due = bool(update.transitions) or status_due(previous, status, "lastHealthCheck", now, refresh_after)
    if due:
        status["lastHealthCheck"] = timestamp(now)
    return StatusUpdate(status, update.transitions, due)


def failure_status(
    problem: Problem, *, generation: int | None, previous: Mapping[str, Any], now: datetime
) -> StatusUpdate:
    """The status reconcile writes when it cannot proceed: conditions naming the problem.

    Needs no parsed DurableAgent, so it also reports a body that does not validate.
    """
    observation = AgentObservation(
        generation=generation,
        desired_replicas=0,
        spec_error=problem.message if problem.blocked_by is None else None,
        blocked=(problem.blocked_by, problem.message) if problem.blocked_by else None,
    )
    update = agent_conditions(observation, previous.get("conditions") or [], now)
    status = {"observedGeneration": generation, "conditions": update.to_api()}
    return StatusUpdate(status, update.transitions, due=True)


def connection_status(
    problem: Problem | None, *, previous: Mapping[str, Any], now: datetime, refresh_after: float
) -> StatusUpdate:
    """A TemporalConnection's status: `Reachable` (None: the namespace answered; otherwise False with
    the problem's `blocked_by` as reason), and `lastCheckTime` whenever it is written."""
    update = connection_conditions(
        reachable=problem is None,
        error=problem.message if problem is not None else None,
        previous=previous.get("conditions") or [],
        now=now,
        reason=(problem.blocked_by if problem is not None else None) or Reason.TEMPORAL_UNREACHABLE,
    )
    status: dict[str, Any] = {"conditions": update.to_api()}
    due = bool(update.transitions) or status_due(previous, status, "lastCheckTime", now, refresh_after)
    if due:
        status["lastCheckTime"] = timestamp(now)
    return StatusUpdate(status, update.transitions, due)


def reconcile_owns_status(previous: Mapping[str, Any]) -> bool:
    """Whether the health timer must leave the status alone: reconcile reported an object that belongs
    to someone else, and only reconcile can tell when it is gone."""
    return any(
        c.get("type") == READY and c.get("reason") == Reason.OBJECT_CONFLICT
        for c in previous.get("conditions") or []
    )


def refresh_after(health_interval: float) -> float:
    """Seconds after which a timer rewrites an unchanged status: `STATUS_REFRESH`, or three health
    intervals if longer (a check time older than one interval is normal between ticks)."""
    return max(STATUS_REFRESH, 3 * health_interval)


def status_due(
    current: Mapping[str, Any], status: Mapping[str, Any], check_field: str, now: datetime, refresh: float
) -> bool:
    """Whether a timer must write `status`: a field differs from `current`, or `current[check_field]`
    (the last check time) is `refresh` seconds old or more.

    Skipping unchanged writes keeps a steady object at one status write per minute instead of one per
    interval: each write is an etcd write and a watch event for every watcher.
    """
    if _differs(current, status):
        return True
    try:
        last = datetime.fromisoformat(current[check_field])
    except (KeyError, TypeError, ValueError):
        return True
    return (now - last).total_seconds() >= refresh


def _differs(current: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return any(current.get(field) != value for field, value in status.items())


def _replicas(agent: DurableAgent, deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    observed = (deployment or {}).get("status") or {}
    return {
        "replicas": observed.get("replicas", 0),
        "readyReplicas": observed.get("readyReplicas", 0),
        "selector": selector_string(agent.metadata.name or ""),
    }
