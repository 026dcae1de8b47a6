"""What Temporal's answers about an agent's task queue mean: the pure half of the health read.

`health.read_health` makes the calls; this module turns their answers into an `AgentHealth`, with no I/O,
no clock (times are passed in) and no client, so every rule here is unit-tested (tests/unit/
test_health_logic.py). What each field means:

- **workers**: workers that sent an SDK worker heartbeat for the queue (`ListWorkers`) within
  `HEARTBEAT_STALE_AFTER`, plus, for identities that send no heartbeats (other SDKs, older images), poller
  identities (workflow or activity pollers, merged by identity) that polled within `live_within`. An
  identity that heartbeats at least every `HEARTBEAT_STALE_AFTER` is judged by its heartbeat only;
  one heartbeating more slowly (the SDK default is 60 s) or that sent only its first heartbeat keeps the
  poller rule. Our worker heartbeats every `WORKER_HEARTBEAT_INTERVAL`, so its death shows within about
  `HEARTBEAT_STALE_AFTER` (9 s from SIGKILL in tests/runtime/test_health.py; 6.9 s in bench/README.md,
  "Health latency"); the poller rule takes 25 to 70 s.
  Temporal keeps a dead worker in the poller list for minutes after it died (measured 190 s after
  SIGKILL), so the list alone cannot tell a live worker from a dead one; the time of each poller's last
  poll can. An idle live worker only shows a new poll when its long poll returns, which
  took up to 57 s on the dev server (60 s is the server default): `live_within` must stay above that, or
  idle workers are counted as gone. The comparison uses this process's clock against the server's, so
  a clock skew adds to the window.
- **backlog**: tasks waiting on the workflow queue plus the activity queue (`approximate_backlog_count`
  summed; the age is that of the oldest task of either). Temporal omits a zero backlog; missing is 0.
  A queue is described only where that can change the answer (`queue_types_to_describe`): with no run
  open there is no activity backlog, and with live heartbeating workers any new task is taken at once,
  so an idle queue with workers is described once every `DESCRIBE_IDLE_EVERY` (for workers that send
  no heartbeats) and an idle queue without workers only on its workflow queue (a session's message, or
  a worker that only polls).
- **runs**: run counts by execution status from visibility; `failed` counts Failed, TimedOut and
  Terminated runs.
- **last failure**: the failed (or timed out, or terminated) run that closed last, with the first
  message of each failure in its cause chain: never stack traces or failure details. While a run is
  still retrying a failing activity, that attempt's failure is shown instead when it is newer ("retrying
  agent__…__call_tool, attempt 3 of 5: …"), so a run that keeps failing is visible before its retries
  end: the newest `RETRYING_SAMPLE` runs that have been running for over `RETRYING_AFTER` are described.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType, TaskQueueType, WorkerStatus
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import PollerInfo  # noqa: F401
from temporalio.api.worker.v1 import WorkerHeartbeat
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeTaskQueueResponse
from temporalio.client import WorkflowExecution, WorkflowExecutionCountAggregationGroup

from durable_agents_runtime.failures import failure_message, shorten

__all__ = [
    "ACTIVITY_QUEUE",
    "DEFAULT_LIVE_WITHIN",
    "DESCRIBE_IDLE_EVERY",
    "FAILED_STATUSES",
    "HEARTBEAT_STALE_AFTER",
    "RETRYING_AFTER",
    "RETRYING_SAMPLE",
    "WORKER_HEARTBEAT_INTERVAL",
    "WORKFLOW_QUEUE",
    "AgentHealth",
    "FailureInfo",
    "backlog_of",
    "carried_failure",
    "close_event_message",
    "close_time",
    "last_polls",
    "live_workers",
    "needs_failure_lookup",
    "newest_failure",
    "queue_types_to_describe",
    "retrying_failure",
    "run_counts",
]


DEFAULT_LIVE_WITHIN = timedelta(seconds=75)
"""A poller counts as a live worker if it polled this recently (above the 60 s long-poll interval)."""

WORKER_HEARTBEAT_INTERVAL = timedelta(seconds=3)
"""How often our worker sends an SDK worker heartbeat (the SDK default, 60 s, would make a death show as
slowly as the poller list does). A heartbeat is one small call per interval per worker process."""

HEARTBEAT_STALE_AFTER = 3 * WORKER_HEARTBEAT_INTERVAL
"""A worker whose last heartbeat is older than this counts as gone: three missed heartbeats, so one late
heartbeat (a busy event loop, a slow server) does not make a live worker flap."""

DESCRIBE_IDLE_EVERY = timedelta(seconds=60)
"""An idle queue with live heartbeating workers is described again after this long."""

RETRYING_SAMPLE = 3
"""Running runs described per queue and read to find an activity that is failing and being retried."""

RETRYING_AFTER = timedelta(seconds=5)
"""Only runs older than this are described: a retry starts after a failed attempt and its backoff."""

FAILED_STATUSES = ("Failed", "TimedOut", "Terminated")
# A timed-out call comes back CANCELLED ("Timeout expired"), not DEADLINE_EXCEEDED.


@dataclass(frozen=True)
class FailureInfo:
    """The most recent failure of an agent: a failed run, or a failed attempt of a run still retrying."""

    workflow_id: str
    message: str
    time: datetime | None
    retrying: bool = False
    """The run is still running: this is its latest failed activity attempt, and it will be retried."""


@dataclass(frozen=True)
class AgentHealth:
    """What Temporal says about one agent's task queue.

    `failed` counts runs that Failed, TimedOut or were Terminated. When Temporal could not be read,
    `reachable` is False, `error` says why, and the counts are 0 (unknown, not observed as zero).
    """

    task_queue: str
    workers: int
    backlog_count: int
    backlog_age_seconds: float
    running: int
    completed: int
    failed: int
    last_failure: FailureInfo | None
    error: str | None = None
    reachable: bool = True
    described_at: datetime | None = None
    """When the queue's workflow queue was last described (pollers, backlog); None: not by this read's
    line of reads."""
    throttled: bool = False
    """Unreachable because Temporal kept answering RESOURCE_EXHAUSTED (its rate limit), not because it is
    down or misconfigured."""
    kept_over: str | None = None
    """Set on an earlier reachable reading given in place of a failed read: what the failed read said."""

    @classmethod
    def unreachable(cls, task_queue: str, error: str, *, throttled: bool = False) -> AgentHealth:
        """The health of a queue Temporal could not be read for."""
        return cls(task_queue, 0, 0, 0.0, 0, 0, 0, None, error=error, reachable=False, throttled=throttled)


WORKFLOW_QUEUE = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
ACTIVITY_QUEUE = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


def queue_types_to_describe(
    previous: AgentHealth | None,
    *,
    running: int,
    heartbeats: Sequence[WorkerHeartbeat] | None,
    now: datetime,
    live_within: timedelta,
    stale_after: timedelta = HEARTBEAT_STALE_AFTER,
    refresh: timedelta = DESCRIBE_IDLE_EVERY,
) -> tuple[TaskQueueType.ValueType, ...]:
    """Which of the queue's types to describe this read (`heartbeats` None: the server gives none).

    Both while runs are open or a backlog was last seen, without heartbeats or a previous good read,
    with a worker the heartbeats do not account for (it polls only, or beats more slowly than
    `stale_after`), and every `refresh`; the workflow queue alone for an idle queue without live
    workers; none for an idle queue whose workers all heartbeat (they take any new task at once).
    """
    both = (WORKFLOW_QUEUE, ACTIVITY_QUEUE)
    if heartbeats is None or previous is None or not previous.reachable or previous.described_at is None:
        return both
    if running or previous.backlog_count:
        return both
    if any(
        not timedelta(0) < b.elapsed_since_last_heartbeat.ToTimedelta() <= stale_after for b in heartbeats
    ):
        return both
    beating = live_workers(
        (), now=now, live_within=live_within, heartbeats=heartbeats, stale_after=stale_after
    )
    if beating < previous.workers:
        return both
    if beating == 0:
        return (WORKFLOW_QUEUE,)
    return both if now - previous.described_at >= refresh else ()


def carried_failure(previous: AgentHealth | None) -> FailureInfo | None:
    """The previous read's failed run (a retrying attempt it showed is read afresh each time)."""
    if previous is None or previous.last_failure is None or previous.last_failure.retrying:
        return None
    return previous.last_failure


