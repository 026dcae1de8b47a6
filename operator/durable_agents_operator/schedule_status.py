"""The schedule part of a DurableAgent's status, from one sync of its Temporal Schedules. Pure: `now` is
passed in.

The schedules handler (`handlers/schedules.py`) writes `status.schedules` (one entry per schedule:
next run time, latest run and its phase, paused), `status.nextScheduledRun` (the Next Run column) and
one condition of its own; the other fields and conditions belong to the agent's reconcile and health
timer and are left as they are (conditions of other types are carried over unchanged).

`SchedulesSynced` (normal-true): True when every schedule in the spec exists in Temporal as written
(`Synced`); False when Temporal refused one (`InvalidSpec`, naming the schedule and Temporal's reason)
or could not be reached (`TemporalUnreachable`; the schedules last seen stay in the status, and the
timer tries again every health interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durable_agents_api.resources import Condition
from durable_agents_operator.conditions import Reason, merge_conditions
from durable_agents_runtime.schedules import ScheduleObservation
from durable_agents_runtime.timestamps import timestamp

__all__ = ["SCHEDULES_SYNCED", "ScheduleEvent", "ScheduleProblem", "ScheduleStatusUpdate", "schedules_status"]

SCHEDULES_SYNCED = "SchedulesSynced"
"""Whether the agent's Temporal Schedules match `spec.schedules` (normal-true)."""
SYNCED = "Synced"
"""Every schedule of the spec exists in Temporal as written."""


@dataclass(frozen=True)
class ScheduleProblem:
    """Why the schedules could not be synced: `reason` is `InvalidSpec` or `TemporalUnreachable`."""

    reason: str
    message: str

    @classmethod
    def rejected(cls, message: str) -> ScheduleProblem:
        return cls(Reason.INVALID_SPEC, message)

    @classmethod
    def unreachable(cls, message: str) -> ScheduleProblem:
        return cls(Reason.TEMPORAL_UNREACHABLE, message)


@dataclass(frozen=True)
class ScheduleEvent:
    """An Event announcing that `SchedulesSynced` changed: a Warning when it became False."""

    reason: str
    message: str
    warning: bool


@dataclass(frozen=True)
class ScheduleStatusUpdate:
    """The status fields to merge-patch, whether to write them, and the Event to record (if any)."""

    status: dict[str, Any]
    due: bool
    event: ScheduleEvent | None = None


def schedules_status(
    observed: Sequence[ScheduleObservation] | None,
    *,
    wanted: int,
    problem: ScheduleProblem | None,
    previous: Mapping[str, Any],
    generation: int | None,
    now: datetime,
) -> ScheduleStatusUpdate:
    """The status fields to merge for this sync.

    `observed`: the spec's schedules as Temporal holds them after the sync (None when the sync failed:
    the last seen stay). `wanted`: how many schedules the spec has; with none, the schedule fields and
    the condition are removed.
    """
    status: dict[str, Any] = {}
    if observed is not None:
        entries = [o.to_status() for o in observed]
        upcoming = [o.next_run_time for o in observed if o.next_run_time is not None and not o.paused]
        status["schedules"] = entries or None
        status["nextScheduledRun"] = timestamp(min(upcoming)) if upcoming else None
    conditions = previous.get("conditions") or []
    event = None
    if wanted == 0 and problem is None:
        kept = [c for c in conditions if c.get("type") != SCHEDULES_SYNCED]
        if len(kept) != len(conditions):
            status["conditions"] = kept
    else:
        condition = (
            Condition(type=SCHEDULES_SYNCED, status="True", reason=SYNCED, message="")
            if problem is None
            else Condition(
                type=SCHEDULES_SYNCED, status="False", reason=problem.reason, message=problem.message
            )
        )
        update = merge_conditions(conditions, [condition], now=now, generation=generation)
        mine = next(c for c in update.to_api() if c["type"] == SCHEDULES_SYNCED)
        before = next((c for c in conditions if c.get("type") == SCHEDULES_SYNCED), None)
        # The condition list is written whole, over the other handlers' conditions: only when it changed.
        if before is None or any(before.get(k) != mine.get(k) for k in ("status", "reason", "message")):
            status["conditions"] = update.to_api()
            event = _event(before, mine)
    due = any(previous.get(field) != value for field, value in status.items())
    return ScheduleStatusUpdate(status, due, event)


def _event(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> ScheduleEvent | None:
    """A Warning for a new problem (or a new reason), a Normal event once it is solved; nothing when the
    schedules are synced from the start or only the message changed."""
    if now["status"] == "False":
        if before is not None and (before.get("status"), before.get("reason")) == ("False", now["reason"]):
            return None
        return ScheduleEvent(now["reason"], f"{SCHEDULES_SYNCED} is now False: {now['message']}", True)
    if before is not None and before.get("status") == "False":
        return ScheduleEvent(SYNCED, f"{SCHEDULES_SYNCED} is now True: the schedules match the spec", False)
    return None
