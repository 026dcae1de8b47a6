"""The fault matrix's counting catches what it claims to: a completed activity executed again.

Fabricated logs and histories, no processes: if these fail, the matrix's zero duplicates means nothing.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from fault_tools import Execution
from faultmatrix import History, executed_again

pytestmark = [pytest.mark.reliability]


def starts(*attempts: tuple[str, int]) -> dict[tuple[str, str], list[Execution]]:
    by_activity: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for activity_id, attempt in attempts:
        by_activity[("wf", activity_id)].append(
            Execution("start", "tool", "wf", activity_id, attempt, 1, 0.0)
        )
    return by_activity


def test_an_attempt_after_the_completed_one_counts_as_a_duplicate() -> None:
    history = History(completed_attempt={"1": 1, "2": 2})
    assert executed_again("wf", history, starts(("1", 1), ("2", 1), ("2", 2))) == []
    found = executed_again("wf", history, starts(("1", 1), ("1", 2), ("2", 1), ("2", 2)))
    assert found == ["wf/1: attempts [1, 2]"]


def test_the_same_attempt_executed_twice_counts_as_a_duplicate() -> None:
    history = History(completed_attempt={"1": 1})
    assert executed_again("wf", history, starts(("1", 1), ("1", 1))) == ["wf/1: attempts [1, 1]"]


def test_in_flight_attempts_retried_before_completion_are_not_duplicates() -> None:
    # Attempts 1 and 2 died with their workers; attempt 3 completed: at-least-once, as designed.
    history = History(completed_attempt={"7": 3})
    assert executed_again("wf", history, starts(("7", 1), ("7", 2), ("7", 3))) == []