def retrying_failure(workflow_id: str, pending: Iterable[PendingActivityInfo]) -> FailureInfo | None:
    """The newest failed attempt among a running run's pending activities, or None."""
    newest: FailureInfo | None = None
    for activity in pending:
        if not activity.HasField("last_failure"):
            continue
        limit = f" of {activity.maximum_attempts}" if activity.maximum_attempts else ""
        failed_at = (
            activity.last_attempt_complete_time.ToDatetime(tzinfo=UTC)
            if activity.HasField("last_attempt_complete_time")
            else None
        )
        failure = FailureInfo(
            workflow_id=workflow_id,
            message=shorten(
                f"retrying {activity.activity_type.name}, attempt {activity.attempt}{limit}: "
                f"{failure_message(activity.last_failure)}"
            ),
            time=failed_at,
            retrying=True,
        )
        newest = newest_failure(newest, failure)
    return newest


def newest_failure(first: FailureInfo | None, second: FailureInfo | None) -> FailureInfo | None:
    """The more recent of two failures (either may be None; one without a time counts as oldest)."""
    if first is None or second is None:
        return first or second
    return second if _failure_time(second) > _failure_time(first) else first


def _failure_time(failure: FailureInfo) -> datetime:
    return failure.time or datetime.min.replace(tzinfo=UTC)


