"""Which retired versions to delete in Temporal now, and what their failures mean. Pure.

The server caps the versions a Worker Deployment keeps, so a version the operator has sunset (drained,
its Deployment deleted after the sunset delay) is deleted in Temporal too. A candidate is a version
Temporal knows that has no Deployment left and is neither current, ramping nor the target; it is deleted
once no run is open on it.
The server refuses while it still sees the version's pollers (a stopped worker stays listed for a few
minutes), so a refusal is retried with a growing delay (`RETRY_FIRST` doubling up to `RETRY_MAX`); a
version failing for `WARN_AFTER` gets one Warning Event (`VersionDeleteFailed`) with the server's message,
and keeps being retried every `RETRY_MAX`. `status.retiringVersions` shows the failures;
`status.retiredVersions` the last `KEEP_RETIRED` build ids deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "KEEP_RETIRED",
    "RETRY_FIRST",
    "RETRY_MAX",
    "WARN_AFTER",
    "Retirement",
    "Retiring",
    "deletion_candidates",
    "due_for_deletion",
    "retirement_after",
    "retiring_from_status",
]

RETRY_FIRST = timedelta(seconds=10)
RETRY_MAX = timedelta(minutes=5)
WARN_AFTER = timedelta(minutes=15)
KEEP_RETIRED = 5
MAX_PER_STEP = 3
"""Deletions tried in one reconcile step, so a backlog of versions cannot stretch a step."""


@dataclass(frozen=True)
class Retiring:
    """A version whose deletion in Temporal failed so far."""

    build_id: str
    failing_since: datetime
    last_attempt: datetime
    attempts: int
    message: str
    warned: bool = False

    def to_status(self) -> dict[str, Any]:
        return {
            "buildId": self.build_id,
            "failingSince": timestamp(self.failing_since),
            "lastAttempt": timestamp(self.last_attempt),
            "attempts": self.attempts,
            "message": self.message,
            "warned": self.warned,
        }

    def next_attempt(self) -> datetime:
        delay = min(RETRY_FIRST * 2 ** max(self.attempts - 1, 0), RETRY_MAX)
        return self.last_attempt + delay


def retiring_from_status(rows: Any) -> dict[str, Retiring]:
    """`status.retiringVersions` as read back (rows that do not parse are dropped: they are retried)."""
    found: dict[str, Retiring] = {}
    for row in rows if isinstance(rows, list) else []:
        try:
            retiring = Retiring(
                build_id=str(row["buildId"]),
                failing_since=datetime.fromisoformat(row["failingSince"]),
                last_attempt=datetime.fromisoformat(row["lastAttempt"]),
                attempts=int(row["attempts"]),
                message=str(row.get("message") or ""),
                warned=bool(row.get("warned")),
            )
        except (KeyError, TypeError, ValueError):
            continue
        found[retiring.build_id] = retiring
    return found


def deletion_candidates(
    known: Mapping[str, str], deployments: Collection[str], keep: Collection[str]
) -> tuple[str, ...]:
    """Versions to delete in Temporal: `known` (build id → the server's status word) without a Deployment,
    neither current nor ramping, and not in `keep` (whether runs are still open is read when tried)."""
    return tuple(
        sorted(
            build_id
            for build_id, status in known.items()
            if build_id not in deployments and build_id not in keep and status not in ("current", "ramping")
        )
    )


def due_for_deletion(
    candidates: Sequence[str], retiring: Mapping[str, Retiring], now: datetime
) -> tuple[str, ...]:
    """The candidates to try now: never tried, or their retry delay is over (at most `MAX_PER_STEP`)."""
    due = [b for b in candidates if b not in retiring or retiring[b].next_attempt() <= now]
    return tuple(due[:MAX_PER_STEP])


@dataclass(frozen=True)
class Retirement:
    """The deletions in Temporal after one step: for the status and the Events."""

    retired: list[str] = field(default_factory=list[str])
    """`status.retiredVersions`."""
    retiring: dict[str, Retiring] = field(default_factory=dict[str, Retiring])
    """`status.retiringVersions`, by build id."""
    warn: tuple[Retiring, ...] = ()
    """Versions failing for `WARN_AFTER` that get their Warning Event now."""


def retirement_after(
    candidates: Sequence[str],
    retiring: Mapping[str, Retiring],
    outcomes: Mapping[str, str | None],
    retired_before: Sequence[str],
    now: datetime,
) -> Retirement:
    """The state after the attempts `outcomes` (build id → None when deleted, else the server's message).
    Failures of versions that are no longer candidates (deleted by someone else) are forgotten."""
    deleted = [b for b, message in outcomes.items() if message is None]
    still: dict[str, Retiring] = {}
    warn: list[Retiring] = []
    for build_id in candidates:
        message = outcomes.get(build_id)
        if build_id in deleted:
            continue
        if build_id not in outcomes:
            if build_id in retiring:
                still[build_id] = retiring[build_id]
            continue
        record, warned = _failed(retiring.get(build_id), build_id, message or "", now)
        still[build_id] = record
        if warned:
            warn.append(record)
    kept = [b for b in retired_before if b not in deleted]
    return Retirement([*kept, *deleted][-KEEP_RETIRED:], still, tuple(warn))


def _failed(previous: Retiring | None, build_id: str, message: str, now: datetime) -> tuple[Retiring, bool]:
    """The record after a failed attempt, and whether to warn now (failing for `WARN_AFTER`, once)."""
    if previous is None:
        record = Retiring(build_id, now, now, 1, message)
    else:
        record = replace(previous, last_attempt=now, attempts=previous.attempts + 1, message=message)
    warn = not record.warned and now - record.failing_since >= WARN_AFTER
    return (replace(record, warned=True) if warn else record), warn
