"""Workflow health of agents' task queues, read from Temporal: the calls (`read_health`).

`durable-agents status` and the operator's health timer both call `read_health`, so the CLI shows exactly
what the operator writes into a DurableAgent's status. What the answers mean is decided in
`health_signals` (pure); this module only asks.

Calls per read, for N task queues on one connection (all through one semaphore, `concurrency` at a time):

    calls = N CountWorkflowExecutions + D DescribeTaskQueue + L ListWorkers
            + F * (1 ListWorkflowExecutions + at most 1 GetWorkflowExecutionHistory)
            + R * (1 ListWorkflowExecutions + at most RETRYING_SAMPLE DescribeWorkflowExecution)

D is what can change the answer (`health_signals.queue_types_to_describe`): 2 per queue with runs open,
a backlog last time, no previous read or no heartbeats from the server; 1 (the workflow queue) per idle
queue without live workers; 0 per idle queue whose workers all heartbeat, except every
`DESCRIBE_IDLE_EVERY` (60 s: 2 per 6 reads of a 10 s interval). L reads the SDK worker heartbeats: up to
25 queues per call (`TaskQueue='a' OR TaskQueue='b' ...`; the dev server answers `TaskQueue IN (...)` with
nothing), or, for more queues than that, every worker of the namespace, 1000 a page (1 call for up to
1000 workers, whatever N).

R is the number of queues with running runs (the retrying check; see "last failure" in
`health_signals`).

F is the number of queues whose failed count differs from `previous` (every queue with failures when
there is no previous read); the history call is skipped when the newest failure is a timeout. Steady
state, per agent per read: 1 + 2/6 + L/N for an idle agent with workers (≈ 1.35), 2 + L/N for an idle
agent scaled to zero, 3 + L/N + R's calls for a busy one; the worst case 5 + L/N. A server that rejects
ListWorkers (other than by being unreachable) leaves only the poller rule, and every queue is described.
The run counts cannot be merged into one
query: the dev server's SQL visibility rejects `GROUP BY TaskQueue` and allows only one GROUP BY field.
Describing both queue types in one call needs the deprecated ENHANCED mode, hence two calls. A
visibility query cannot match a task queue name containing `"` or `\\` on the dev server; such a queue
reports zero runs.

Temporal failures never raise: the affected queues come back with `reachable=False` and a short `error`.
Each call is bounded by `rpc_timeout`; after a connection-level failure (unreachable, timed out) the
remaining calls of the read are not made, so a hung server costs one timeout, not one per queue.

A server over its namespace rate limit answers RESOURCE_EXHAUSTED. The read then slows down as a whole:
every call of it waits out a pause that doubles with each such answer in a row (0.25 s up to 2 s, halved
again by each answer that goes through), and the refused call is made again, up to `THROTTLED_RETRIES`
times. A queue still refused after that comes back unreachable with `throttled=True`, so its caller can
tell a busy server from a broken one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import HistoryEventFilterType, TaskQueueType
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

from durable_agents_api.contract import SESSION_WORKFLOW_NAME
from durable_agents_runtime.failures import shorten
from durable_agents_runtime.health_signals import (
    DEFAULT_LIVE_WITHIN,
    FAILED_STATUSES,
    RETRYING_AFTER,
    RETRYING_SAMPLE,
    AgentHealth,
    FailureInfo,
    backlog_of,
    carried_failure,
    close_event_message,
    close_time,
    live_workers,
    needs_failure_lookup,
    newest_failure,
    queue_types_to_describe,
    retrying_failure,
    run_counts,
)
from durable_agents_runtime.timestamps import timestamp

__all__ = ["AgentHealth", "FailureInfo", "read_health"]
# AgentHealth and FailureInfo are what `read_health` returns; they are defined with their rules in
# `health_signals`.


_MAX_DETAIL_CHARS = 200

_TIMEOUT_GRACE_SECONDS = 1.0

_FAILURE_PAGE = 10

_CONNECTION_STATUSES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)

THROTTLED_RETRIES = 4
"""Times one call refused with RESOURCE_EXHAUSTED is made again (after the read's pause) before its queue
is reported throttled."""
_FIRST_PAUSE_SECONDS = 0.25
_MAX_PAUSE_SECONDS = 2.0

_HEARTBEAT_QUEUES_PER_CALL = 25

_HEARTBEAT_PAGE = 1000

_T = TypeVar("_T")


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


# Runs only: a conversation (the session workflow) stays open between messages and is not a run in
# progress, so it must not hold the autoscaler above zero or crowd the retry sample.
_RUNS = f"WorkflowType!='{SESSION_WORKFLOW_NAME}'"


class _ReadError(Exception):
    """A Temporal call failed; the message is short and safe to put into a status."""


class _Throttled(_ReadError):
    """Temporal kept refusing a call with RESOURCE_EXHAUSTED (its rate limit), retries included."""


class _Reader:
    """Makes the Temporal calls of one read: bounded concurrency, one timeout, fail-fast once unreachable."""

    def __init__(self, client: Client, *, concurrency: int, rpc_timeout: timedelta) -> None:
        self.client = client
        self.timeout = rpc_timeout
        self._semaphore = asyncio.Semaphore(concurrency)
        self._down: str | None = None
        self._pause = 0.0
        self._resume_at = 0.0
        self.throttled_answers = 0
        """RESOURCE_EXHAUSTED answers this read got (retried or not)."""

    async def call(self, make_call: Callable[[], Awaitable[_T]]) -> _T:
        async with self._semaphore:
            for attempt in range(THROTTLED_RETRIES + 1):
                if self._down is not None:
                    raise _ReadError(self._down)
                # Holding the slot while paused: the whole read slows down, not only this call.
                await asyncio.sleep(max(0.0, self._resume_at - asyncio.get_running_loop().time()))
                try:
                    # The RPC timeout does not cover establishing a lazy client's connection (60 s in core).
                    async with asyncio.timeout(self.timeout.total_seconds() + _TIMEOUT_GRACE_SECONDS):
                        result = await make_call()
                # temporalio raises RuntimeError when the (lazy) connection cannot be established.
                except (RPCError, RuntimeError, TimeoutError) as exc:
                    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
                        self._slow_down()
                        if attempt < THROTTLED_RETRIES:
                            continue
                        raise _Throttled(_throttled_text(exc)) from exc
                    message = _error_text(exc)
                    if not isinstance(exc, RPCError) or exc.status in _CONNECTION_STATUSES:
                        self._down = message
                    raise _ReadError(message) from exc
                self._pause /= 2
                return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _slow_down(self) -> None:
        self.throttled_answers += 1
        self._pause = min(max(2 * self._pause, _FIRST_PAUSE_SECONDS), _MAX_PAUSE_SECONDS)
        self._resume_at = max(self._resume_at, asyncio.get_running_loop().time() + self._pause)

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

    async def heartbeats(self, queues: Sequence[str]) -> dict[str, list[WorkerHeartbeat]] | None:
        """SDK worker heartbeats by task queue; None when the server rejects `ListWorkers`. More queues
        than fit one query's filter are read from one listing of the namespace's workers."""
        if len(queues) > _HEARTBEAT_QUEUES_PER_CALL:
            filters = [""]
        else:
            filters = [" OR ".join(f"TaskQueue={_quote(queue)}" for queue in queues)]
        by_queue: dict[str, list[WorkerHeartbeat]] = {}
        for query in filters:
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
                    return None
                # `workers` (WorkerListInfo) carries no heartbeat time; the deprecated `workers_info` does.
                for info in response.workers_info:
                    beat = info.worker_heartbeat
                    by_queue.setdefault(beat.task_queue, []).append(beat)
                token = response.next_page_token
                if not token:
                    break
        return by_queue

    async def count(self, queue: str) -> Sequence[WorkflowExecutionCountAggregationGroup]:
        query = f"TaskQueue={_quote(queue)} AND {_RUNS} GROUP BY ExecutionStatus"
        result = await self.call(lambda: self.client.count_workflows(query, rpc_timeout=self.timeout))
        return result.groups

    async def newest_failed(self, queue: str) -> WorkflowExecution | None:
        statuses = ", ".join(_quote(status) for status in FAILED_STATUSES)
        query = f"TaskQueue={_quote(queue)} AND {_RUNS} AND ExecutionStatus IN ({statuses})"

        async def first_page() -> list[WorkflowExecution]:
            listing = self.client.list_workflows(
                query, limit=_FAILURE_PAGE, page_size=_FAILURE_PAGE, rpc_timeout=self.timeout
            )
            return [execution async for execution in listing]

        # Visibility lists the last closed first; taking the newest of a page does not rely on that.
        executions = await self.call(first_page)
        return max(executions, key=close_time, default=None)

    async def long_running(self, queue: str, started_before: datetime) -> list[WorkflowExecution]:
        before = timestamp(started_before)
        query = (
            f"TaskQueue={_quote(queue)} AND {_RUNS} AND ExecutionStatus='Running' AND StartTime < '{before}'"
        )

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
    heartbeats: asyncio.Future[dict[str, list[WorkerHeartbeat]] | None],
    *,
    live_within: timedelta,
    now: datetime | None,
    previous: AgentHealth | None,
) -> AgentHealth:
    try:
        beats, (running, completed, failed) = await _beats_and_counts(reader, queue, heartbeats)
        asked_at = now or datetime.now(UTC)
        kinds = queue_types_to_describe(
            previous, running=running, heartbeats=beats, now=asked_at, live_within=live_within
        )
        described = list(await asyncio.gather(*(reader.describe(queue, kind) for kind in kinds)))
        at = now or datetime.now(UTC)
        workers = live_workers(described, now=at, live_within=live_within, heartbeats=beats or ())
        backlog_count, backlog_age = backlog_of(described)
        if needs_failure_lookup(previous, failed):
            last_failure = await _last_failure(reader, queue)
        else:
            last_failure = carried_failure(previous) if failed else None
        if running:
            last_failure = newest_failure(last_failure, await _retrying(reader, queue, now))
    except _ReadError as exc:
        return AgentHealth.unreachable(queue, str(exc), throttled=isinstance(exc, _Throttled))
    return AgentHealth(
        task_queue=queue,
        workers=workers,
        backlog_count=backlog_count,
        backlog_age_seconds=backlog_age,
        running=running,
        completed=completed,
        failed=failed,
        last_failure=last_failure,
        described_at=asked_at if kinds else (previous.described_at if previous else None),
    )


async def _beats_and_counts(
    reader: _Reader, queue: str, heartbeats: asyncio.Future[dict[str, list[WorkerHeartbeat]] | None]
) -> tuple[list[WorkerHeartbeat] | None, tuple[int, int, int]]:
    """The queue's heartbeats (None: the server gives none) and its run counts, asked side by side."""
    try:
        async with asyncio.TaskGroup() as group:
            beats = group.create_task(_heartbeats_of(heartbeats, queue))
            count = group.create_task(reader.count(queue))
    except* _ReadError as failures:
        raise failures.exceptions[0] from None
    return beats.result(), run_counts(count.result())


async def _heartbeats_of(
    heartbeats: asyncio.Future[dict[str, list[WorkerHeartbeat]] | None], queue: str
) -> list[WorkerHeartbeat] | None:
    # Shielded: one queue's read failing must not cancel the call the other queues wait for.
    by_queue = await asyncio.shield(heartbeats)
    return None if by_queue is None else by_queue.get(queue, [])


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


async def _retrying(reader: _Reader, queue: str, now: datetime | None) -> FailureInfo | None:
    started_before = (now or datetime.now(UTC)) - RETRYING_AFTER
    newest: FailureInfo | None = None
    for execution in await reader.long_running(queue, started_before):
        failure = retrying_failure(execution.id, await reader.pending_activities(execution))
        newest = newest_failure(newest, failure)
    return newest


def _throttled_text(exc: RPCError) -> str:
    detail = shorten(" ".join(exc.message.split()), _MAX_DETAIL_CHARS)
    return (
        f"Temporal refused the health read on each of {THROTTLED_RETRIES + 1} tries (RESOURCE_EXHAUSTED: "
        f"{detail}): the namespace is over its rate limit; raise the frontend's namespace RPS limit "
        "(frontend.namespaceRPS) or the health interval"
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        detail = f"{exc.status.name}: {exc.message}"
    elif isinstance(exc, TimeoutError):
        detail = "no answer in time"
    else:
        detail = str(exc)
    detail = shorten(" ".join(detail.split()), _MAX_DETAIL_CHARS)
    return (
        f"cannot read Temporal ({detail}); check the connection's address, namespace, TLS and API key, "
        "and that the frontend is up"
    )


def _quote(value: str) -> str:
    """A visibility query string literal (a quote is escaped by doubling it)."""
    return "'" + value.replace("'", "''") + "'"
