"""The pure parts of the health read: poller liveness, backlog, run counts, the last failure. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import ActivityType
from temporalio.api.enums.v1 import EventType, WorkerStatus
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    HistoryEvent,
    WorkflowExecutionFailedEventAttributes,
    WorkflowExecutionTerminatedEventAttributes,
)
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueueStats
from temporalio.api.worker.v1 import WorkerHeartbeat
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeTaskQueueResponse
from temporalio.client import WorkflowExecutionCountAggregationGroup

from durable_agents_runtime.health_signals import (
    ACTIVITY_QUEUE,
    HEARTBEAT_STALE_AFTER,
    WORKFLOW_QUEUE,
    AgentHealth,
    FailureInfo,
    backlog_of,
    close_event_message,
    last_polls,
    live_workers,
    needs_failure_lookup,
    newest_failure,
    queue_types_to_describe,
    retrying_failure,
    run_counts,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def _at(seconds_ago: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(NOW - timedelta(seconds=seconds_ago))
    return stamp


def _described(*pollers: tuple[str, float], backlog: int | None = None, age: float = 0.0):
    response = DescribeTaskQueueResponse(
        pollers=[PollerInfo(identity=identity, last_access_time=_at(ago)) for identity, ago in pollers]
    )
    if backlog is not None:
        duration = Duration()
        duration.FromTimedelta(timedelta(seconds=age))
        response.stats.CopyFrom(
            TaskQueueStats(approximate_backlog_count=backlog, approximate_backlog_age=duration)
        )
    return response


def _beat(
    identity: str, seconds_ago: float, status: int = WorkerStatus.WORKER_STATUS_RUNNING, every: float = 3.0
):
    beat = WorkerHeartbeat(worker_identity=identity, heartbeat_time=_at(seconds_ago), status=status)
    beat.elapsed_since_last_heartbeat.FromTimedelta(timedelta(seconds=every))
    return beat


def _health(**changes) -> AgentHealth:
    fields = dict(
        task_queue="ns.agent",
        workers=1,
        backlog_count=0,
        backlog_age_seconds=0.0,
        running=0,
        completed=0,
        failed=0,
        last_failure=None,
    )
    fields.update(changes)
    return AgentHealth(**fields)


def test_pollers_that_stopped_polling_are_not_live_workers():
    described = [_described(("live", 2.0), ("dead", 190.0))]

    assert live_workers(described, now=NOW, live_within=timedelta(seconds=75)) == 1
    assert live_workers(described, now=NOW, live_within=timedelta(seconds=300)) == 2


def test_a_worker_polling_workflow_and_activity_queues_counts_once_by_its_newest_poll():
    workflow_queue = _described(("worker-a", 80.0), ("worker-b", 5.0))
    activity_queue = _described(("worker-a", 3.0))

    assert last_polls([workflow_queue, activity_queue]) == {
        "worker-a": NOW - timedelta(seconds=3),
        "worker-b": NOW - timedelta(seconds=5),
    }
    assert live_workers([workflow_queue, activity_queue], now=NOW, live_within=timedelta(seconds=30)) == 2


def test_a_poll_exactly_at_the_window_edge_is_live():
    assert live_workers([_described(("w", 30.0))], now=NOW, live_within=timedelta(seconds=30)) == 1


def test_no_pollers_means_no_workers():
    assert live_workers([_described(), _described()], now=NOW, live_within=timedelta(seconds=30)) == 0


def test_backlog_sums_counts_of_both_queue_types_and_keeps_the_oldest_age():
    workflow_queue = _described(backlog=3, age=12.5)
    activity_queue = _described(backlog=2, age=40.0)

    assert backlog_of([workflow_queue, activity_queue]) == (5, 40.0)


def test_a_backlog_left_out_of_the_response_is_zero():
    assert backlog_of([_described(), DescribeTaskQueueResponse(stats=TaskQueueStats())]) == (0, 0.0)


def test_failed_runs_include_timed_out_and_terminated_runs():
    groups = [
        WorkflowExecutionCountAggregationGroup(count=4, group_values=["Running"]),
        WorkflowExecutionCountAggregationGroup(count=7, group_values=["Completed"]),
        WorkflowExecutionCountAggregationGroup(count=2, group_values=["Failed"]),
        WorkflowExecutionCountAggregationGroup(count=1, group_values=["TimedOut"]),
        WorkflowExecutionCountAggregationGroup(count=1, group_values=["Terminated"]),
        WorkflowExecutionCountAggregationGroup(count=5, group_values=["Canceled"]),
        WorkflowExecutionCountAggregationGroup(count=3, group_values=["ContinuedAsNew"]),
    ]

    assert run_counts(groups) == (4, 7, 4)


def test_no_runs_count_as_zero():
    assert run_counts([]) == (0, 0, 0)


def test_close_event_of_a_failed_run_gives_its_failure_message():
    event = HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        workflow_execution_failed_event_attributes=WorkflowExecutionFailedEventAttributes(
            failure=Failure(message="boom")
        ),
    )

    assert close_event_message(event) == "boom"


def test_close_event_of_a_terminated_run_gives_the_reason():
    event = HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        workflow_execution_terminated_event_attributes=WorkflowExecutionTerminatedEventAttributes(
            reason="stuck"
        ),
    )

    assert close_event_message(event) == "terminated: stuck"


def test_close_event_of_a_timed_out_run_says_so():
    event = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)

    assert close_event_message(event).startswith("timed out")


def test_failure_lookup_happens_only_when_the_failed_count_changed():
    known = FailureInfo(workflow_id="run-1", message="boom", time=NOW)

    assert not needs_failure_lookup(None, failed=0)
    assert needs_failure_lookup(None, failed=1)
    assert not needs_failure_lookup(_health(failed=1, last_failure=known), failed=1)
    assert needs_failure_lookup(_health(failed=1, last_failure=known), failed=2)


def test_failure_lookup_is_repeated_when_the_previous_read_could_not_tell():
    assert needs_failure_lookup(AgentHealth.unreachable("ns.agent", "down"), failed=1)
    assert needs_failure_lookup(_health(failed=1, last_failure=None), failed=1)


def test_unreachable_health_carries_the_error_and_no_counts():
    health = AgentHealth.unreachable("ns.agent", "cannot read Temporal (UNAVAILABLE)")

    assert not health.reachable
    assert health.error == "cannot read Temporal (UNAVAILABLE)"
    assert (health.workers, health.backlog_count, health.running, health.failed) == (0, 0, 0, 0)


def test_a_worker_with_a_recent_heartbeat_is_live_whatever_its_last_poll():
    stale = HEARTBEAT_STALE_AFTER.total_seconds()
    described = [_described(("a", 200.0), ("b", 1.0))]
    heartbeats = [_beat("a", stale - 1), _beat("b", stale + 1)]

    # "a" is live by its heartbeat despite an old poll; "b" stopped heartbeating, so its recent poll
    # does not count.
    assert live_workers(described, now=NOW, live_within=timedelta(seconds=75), heartbeats=heartbeats) == 1


def test_the_newest_heartbeat_of_an_identity_decides():
    stale = HEARTBEAT_STALE_AFTER.total_seconds()
    heartbeats = [_beat("a", stale + 5), _beat("a", 1.0)]
    assert live_workers([], now=NOW, live_within=timedelta(seconds=75), heartbeats=heartbeats) == 1


def test_a_worker_that_reported_shutdown_is_not_live():
    heartbeats = [_beat("a", 1.0, WorkerStatus.WORKER_STATUS_SHUTDOWN)]
    described = [_described(("a", 1.0))]
    assert live_workers(described, now=NOW, live_within=timedelta(seconds=75), heartbeats=heartbeats) == 0


def test_slow_or_first_heartbeats_leave_the_decision_to_the_last_poll():
    stale = HEARTBEAT_STALE_AFTER.total_seconds()
    described = [_described(("slow", 30.0), ("first", 30.0), ("slow-gone", 80.0), ("first-gone", 80.0))]
    heartbeats = [
        _beat("slow", 40.0, every=60.0),
        _beat("first", stale + 1, every=0.0),
        _beat("slow-gone", 1.0, every=60.0),
        _beat("first-gone", 1.0, every=0.0),
    ]
    assert live_workers(described, now=NOW, live_within=timedelta(seconds=75), heartbeats=heartbeats) == 2


def test_pollers_without_heartbeats_fall_back_to_live_within():
    described = [_described(("old-sdk", 50.0), ("gone", 80.0), ("ours", 70.0))]
    heartbeats = [_beat("ours", 2.0)]
    assert live_workers(described, now=NOW, live_within=timedelta(seconds=75), heartbeats=heartbeats) == 2


def _pending(name: str, attempt: int, seconds_ago: float | None, message: str | None) -> PendingActivityInfo:
    info = PendingActivityInfo(activity_type=ActivityType(name=name), attempt=attempt, maximum_attempts=5)
    if message is not None:
        info.last_failure.CopyFrom(Failure(message=message, cause=Failure(message="RuntimeError: boom")))
    if seconds_ago is not None:
        info.last_attempt_complete_time.CopyFrom(_at(seconds_ago))
    return info


def test_a_running_run_retrying_an_activity_shows_its_newest_failed_attempt() -> None:
    pending = [
        _pending("agent__a__model_request", 1, None, None),
        _pending("agent__a__toolset__t__call_tool", 3, 2, "Activity task failed"),
        _pending("agent__a__toolset__u__call_tool", 2, 9, "older"),
    ]

    failure = retrying_failure("run-1", pending)

    assert failure is not None and failure.retrying and failure.workflow_id == "run-1"
    assert failure.message == (
        "retrying agent__a__toolset__t__call_tool, attempt 3 of 5: Activity task failed: RuntimeError: boom"
    )


def test_a_run_with_no_failed_attempt_shows_no_retrying_failure() -> None:
    assert retrying_failure("run-1", [_pending("agent__a__model_request", 1, None, None)]) is None


def test_the_newer_of_a_failed_run_and_a_retrying_attempt_is_shown() -> None:
    old = FailureInfo("run-old", "failed", NOW - timedelta(minutes=5))
    new = FailureInfo("run-new", "retrying x", NOW - timedelta(seconds=1), retrying=True)

    assert newest_failure(old, new) is new
    assert newest_failure(new, old) is new
    assert newest_failure(None, old) is old
    assert newest_failure(old, None) is old


def test_a_previous_read_that_only_saw_a_retrying_attempt_looks_the_failed_run_up_again() -> None:
    previous = AgentHealth("q", 1, 0, 0.0, 1, 0, 1, FailureInfo("run-1", "retrying x", NOW, retrying=True))

    assert needs_failure_lookup(previous, failed=1)


# --- which queue types a read describes (the call budget of an idle agent) ------------------------------

BOTH = (WORKFLOW_QUEUE, ACTIVITY_QUEUE)


def _read(seconds_ago: float = 10, **changes) -> AgentHealth:
    """A previous good read that described the queue `seconds_ago`."""
    return _health(described_at=NOW - timedelta(seconds=seconds_ago), **changes)


@pytest.mark.parametrize(
    ("case", "previous", "running", "beats", "expected"),
    [
        ("no previous read", None, 0, [_beat("w", 1)], BOTH),
        ("the last read failed", AgentHealth.unreachable("q", "down"), 0, [_beat("w", 1)], BOTH),
        ("never described", _health(described_at=None), 0, [_beat("w", 1)], BOTH),
        ("the server gives no heartbeats", _read(), 0, None, BOTH),
        ("runs open", _read(), 2, [_beat("w", 1)], BOTH),
        ("a backlog last time", _read(backlog_count=3), 0, [_beat("w", 1)], BOTH),
        ("a slow heartbeat (SDK default)", _read(), 0, [_beat("w", 1, every=60)], BOTH),
        ("a first heartbeat", _read(), 0, [_beat("w", 1, every=0)], BOTH),
        ("a worker seen by polls only", _read(workers=2), 0, [_beat("w", 1)], BOTH),
        ("idle, workers heartbeat", _read(), 0, [_beat("w", 1)], ()),
        ("idle, two heartbeat", _read(workers=2), 0, [_beat("a", 1), _beat("b", 2)], ()),
        ("idle, a minute since", _read(60), 0, [_beat("w", 1)], BOTH),
        ("idle, no live worker", _read(workers=0), 0, [], (WORKFLOW_QUEUE,)),
        ("idle, its worker stopped", _read(), 0, [_beat("w", 30)], BOTH),
    ],
)
def test_a_queue_is_described_only_where_that_can_change_the_answer(
    case: str, previous: AgentHealth | None, running: int, beats: list[WorkerHeartbeat] | None, expected: Any
) -> None:
    kinds = queue_types_to_describe(
        previous, running=running, heartbeats=beats, now=NOW, live_within=timedelta(seconds=75)
    )
    assert kinds == expected, case
