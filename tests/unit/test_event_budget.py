"""The operator's Event budget: per-object and operator-wide token buckets, and the dropped-Events line."""

from __future__ import annotations

import pytest

from durable_agents_operator.event_budget import EventBudget


def admitted(budget: EventBudget, uids: list[str], now: float, reason: str = "Degraded") -> int:
    return sum(budget.admit(uid, reason, now) for uid in uids)


@pytest.mark.parametrize(
    ("burst", "refill", "events", "later", "expected"),
    [
        (25, 10.0, 25, 0.0, 25),  # the burst passes
        (25, 10.0, 30, 0.0, 25),  # five over it are dropped
        (25, 10.0, 30, 30.0, 28),  # 30 s later three tokens came back (one per 10 s)
        (3, 1.0, 10, 2.0, 5),  # a small bucket: three, then two after two seconds
    ],
)
def test_one_object_gets_its_burst_then_one_event_per_refill_period(
    burst: int, refill: float, events: int, later: float, expected: int
) -> None:
    budget = EventBudget(per_object_burst=burst, per_object_refill=refill)
    total = admitted(budget, ["run"] * events, now=0.0)
    if later:
        total += admitted(budget, ["run"] * events, now=later)
    assert total == expected


def test_a_mass_failure_is_capped_operator_wide_and_the_refusal_does_not_spend_object_tokens() -> None:
    budget = EventBudget(total_burst=200, total_rate=20.0)
    agents = [f"agent-{i}" for i in range(2000)]
    assert admitted(budget, agents, now=0.0) == 200
    assert admitted(budget, agents, now=1.0) == 20  # one second later: the rate, not the burst
    assert admitted(budget, agents, now=101.0) == 200  # full again after burst / rate seconds
    # Agents refused operator-wide still have their own tokens: each can announce its next change.
    quiet = EventBudget(total_burst=1, total_rate=1.0, per_object_burst=1, per_object_refill=1e9)
    assert quiet.admit("a", "X", 0.0)
    assert not quiet.admit("b", "X", 0.0)
    assert quiet.admit("b", "X", 1.0)  # b's single token (never refilled) was kept for this


def test_dropped_events_are_summed_by_reason_in_one_line_at_most_once_a_minute() -> None:
    budget = EventBudget(per_object_burst=1, summary_every=60.0)
    assert budget.summary(0.0) is None
    for reason in ("Degraded", "Degraded", "TemporalUnreachable", "Degraded"):
        budget.admit("agent", reason, 0.0)
    line = budget.summary(1.0)
    assert line is not None
    assert line.startswith(
        "left out 3 Event(s) in the last 1s over the operator's Event budget "
        "(Degraded x2, TemporalUnreachable x1)"
    )
    budget.admit("agent", "Degraded", 2.0)
    assert budget.summary(30.0) is None  # too soon: kept for the next line
    assert (budget.summary(61.0) or "").startswith(
        "left out 1 Event(s) in the last 59s over the operator's Event budget (Degraded x1)"
    )
    assert budget.summary(200.0) is None  # nothing dropped since


def test_memory_stays_bounded_for_objects_that_went_quiet() -> None:
    budget = EventBudget(per_object_burst=2, per_object_refill=1.0)
    admitted(budget, [f"old-{i}" for i in range(1500)], now=0.0)
    budget.admit("new", "X", 100.0)
    assert len(budget._objects) == 1  # the 1,500 quiet objects' full buckets were forgotten
