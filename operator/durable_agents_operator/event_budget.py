"""How many Events the operator may record: a mass failure must not flood the apiserver.

Two token buckets decide, the way the Kubernetes event recorder's spam filter does for one source:

- per object (by uid): `PER_OBJECT_BURST` Events at once, then one every `PER_OBJECT_REFILL` seconds —
  enough for a run that asks for twenty approvals at once, not for a condition that flaps every tick;
- for the whole operator: `TOTAL_BURST` at once, then `TOTAL_RATE` per second — 2,000 agents losing
  Temporal at the same moment cost the apiserver at most that rate, whatever each object's bucket says.

An Event over budget is dropped, not queued: the status the handler wrote says the same (Events announce,
status holds). Dropped Events are counted by reason; `summary` returns one log line for them at most
every `SUMMARY_EVERY` seconds, so what was left out is visible in the operator's log. It is asked on
every Event and on every health tick, so a line comes within a minute and a health interval.

Pure: the caller passes the monotonic time.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

__all__ = [
    "PER_OBJECT_BURST",
    "PER_OBJECT_REFILL",
    "SUMMARY_EVERY",
    "TOTAL_BURST",
    "TOTAL_RATE",
    "EventBudget",
]

PER_OBJECT_BURST = 25
PER_OBJECT_REFILL = 10.0
"""Seconds per Event once an object's burst is spent."""
TOTAL_BURST = 200
TOTAL_RATE = 20.0
"""Events per second for the whole operator once its burst is spent."""
SUMMARY_EVERY = 60.0


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float, *, capacity: float, per_second: float) -> bool:
        self.tokens = min(capacity, self.tokens + (now - self.at) * per_second)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class EventBudget:
    """Admits or drops each Event (`admit`), and says what it dropped (`summary`)."""

    per_object_burst: int = PER_OBJECT_BURST
    per_object_refill: float = PER_OBJECT_REFILL
    total_burst: int = TOTAL_BURST
    total_rate: float = TOTAL_RATE
    summary_every: float = SUMMARY_EVERY
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    _objects: dict[str, _Bucket] = field(default_factory=dict)
    _total: _Bucket | None = None
    _summarised_at: float | None = None
    _first_drop_at: float | None = None
    _pruned_at: float = float("-inf")

    def admit(self, uid: str, reason: str, now: float) -> bool:
        """Whether an Event for the object `uid` may be recorded at `now`; counts it by `reason` if not."""
        if self._total is None:
            self._total = _Bucket(float(self.total_burst), now)
        self._forget_idle(now)
        bucket = self._objects.setdefault(uid, _Bucket(float(self.per_object_burst), now))
        per_object = bucket.take(now, capacity=self.per_object_burst, per_second=1.0 / self.per_object_refill)
        if per_object and self._total.take(now, capacity=self.total_burst, per_second=self.total_rate):
            return True
        if per_object:
            bucket.tokens += 1.0  # the operator-wide bucket refused it: the object's token is not spent
        self.dropped[reason] += 1
        if self._first_drop_at is None:
            self._first_drop_at = now
        return False

    def summary(self, now: float) -> str | None:
        """One line naming the Events dropped since the last line, at most every `summary_every` seconds
        (None when nothing was dropped, or the last line is too recent)."""
        if not self.dropped:
            return None
        if self._summarised_at is not None and now - self._summarised_at < self.summary_every:
            return None
        since = now - (self._first_drop_at if self._first_drop_at is not None else now)
        self._summarised_at, self._first_drop_at = now, None
        total = sum(self.dropped.values())
        reasons = ", ".join(f"{reason} x{count}" for reason, count in sorted(self.dropped.items()))
        self.dropped.clear()
        return (
            f"left out {total} Event(s) in the last {since:.0f}s over the operator's Event budget "
            f"({reasons}); the objects' status "
            f"says the same (budget: {self.per_object_burst} per object then one per "
            f"{self.per_object_refill:g}s, {self.total_burst} in all then {self.total_rate:g}/s)"
        )

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets of objects idle long enough to be full again (bounded memory for many objects
        over a long life); looked at with 1,024 objects or more, at most once per refill period."""
        if len(self._objects) < 1024 or now - self._pruned_at < self.per_object_refill:
            return
        self._pruned_at = now
        full_after = self.per_object_burst * self.per_object_refill
        self._objects = {uid: b for uid, b in self._objects.items() if now - b.at < full_after}
