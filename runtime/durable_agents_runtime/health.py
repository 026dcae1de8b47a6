"""Workflow health of agents' task queues, read from Temporal.

`durable-agents status` and the operator's health timer both call `read_health`, so the CLI shows exactly
what the operator writes into a DurableAgent's status.

What is read for each task queue:

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
- **runs**: run counts by execution status from visibility; `failed` counts Failed, TimedOut and
  Terminated runs.
- **last failure**: the failed (or timed out, or terminated) run that closed last, with the first
  message of each failure in its cause chain: never stack traces or failure details. While a run is
  still retrying a failing activity, that attempt's failure is shown instead when it is newer ("retrying
  agent__…__call_tool, attempt 3 of 5: …"), so a run that keeps failing is visible before its retries
  end: the newest `RETRYING_SAMPLE` runs that have been running for over `RETRYING_AFTER` are described.

Calls per read, for N task queues on one connection (all through one semaphore, `concurrency` at a time):

    calls = 2N DescribeTaskQueue + N CountWorkflowExecutions + ceil(N / 25) * P ListWorkers
            + F * (1 ListWorkflowExecutions + at most 1 GetWorkflowExecutionHistory)
            + R * (1 ListWorkflowExecutions + at most RETRYING_SAMPLE DescribeWorkflowExecution)

R is the number of queues with running runs (the retrying check; see "last failure").

F is the number of queues whose failed count differs from `previous` (every queue with failures when
there is no previous read); the history call is skipped when the newest failure is a timeout. ListWorkers
reads the heartbeats of up to 25 queues per call (`TaskQueue='a' OR TaskQueue='b' ...`; the dev server
answers `TaskQueue IN (...)` with nothing), P pages each (1 unless a page of 1000 workers fills). A steady
state costs 3N + ceil(N / 25) calls; the worst case 5N + ceil(N / 25). A server that rejects ListWorkers
(other than by being unreachable) leaves only the poller rule. The run counts cannot be merged into one
query: the dev server's SQL visibility rejects `GROUP BY TaskQueue` and allows only one GROUP BY field.
Describing both queue types in one call needs the deprecated ENHANCED mode, hence two calls. A
visibility query cannot match a task queue name containing `"` or `\\` on the dev server; such a queue
reports zero runs.

Temporal failures never raise: the affected queues come back with `reachable=False` and a short `error`.
Each call is bounded by `rpc_timeout`; after a connection-level failure (unreachable, timed out) the
remaining calls of the read are not made, so a hung server costs one timeout, not one per queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import EventType, HistoryEventFilterType, TaskQueueType, WorkerStatus
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.worker.v1 import WorkerHeartbeat
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeTaskQueueResponse,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
    ListWorkersRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionCountAggregationGroup,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

__all__ = [
    "DEFAULT_LIVE_WITHIN",
    "HEARTBEAT_STALE_AFTER",
    "MAX_MESSAGE_CHARS",
    "RETRYING_AFTER",
    "RETRYING_SAMPLE",
    "WORKER_HEARTBEAT_INTERVAL",
    "AgentHealth",
    "FailureInfo",
    "backlog_of",
    "close_event_message",
    "failure_message",
    "last_polls",
    "live_workers",
    "needs_failure_lookup",
    "newest_failure",
    "read_health",
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
MAX_MESSAGE_CHARS = 500
"""Failure messages are cut to this length."""
_MAX_DETAIL_CHARS = 200
_TIMEOUT_GRACE_SECONDS = 1.0
_CAUSE_DEPTH = 5
_FAILURE_PAGE = 10
RETRYING_SAMPLE = 3
"""Running runs described per queue and read to find an activity that is failing and being retried."""
RETRYING_AFTER = timedelta(seconds=5)
"""Only runs older than this are described: a retry starts after a failed attempt and its backoff."""
_FAILED_STATUSES = ("Failed", "TimedOut", "Terminated")
# A timed-out call comes back CANCELLED ("Timeout expired"), not DEADLINE_EXCEEDED.
_CONNECTION_STATUSES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)
_HEARTBEAT_QUEUES_PER_CALL = 25
_HEARTBEAT_PAGE = 1000
_QUEUE_TYPES = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)

_T = TypeVar("_T")


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

    @classmethod
    def unreachable(cls, task_queue: str, error: str) -> AgentHealth:
        """The health of a queue Temporal could not be read for."""
        return cls(task_queue, 0, 0, 0.0, 0, 0, 0, None, error=error, reachable=False)

    def to_dict(self) -> dict[str, Any]:
        """The observed fields of `DurableAgentStatus` (camelCase, JSON-ready), plus `error` when set.

        `error` is not a status field. When Temporal could not be read the counts are zeros that were
        not observed: check `reachable` before writing them into a status.
        """
        last_failure = None
        if self.last_failure is not None:
            last_failure = {
                "workflowId": self.last_failure.workflow_id,
                "message": self.last_failure.message,
                "time": _iso(self.last_failure.time),
            }
        data: dict[str, Any] = {
            "taskQueue": self.task_queue,
            "workers": self.workers,
            "backlog": {"count": self.backlog_count, "ageSeconds": self.backlog_age_seconds},
            "runs": {"running": self.running, "completed": self.completed, "failed": self.failed},
            "lastFailure": last_failure,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


async def read_health(
    client: Client,
    task_queues: Sequence[str],
    *,
    live_within: timedelta = DEFAULT_LIVE_WITHIN,
    now: datetime | None = None,
    previous: Mapping[str, AgentHealth] | None = None,
    concurrency: int = 8,
    rpc_timeout: timedelta = timedelta(seconds=10),
) -> dict[str, AgentHealth]:
    """Read the health of each task queue on `client`'s namespace (see the module docstring for costs).

    `now` (timezone-aware) is the reference for poller liveness; default: the time each queue's pollers
    were read. With `previous` (the last read's result), the last failure of a queue is looked up again
    only when its failed count changed; otherwise it is carried over. Never raises for Temporal-side
    failures: those queues come back with `reachable=False` and `error` set.
    """
    reader = _Reader(client, concurrency=concurrency, rpc_timeout=rpc_timeout)
    previous = previous or {}
    unique = list(dict.fromkeys(task_queues))
    if not unique:
        return {}
    heartbeats = asyncio.ensure_future(reader.heartbeats(unique))
    try:
        results = await asyncio.gather(
            *(
                _read_queue(
                    reader,
                    queue,
                    heartbeats,
                    live_within=live_within,
                    now=now,
                    previous=previous.get(queue),
                )
                for queue in unique
            )
        )
    finally:
        if not heartbeats.done():
            heartbeats.cancel()
        elif not heartbeats.cancelled():
            heartbeats.exception()  # retrieved: each queue already reported it
    return dict(zip(unique, results, strict=True))


class _ReadError(Exception):
    """A Temporal call failed; the message is short and safe to put into a status."""


class _Reader:
    """Makes the Temporal calls of one read: bounded concurrency, one timeout, fail-fast once unreachable."""

    def __init__(self, client: Client, *, concurrency: int, rpc_timeout: timedelta) -> None:
        self.client = client
        self.timeout = rpc_timeout
        self._semaphore = asyncio.Semaphore(concurrency)
        self._down: str | None = None

    async def call(self, make_call: Callable[[], Awaitable[_T]]) -> _T:
        async with self._semaphore:
            if self._down is not None:
                raise _ReadError(self._down)
            try:
                # The RPC timeout does not cover establishing a lazy client's connection (60 s in core).
                async with asyncio.timeout(self.timeout.total_seconds() + _TIMEOUT_GRACE_SECONDS):
                    return await make_call()
            # temporalio raises RuntimeError when the (lazy) connection cannot be established.
            except (RPCError, RuntimeError, TimeoutError) as exc:
                message = _error_text(exc)
                if not isinstance(exc, RPCError) or exc.status in _CONNECTION_STATUSES:
                    self._down = message
                raise _ReadError(message) from exc

    async def describe(self, queue: str, queue_type: TaskQueueType.ValueType) -> DescribeTaskQueueResponse:
        request = DescribeTaskQueueRequest(
            namespace=self.client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=queue_type,
            report_stats=True,
        )
        return await self.call(
            lambda: self.client.workflow_service.describe_task_queue(request, timeout=self.timeout)
        )

    async def heartbeats(self, queues: Sequence[str]) -> dict[str, list[WorkerHeartbeat]]:
        """SDK worker heartbeats by task queue; none when the server rejects `ListWorkers`."""
        by_queue: dict[str, list[WorkerHeartbeat]] = {}
        for first in range(0, len(queues), _HEARTBEAT_QUEUES_PER_CALL):
            chunk = queues[first : first + _HEARTBEAT_QUEUES_PER_CALL]
            query = " OR ".join(f"TaskQueue={_quote(queue)}" for queue in chunk)
            token = b""
            while True:
                request = ListWorkersRequest(
                    namespace=self.client.namespace,
                    query=query,
                    page_size=_HEARTBEAT_PAGE,
                    next_page_token=token,
                )
                try:
                    response = await self.call(
                        lambda request=request: self.client.workflow_service.list_workers(
                            request, timeout=self.timeout
                        )
                    )
                except _ReadError:
                    if self._down is not None:
                        raise
                    return {}
                # `workers` (WorkerListInfo) carries no heartbeat time; the deprecated `workers_info` does.
                for info in response.workers_info:
                    beat = info.worker_heartbeat
                    by_queue.setdefault(beat.task_queue, []).append(beat)
                token = response.next_page_token
                if not token:
                    break
        return by_queue

    async def count(self, queue: str) -> Sequence[WorkflowExecutionCountAggregationGroup]:
        query = f"TaskQueue={_quote(queue)} GROUP BY ExecutionStatus"
        result = await self.call(lambda: self.client.count_workflows(query, rpc_timeout=self.timeout))
        return result.groups

    async def newest_failed(self, queue: str) -> WorkflowExecution | None:
        statuses = ", ".join(_quote(status) for status in _FAILED_STATUSES)
        query = f"TaskQueue={_quote(queue)} AND ExecutionStatus IN ({statuses})"

        async def first_page() -> list[WorkflowExecution]:
            listing = self.client.list_workflows(
                query, limit=_FAILURE_PAGE, page_size=_FAILURE_PAGE, rpc_timeout=self.timeout
            )
            return [execution async for execution in listing]

        # Visibility lists the last closed first; taking the newest of a page does not rely on that.
        executions = await self.call(first_page)
        return max(executions, key=_close_time, default=None)

    async def long_running(self, queue: str, started_before: datetime) -> list[WorkflowExecution]:
        before = started_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f"TaskQueue={_quote(queue)} AND ExecutionStatus='Running' AND StartTime < '{before}'"

        async def first_page() -> list[WorkflowExecution]:
            listing = self.client.list_workflows(
                query, limit=RETRYING_SAMPLE, page_size=RETRYING_SAMPLE, rpc_timeout=self.timeout
            )
            return [execution async for execution in listing]

        return await self.call(first_page)

    async def pending_activities(self, execution: WorkflowExecution) -> Sequence[PendingActivityInfo]:
        request = DescribeWorkflowExecutionRequest(
            namespace=self.client.namespace,
            execution=ExecutionRef(workflow_id=execution.id, run_id=execution.run_id),
        )
        response = await self.call(
            lambda: self.client.workflow_service.describe_workflow_execution(request, timeout=self.timeout)
        )
        return response.pending_activities

    async def close_event(self, execution: WorkflowExecution) -> HistoryEvent | None:
        request = GetWorkflowExecutionHistoryRequest(
            namespace=self.client.namespace,
            execution=ExecutionRef(workflow_id=execution.id, run_id=execution.run_id),
            history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
        )
        response = await self.call(
            lambda: self.client.workflow_service.get_workflow_execution_history(request, timeout=self.timeout)
        )
        return response.history.events[-1] if response.history.events else None


async def _read_queue(
    reader: _Reader,
    queue: str,
    heartbeats: asyncio.Future[dict[str, list[WorkerHeartbeat]]],
    *,
    live_within: timedelta,
    now: datetime | None,
    previous: AgentHealth | None,
) -> AgentHealth:
    try:
        async with asyncio.TaskGroup() as group:
            describes = [group.create_task(reader.describe(queue, queue_type)) for queue_type in _QUEUE_TYPES]
            beats = group.create_task(_heartbeats_of(heartbeats, queue))
            count = group.create_task(reader.count(queue))
    except* _ReadError as failures:
        error = str(failures.exceptions[0])
    else:
        described = [task.result() for task in describes]
        workers = live_workers(
            described, now=now or datetime.now(UTC), live_within=live_within, heartbeats=beats.result()
        )
        running, completed, failed = run_counts(count.result())
        backlog_count, backlog_age = backlog_of(described)
        try:
            if needs_failure_lookup(previous, failed):
                last_failure = await _last_failure(reader, queue)
            else:
                last_failure = _carried_failure(previous) if failed else None
            if running:
                last_failure = newest_failure(last_failure, await _retrying(reader, queue, now))
        except _ReadError as exc:
            return AgentHealth.unreachable(queue, str(exc))
        return AgentHealth(
            task_queue=queue,
            workers=workers,
            backlog_count=backlog_count,
            backlog_age_seconds=backlog_age,
            running=running,
            completed=completed,
            failed=failed,
            last_failure=last_failure,
        )
    return AgentHealth.unreachable(queue, error)


async def _heartbeats_of(
    heartbeats: asyncio.Future[dict[str, list[WorkerHeartbeat]]], queue: str
) -> list[WorkerHeartbeat]:
    # Shielded: one queue's read failing must not cancel the call the other queues wait for.
    return (await asyncio.shield(heartbeats)).get(queue, [])


async def _last_failure(reader: _Reader, queue: str) -> FailureInfo | None:
    execution = await reader.newest_failed(queue)
    if execution is None:
        return None
    if execution.status == WorkflowExecutionStatus.TIMED_OUT:
        message = "timed out: the run exceeded its execution or run timeout"
    else:
        event = await reader.close_event(execution)
        message = close_event_message(event) if event is not None else ""
    return FailureInfo(workflow_id=execution.id, message=message, time=execution.close_time)


def _carried_failure(previous: AgentHealth | None) -> FailureInfo | None:
    """The previous read's failed run (a retrying attempt it showed is read afresh each time)."""
    if previous is None or previous.last_failure is None or previous.last_failure.retrying:
        return None
    return previous.last_failure


async def _retrying(reader: _Reader, queue: str, now: datetime | None) -> FailureInfo | None:
    started_before = (now or datetime.now(UTC)) - RETRYING_AFTER
    found: list[FailureInfo] = []
    for execution in await reader.long_running(queue, started_before):
        failure = retrying_failure(execution.id, await reader.pending_activities(execution))
        if failure is not None:
            found.append(failure)
    return max(found, key=_failure_time, default=None)


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
            message=_shorten(
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
    failed = sum(by_status.get(status, 0) for status in _FAILED_STATUSES)
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
        return _shorten(f"terminated: {reason}" if reason else "terminated")
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return "timed out: the run exceeded its execution or run timeout"
    return ""


def failure_message(failure: Failure) -> str:
    """The messages of a failure and its causes joined with ": ", on one line, at most 500 characters.

    Stack traces and details are left out: they can hold data the workflow handled. A failure encoded by
    a payload codec shows Temporal's placeholder message.
    """
    parts: list[str] = []
    current: Failure | None = failure
    while current is not None and len(parts) < _CAUSE_DEPTH:
        message = " ".join(current.message.split())
        if message and (not parts or parts[-1] != message):
            parts.append(message)
        current = current.cause if current.HasField("cause") else None
    return _shorten(": ".join(parts))


def _shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        detail = f"{exc.status.name}: {exc.message}"
    elif isinstance(exc, TimeoutError):
        detail = "no answer in time"
    else:
        detail = str(exc)
    detail = _shorten(" ".join(detail.split()), _MAX_DETAIL_CHARS)
    return (
        f"cannot read Temporal ({detail}); check the connection's address, namespace, TLS and API key, "
        "and that the frontend is up"
    )


def _quote(value: str) -> str:
    """A visibility query string literal (a quote is escaped by doubling it)."""
    return "'" + value.replace("'", "''") + "'"


def _close_time(execution: WorkflowExecution) -> datetime:
    return execution.close_time or datetime.min.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None
