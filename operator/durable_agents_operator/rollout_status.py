"""A versioned agent's rollout as status: `status.versions`, `status.currentVersion`, the `Rollout`
condition, and the Events of what the reconcile did. Pure: the handler passes in what it observed, the
version plan and what it executed.

`Rollout` (a condition of its own, next to Ready/Progressing/Degraded):

- `True`, reason `Complete`: the spec's version is current; older versions may still drain their pinned
  runs (listed in `status.versions`), which is normal and can take as long as those runs do.
- `False`, reason `Progressing`: the spec's version does not take all new runs yet (its workers are
  starting, its replay gate runs, a progressive step's pause, strategy `Manual`, or Temporal is still
  handing a routing change to the task queues); the message says which.
- `False`, reason `Blocked`: the replay gate refused the spec's version; the current version keeps
  serving. The message names the workflow and its first mismatching command. A fix is a new spec.
- `Unknown`, reason `TemporalUnreachable`: the routing could not be read; nothing moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durable_agents_api.resources import Condition
from durable_agents_operator.conditions import merge_conditions
from durable_agents_operator.naming import ANNOTATION_ROLLBACK
from durable_agents_operator.rollback_request import RollbackAnswer
from durable_agents_operator.status import StatusUpdate
from durable_agents_operator.version_planner import ObservedVersion, VersionPlan
from durable_agents_operator.version_retirement import WARN_AFTER, Retirement
from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "ROLLOUT",
    "RolloutEvent",
    "RolloutReason",
    "refused_event",
    "retirement_events",
    "rollback_events",
    "rollout_condition",
    "rollout_events",
    "versions_status",
    "with_rollout",
]

ROLLOUT = "Rollout"
"""Whether the spec's version is the one new runs start on (see the module docstring)."""


class RolloutReason:
    """Reasons of the `Rollout` condition and of the rollout's Events (part of the API)."""

    COMPLETE = "Complete"
    PROGRESSING = "Progressing"
    BLOCKED = "Blocked"
    TEMPORAL_UNREACHABLE = "TemporalUnreachable"
    VERSION_PROMOTED = "VersionPromoted"
    """Event: a version became current (new runs start on it)."""
    VERSION_RAMPING = "VersionRamping"
    """Event: a share of new runs goes to a version."""
    REPLAY_GATE_REFUSED = "ReplayGateRefused"
    """Warning Event: the replay gate refused the spec's version."""
    VERSION_SUNSET = "VersionSunset"
    """Event: a drained version's Deployment was deleted."""
    VERSION_ROLLED_BACK = "VersionRolledBack"
    """Event: the rollback annotation was acted on (the version it names is the target until the spec
    changes)."""
    ROLLBACK_REFUSED = "RollbackRefused"
    """Warning Event: the rollback annotation names no version still around (the message says why)."""
    VERSION_DELETE_FAILED = "VersionDeleteFailed"
    """Warning Event: a sunset version could not be deleted in Temporal for 15 minutes (still retried)."""


_ORDER = {"current": 0, "ramping": 1, "target": 2, "draining": 3, "drained": 4}


@dataclass(frozen=True)
class RolloutEvent:
    reason: str
    message: str
    warning: bool = False


def versions_status(
    plan: VersionPlan, observed: Mapping[str, ObservedVersion], deleted: tuple[str, ...]
) -> list[dict[str, Any]]:
    """`status.versions`: every version with a Deployment after this reconcile, current first."""
    rows: list[dict[str, Any]] = []
    for build_id, role in sorted(plan.roles.items(), key=lambda item: (_ORDER[item[1]], item[0])):
        if build_id in deleted:
            continue
        seen = observed.get(build_id, ObservedVersion(build_id))
        row: dict[str, Any] = {
            "buildId": build_id,
            "role": role,
            "replicas": plan.scale.get(build_id, seen.replicas or 0),
            "readyReplicas": seen.ready_replicas,
            "replayGate": seen.replay_gate,
        }
        if seen.pinned_open_runs is not None:
            row["pinnedOpenRuns"] = seen.pinned_open_runs
        if build_id in plan.drained_since:
            row["drainedSince"] = timestamp(plan.drained_since[build_id])
        rows.append(row)
    return rows


def rollout_condition(
    target: str,
    plan: VersionPlan | None,
    blocked_detail: str | None,
    error: str | None,
    *,
    propagating: bool = False,
) -> Condition:
    """The `Rollout` condition for this reconcile (`plan` None: Temporal could not be read;
    `propagating`: Temporal still hands the last routing change to the task queues)."""
    if plan is None:
        return _condition(
            "Unknown",
            RolloutReason.TEMPORAL_UNREACHABLE,
            f"cannot read the agent's Worker Deployment: {error}; no version moved",
        )
    if plan.blocked is not None:
        message = f"{plan.blocked}: {blocked_detail}" if blocked_detail else plan.blocked
        return _condition(
            "False", RolloutReason.BLOCKED, f"{message}. Fix the spec to roll out a new version"
        )
    if plan.waiting is not None:
        return _condition("False", RolloutReason.PROGRESSING, plan.waiting)
    if propagating or plan.routing is not None:
        return _condition(
            "False",
            RolloutReason.PROGRESSING,
            f"version {target} is current; Temporal is still handing the routing change to the task queues",
        )
    draining = sorted(b for b, role in plan.roles.items() if role == "draining")
    message = f"version {target} is current"
    if draining:
        message += f"; {', '.join(draining)} drain(s) their pinned runs"
    return _condition("True", RolloutReason.COMPLETE, message)


