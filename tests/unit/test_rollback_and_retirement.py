"""The rollback annotation's answer and the deletion of sunset versions in Temporal: pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_agents_operator.rollback_request import RollbackHold, answer_rollback, hold_from_status
from durable_agents_operator.rollout_status import retirement_events, rollback_events
from durable_agents_operator.version_retirement import (
    KEEP_RETIRED,
    RETRY_MAX,
    WARN_AFTER,
    Retiring,
    deletion_candidates,
    due_for_deletion,
    retirement_after,
    retiring_from_status,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AROUND = {"deployments": {"v1", "v2"}, "registered": {"v1", "v2", "v0"}}


@pytest.mark.parametrize(
    ("request_value", "previous", "hold", "refused"),
    [
        ("previous", "v1", RollbackHold("v1", "v2"), None),
        (" v1 ", None, RollbackHold("v1", "v2"), None),
        ("v2", "v1", None, None),
        ("previous", None, None, "no previous version is known"),
        ("v9", "v1", None, "unknown build id 'v9'"),
        ("v0", "v1", None, "version v0 was already deleted"),
    ],
    ids=["previous", "a build id", "the spec's own version", "no previous", "unknown", "deleted"],
)
def test_a_rollback_request_is_held_or_refused_with_the_reason(
    request_value: str, previous: str | None, hold: RollbackHold | None, refused: str | None
) -> None:
    answer = answer_rollback(request_value, spec_build_id="v2", previous_version=previous, **AROUND)

    assert answer.hold == hold
    assert (answer.refused or "").startswith(refused or "")
    assert (answer.refused is None) is (refused is None)
    [event] = rollback_events(request_value, answer, "v2", had_hold=False)
    assert event.warning is (refused is not None)
    assert event.reason == ("RollbackRefused" if refused else "VersionRolledBack")
    assert f"durable-agents.dev/rollback={request_value}" in event.message


def test_a_version_without_registered_workers_cannot_be_rolled_back_to() -> None:
    answer = answer_rollback(
        "v3", spec_build_id="v2", previous_version=None, deployments={"v3"}, registered={}
    )
    assert answer.hold is None and "unknown to Temporal" in (answer.refused or "")


def test_a_hold_ends_when_the_spec_changes_or_is_reverted_to_the_held_version() -> None:
    status = RollbackHold("v1", "v2").to_status()
    assert hold_from_status(status, "v2") == RollbackHold("v1", "v2")
    assert hold_from_status(status, "v3") is None, "a new spec"
    assert hold_from_status({"buildId": "v1", "specBuildId": "v1"}, "v1") is None, "reverted"
    assert hold_from_status(None, "v2") is None
    assert hold_from_status({"buildId": 3}, "v2") is None


def test_candidates_are_known_versions_without_a_deployment_that_take_no_new_runs() -> None:
    known = {"v0": "drained", "v1": "draining", "v2": "current", "v3": "ramping", "v4": "inactive", "v5": "x"}
    assert deletion_candidates(known, deployments={"v1"}, keep={"v5"}) == ("v0", "v4")


def test_failed_deletions_back_off_warn_once_after_fifteen_minutes_and_success_is_recorded() -> None:
    first = retirement_after(["v0"], {}, {"v0": "has active pollers"}, [], NOW)
    record = first.retiring["v0"]
    assert (record.attempts, record.failing_since, first.warn) == (1, NOW, ())
    assert due_for_deletion(["v0"], first.retiring, NOW + timedelta(seconds=5)) == ()
    assert due_for_deletion(["v0"], first.retiring, NOW + timedelta(seconds=10)) == ("v0",)
    slow = Retiring("v0", NOW, NOW, 9, "x")
    assert slow.next_attempt() == NOW + RETRY_MAX, "the delay is capped"

    late = NOW + WARN_AFTER
    warned = retirement_after(["v0"], first.retiring, {"v0": "still has active pollers"}, [], late)
    [event] = retirement_events(warned)
    assert event.warning and event.reason == "VersionDeleteFailed"
    assert "v0" in event.message and "still has active pollers" in event.message
    again = retirement_after(["v0"], warned.retiring, {"v0": "still"}, [], late + RETRY_MAX)
    assert again.warn == () and again.retiring["v0"].attempts == 3, "one warning only"

    rows = [r.to_status() for r in again.retiring.values()]
    assert retiring_from_status(rows) == again.retiring, "read back from status"
    done = retirement_after(["v0", "v7"], again.retiring, {"v0": None}, ["v8"], late)
    assert done.retired == ["v8", "v0"] and done.retiring == {}
    gone = retirement_after([], again.retiring, {}, [], late)
    assert gone.retiring == {}, "a version no longer a candidate is forgotten"
    many = retirement_after([], {}, {f"v{i}": None for i in range(9)}, [], NOW)
    assert len(many.retired) == KEEP_RETIRED and many.retired[-1] == "v8"
