"""Timestamps: the one formatter every status field, Event and `status --json` uses, and the wall clock.

Only the entrypoint reads the clock (`utcnow`); pure code gets `now` passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["timestamp", "utcnow"]


def timestamp(value: datetime) -> str:
    """A Kubernetes timestamp: RFC 3339 in UTC, whole seconds, `Z` (what metav1.Time keeps)."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def utcnow() -> datetime:
    """The wall clock, in UTC, at second precision (what Kubernetes timestamps keep)."""
    return datetime.now(UTC).replace(microsecond=0)