def rollout_events(
    target: str,
    plan: VersionPlan | None,
    *,
    routed: bool,
    deleted: tuple[str, ...],
    previous_current: str | None,
) -> list[RolloutEvent]:
    """Events for what this reconcile did: a promotion or ramp (`routed`: the routing call succeeded)
    and each sunset."""
    events: list[RolloutEvent] = []
    if plan is None:
        return events
    change = plan.routing
    if routed and change is not None and change.build_id is not None:
        if change.set_current:
            was = f" (was {previous_current})" if previous_current else ""
            events.append(
                RolloutEvent(
                    RolloutReason.VERSION_PROMOTED,
                    f"version {change.build_id} is current{was}: new runs start on it ({change.reason})",
                )
            )
        else:
            share = f"{change.ramp_percentage:g}%"
            events.append(
                RolloutEvent(
                    RolloutReason.VERSION_RAMPING,
                    f"{share} of new runs go to version {change.build_id} ({change.reason})",
                )
            )
    for build_id in deleted:
        events.append(
            RolloutEvent(
                RolloutReason.VERSION_SUNSET,
                f"version {build_id} had no open runs for the sunset delay: its Deployment was deleted",
            )
        )
    return events


def rollback_events(
    request: str | None, answer: RollbackAnswer | None, spec_build_id: str, *, had_hold: bool
) -> list[RolloutEvent]:
    """The Event of a rollback annotation acted on in this step (none without one)."""
    if request is None or answer is None:
        return []
    asked = f"{ANNOTATION_ROLLBACK}={request}"
    if answer.refused is not None:
        return [RolloutEvent(RolloutReason.ROLLBACK_REFUSED, f"{asked} not done: {answer.refused}", True)]
    if answer.hold is None:
        ended = "the rollback held so far ends" if had_hold else "there is nothing to roll back"
        message = f"{asked}: version {answer.build_id} is the spec's version; {ended}"
        return [RolloutEvent(RolloutReason.VERSION_ROLLED_BACK, message)]
    message = (
        f"{asked}: version {answer.hold.build_id} becomes current at once and stays so until the spec "
        f"changes; the spec's version {spec_build_id} drains its runs and is sunset"
    )
    return [RolloutEvent(RolloutReason.VERSION_ROLLED_BACK, message)]


def retirement_events(retirement: Retirement) -> list[RolloutEvent]:
    """A Warning Event per sunset version that has failed to be deleted in Temporal for `WARN_AFTER`."""
    minutes = f"{WARN_AFTER.total_seconds() / 60:g} minutes"
    return [
        RolloutEvent(
            RolloutReason.VERSION_DELETE_FAILED,
            f"version {r.build_id} could not be deleted in Temporal for {minutes} ({r.attempts} attempts, "
            f"retried every few minutes): {r.message}. The server caps the versions a Worker Deployment "
            "keeps: check the version has no workers left polling and no open runs "
            "(temporal worker deployment describe-version)",
            True,
        )
        for r in retirement.warn
    ]


def refused_event(condition: Condition) -> RolloutEvent:
    """The Warning Event of a `Rollout` condition that has just become `Blocked`."""
    return RolloutEvent(
        RolloutReason.REPLAY_GATE_REFUSED, f"{condition.message}; the current version keeps serving", True
    )


def with_rollout(
    update: StatusUpdate,
    *,
    previous: Mapping[str, Any],
    fields: Mapping[str, Any],
    condition: Condition,
    now: datetime,
    generation: int | None,
) -> tuple[StatusUpdate, bool]:
    """`update` with the rollout's status fields and the `Rollout` condition merged in, and whether the
    condition has just become `Blocked`."""
    merged = merge_conditions(
        update.status.get("conditions") or [], [condition], now=now, generation=generation
    )
    status = {**update.status, **fields, "conditions": merged.to_api()}
    before = next((c for c in previous.get("conditions") or [] if c.get("type") == ROLLOUT), None)
    newly_blocked = condition.reason == RolloutReason.BLOCKED and (
        before is None or before.get("reason") != RolloutReason.BLOCKED
    )
    changed = (
        any(previous.get(k) != v for k, v in fields.items())
        or before is None
        or (
            (before.get("status"), before.get("reason"), before.get("message"))
            != (condition.status, condition.reason, condition.message)
        )
    )
    return StatusUpdate(status, update.transitions, update.due or changed), newly_blocked


def _condition(status: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
    return Condition(type=ROLLOUT, status=status, reason=reason, message=message)