def last_polls(described: Iterable[DescribeTaskQueueResponse]) -> dict[str, datetime]:
    """The latest poll time of each poller identity, merged over the queue types described."""
    latest: dict[str, datetime] = {}
    for response in described:
        for poller in response.pollers:
            polled = poller.last_access_time.ToDatetime(tzinfo=UTC)
            if poller.identity not in latest or polled > latest[poller.identity]:
                latest[poller.identity] = polled
    return latest


def live_workers(
    described: Iterable[DescribeTaskQueueResponse],
    *,
    now: datetime,
    live_within: timedelta,
    heartbeats: Iterable[WorkerHeartbeat] = (),
    stale_after: timedelta = HEARTBEAT_STALE_AFTER,
) -> int:
    """How many worker identities are live at `now` (a timezone-aware time).

    An identity whose newest heartbeat reports shutdown is not live. One that heartbeats at least every
    `stale_after` (its `elapsed_since_last_heartbeat`) is judged by its heartbeat only: live when the
    newest heartbeat is at most `stale_after` old, whatever its last poll. Any other poller identity,
    including one that heartbeats more slowly (the SDK default is 60 s) or has sent only its first
    heartbeat, is live when it polled within `live_within`.
    """
    beats: dict[str, WorkerHeartbeat] = {}
    for beat in heartbeats:
        seen = beats.get(beat.worker_identity)
        if seen is None or _beat_time(beat) > _beat_time(seen):
            beats[beat.worker_identity] = beat
    polls = last_polls(described)
    live = 0
    for identity in beats.keys() | polls.keys():
        beat = beats.get(identity)
        if beat is not None:
            if beat.status == WorkerStatus.WORKER_STATUS_SHUTDOWN:
                continue
            cadence = beat.elapsed_since_last_heartbeat.ToTimedelta()
            if timedelta(0) < cadence <= stale_after:
                live += now - _beat_time(beat) <= stale_after
                continue
        polled = polls.get(identity)
        if polled is not None and now - polled <= live_within:
            live += 1
    return live


def _beat_time(beat: WorkerHeartbeat) -> datetime:
    return beat.heartbeat_time.ToDatetime(tzinfo=UTC)


def backlog_of(described: Iterable[DescribeTaskQueueResponse]) -> tuple[int, float]:
    """Backlog `(count, age in seconds)`: counts summed over the queue types, age of the oldest task."""
    count, age = 0, 0.0
    for response in described:
        if response.HasField("stats"):
            count += response.stats.approximate_backlog_count
            age = max(age, response.stats.approximate_backlog_age.ToTimedelta().total_seconds())
    return count, age


def run_counts(groups: Iterable[WorkflowExecutionCountAggregationGroup]) -> tuple[int, int, int]:
    """`(running, completed, failed)` from a `GROUP BY ExecutionStatus` count; failed includes TimedOut
    and Terminated; Canceled and ContinuedAsNew runs are in none of them."""
    by_status: dict[str, int] = {}
    for group in groups:
        status = str(group.group_values[0]) if group.group_values else ""
        by_status[status] = by_status.get(status, 0) + group.count
    failed = sum(by_status.get(status, 0) for status in FAILED_STATUSES)
    return by_status.get("Running", 0), by_status.get("Completed", 0), failed


def needs_failure_lookup(previous: AgentHealth | None, failed: int) -> bool:
    """Whether the last failure must be looked up: there are failures, and the previous read does not
    already hold the newest one (no previous read, it failed, found none or only a retrying attempt, or
    the failed count changed).

    A failure that replaces one removed by retention between two reads leaves the count unchanged and is
    picked up on the next change.
    """
    if failed == 0:
        return False
    return (
        previous is None
        or not previous.reachable
        or previous.last_failure is None
        or previous.last_failure.retrying
        or previous.failed != failed
    )


def close_event_message(event: HistoryEvent) -> str:
    """A one-line reason from a workflow's close event."""
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        return failure_message(event.workflow_execution_failed_event_attributes.failure)
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        return shorten(f"terminated: {reason}" if reason else "terminated")
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return "timed out: the run exceeded its execution or run timeout"
    return ""


def close_time(execution: WorkflowExecution) -> datetime:
    return execution.close_time or datetime.min.replace(tzinfo=UTC)
