"""Health of many agents from few Temporal calls: one batched read per connection per interval.

Every DurableAgent has a health timer. The first timer of a connection that finds no fresh result starts
one `read_health(client, [every task queue recently asked about on that connection])`; timers firing
while it runs, or later in the same interval, reuse its result. A read that fails or times out yields an
unreachable `AgentHealth` for every queue of the batch: never an exception, never longer than the timeout.

One failed read is not an outage: a queue whose last reading (younger than `KEEP_INTERVALS` intervals)
was reachable keeps it for one more interval, and only a second failure in a row becomes its health. So
`TemporalReachable` turns False one interval later than the first failure, and a read cut off once by a
slow, overloaded server (a burst of new agents) reports nothing.

A throttled read (Temporal over its namespace rate limit, RESOURCE_EXHAUSTED after the reader's own
retries) is the server saying "later", not "broken": the last reachable reading is kept over any number of
them in a row, but never once it is `KEEP_INTERVALS` intervals old; then the throttling is the health. A
kept reading is never silent: it carries what the failed read said (`AgentHealth.kept_over`), which the
`TemporalReachable` condition's message shows.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from temporalio.client import Client

from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import OperatorError
from durable_agents_operator.temporal_clients import TemporalPool
from durable_agents_runtime.health import AgentHealth, read_health

__all__ = ["HealthBatcher", "HealthReader", "runtime_reader"]

HealthReader = Callable[
    [Client, Sequence[str], Mapping[str, AgentHealth]], Awaitable[Mapping[str, AgentHealth]]
]
"""Reads several task queues of one Temporal namespace in one go, given the previous read's result."""


KEEP_INTERVALS = 3
"""A reading older than this many intervals is not kept over a failed read (the failure is shown at once)."""
READ_CONCURRENCY = 8
"""Temporal calls one batched health read keeps in flight."""
CALLS_PER_QUEUE = 3
"""Calls per task queue in a steady-state read (2 DescribeTaskQueue + 1 CountWorkflowExecutions), leaving
out the one ListWorkers per 25 queues (4% more calls) that the read adds for worker heartbeats."""


def runtime_reader(*, live_within: float, rpc_timeout: float) -> HealthReader:
    """The runtime's `read_health`: what `durable-agents status` shows is what the operator writes."""

    async def read(
        client: Client, task_queues: Sequence[str], previous: Mapping[str, AgentHealth]
    ) -> Mapping[str, AgentHealth]:
        return await read_health(
            client,
            task_queues,
            live_within=timedelta(seconds=live_within),
            previous=previous,
            rpc_timeout=timedelta(seconds=rpc_timeout),
            concurrency=READ_CONCURRENCY,
        )

    return read


@dataclass
class _Connection:
    asked: dict[str, float] = field(default_factory=dict)
    """Task queue → when a timer last asked for it (monotonic seconds)."""
    waiting: collections.Counter[str] = field(default_factory=collections.Counter)
    """Task queue → timers waiting for a read of it now (kept in the next read however long ago asked)."""
    result: dict[str, AgentHealth] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)
    """Task queue → when it was last read, whatever the outcome (monotonic seconds)."""
    reachable_at: dict[str, float] = field(default_factory=dict)
    """Task queue → when its last reachable reading was made: how old a kept reading is."""
    inflight: asyncio.Task[Mapping[str, AgentHealth]] | None = None
    inflight_queues: frozenset[str] = frozenset()
    follow_up: asyncio.Task[Mapping[str, AgentHealth]] | None = None
    """The next read, for queues first asked about while `inflight` was running."""
    failed_once: set[str] = field(default_factory=set)
    """Queues whose last read failed while an earlier reachable reading was kept in its place."""


class HealthBatcher:
    """Shares health reads between the agents of one connection. Lives in the operator's memo.

    At most one read per connection runs at a time. Timers asking for a queue the running read does not
    cover share one follow-up read that starts when it finishes; so when the operator starts and every
    agent's timer fires at once, the first interval costs two reads, not one per agent.
    """

    def __init__(
        self,
        *,
        pool: TemporalPool,
        reader: HealthReader,
        interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._connections: dict[str, _Connection] = {}

    async def read(self, params: ConnectionParams, task_queue: str) -> AgentHealth:
        """The health of `task_queue`, at most one interval old. Never raises for Temporal problems."""
        conn = self._connections.setdefault(params.key, _Connection())
        now = self._clock()
        conn.asked[task_queue] = now
        if now - conn.read_at.get(task_queue, float("-inf")) < self._interval:
            return conn.result[task_queue]
        if conn.inflight is not None and task_queue in conn.inflight_queues:
            task = conn.inflight
        elif conn.inflight is not None:
            if conn.follow_up is None:
                conn.follow_up = asyncio.ensure_future(self._after(conn, conn.inflight, params))
            task = conn.follow_up
        else:
            task = self._start(conn, params)
        # Shielded: a timer cancelled mid-read (its agent deleted) must not cancel the others' read.
        conn.waiting[task_queue] += 1
        try:
            result = await asyncio.shield(task)
        finally:
            conn.waiting[task_queue] -= 1
            if not conn.waiting[task_queue]:
                del conn.waiting[task_queue]
        # What `_done` kept: a reachable reading in place of a first failure.
        return conn.result.get(task_queue, result[task_queue])

    def deadline(self, queues: int) -> float:
        """How long one batched read of `queues` task queues may take.

        The timeout bounds each wave of calls, not the whole batch: a read makes `CALLS_PER_QUEUE` calls per
        queue, `READ_CONCURRENCY` at a time, so 500 agents need ~190 waves. One timeout for the whole batch
        reported every agent TemporalUnreachable on a slow but healthy server (bench/README.md, operator
        scale). A server that is really down still fails fast: the reader stops after its first timeout.
        """
        waves = math.ceil(CALLS_PER_QUEUE * queues / READ_CONCURRENCY)
        return self._timeout * max(1, waves)

    def peek(self, params: ConnectionParams, task_queue: str) -> AgentHealth | None:
        """The last known health of `task_queue`, however old, without reading Temporal."""
        conn = self._connections.get(params.key)
        return None if conn is None else conn.result.get(task_queue)

    def _start(self, conn: _Connection, params: ConnectionParams) -> asyncio.Task[Mapping[str, AgentHealth]]:
        # Queues nobody asked about for three intervals belong to deleted agents: leave them out. A timer
        # still waiting (its read queued behind a long one) asked long ago but is not gone.
        now = self._clock()
        horizon = now - 3 * self._interval
        conn.asked = {q: at for q, at in conn.asked.items() if at >= horizon or q in conn.waiting}
        # Only queues due for a read: those read in the last half interval are fresh enough, so agents
        # created one after another are read once each, not again with every newcomer's read (a burst of
        # 2,000 cost ~2,000 reads of every queue so far, and Temporal timed out under them).
        half = self._interval / 2
        queues = frozenset(
            q for q in conn.asked if q in conn.waiting or now - conn.read_at.get(q, float("-inf")) >= half
        )
        task = asyncio.ensure_future(self._read(params, sorted(queues), dict(conn.result)))
        task.add_done_callback(lambda done: self._done(conn, done))
        conn.inflight, conn.inflight_queues = task, queues
        return task

    async def _after(
        self, conn: _Connection, previous: asyncio.Task[Mapping[str, AgentHealth]], params: ConnectionParams
    ) -> Mapping[str, AgentHealth]:
        await asyncio.wait([previous])
        conn.follow_up = None
        return await asyncio.shield(self._start(conn, params))

    def _done(self, conn: _Connection, task: asyncio.Task[Mapping[str, AgentHealth]]) -> None:
        if conn.inflight is task:
            conn.inflight, conn.inflight_queues = None, frozenset()
        if not task.cancelled():
            now = self._clock()
            for queue, health in task.result().items():
                if self._keeps_last(conn, queue, health, now):
                    conn.failed_once.add(queue)
                    conn.result[queue] = replace(conn.result[queue], kept_over=health.error)
                else:
                    conn.result[queue] = health
                    if health.reachable:
                        conn.failed_once.discard(queue)
                        conn.reachable_at[queue] = now
                conn.read_at[queue] = now
        stale = set(conn.result) - set(conn.asked)
        for queue in stale:
            conn.result.pop(queue, None)
            conn.read_at.pop(queue, None)
            conn.reachable_at.pop(queue, None)
            conn.failed_once.discard(queue)

    def _keeps_last(self, conn: _Connection, queue: str, health: AgentHealth, now: float) -> bool:
        """Whether a failed reading of `queue` is replaced by its last reachable one: that one is younger
        than `KEEP_INTERVALS` intervals, and the failure is the first in a row or a throttled read."""
        last = conn.result.get(queue)
        if health.reachable or last is None or not last.reachable:
            return False
        if now - conn.reachable_at.get(queue, float("-inf")) >= KEEP_INTERVALS * self._interval:
            return False
        return health.throttled or queue not in conn.failed_once

    async def _read(
        self, params: ConnectionParams, queues: list[str], previous: Mapping[str, AgentHealth]
    ) -> Mapping[str, AgentHealth]:
        try:
            client = await self._pool.client(params)
            result = await asyncio.wait_for(
                self._reader(client, queues, previous), self.deadline(len(queues))
            )
        except OperatorError as exc:
            return {q: AgentHealth.unreachable(q, str(exc)) for q in queues}
        except TimeoutError:
            message = (
                f"Temporal at {params} did not answer within {self.deadline(len(queues)):g}s: check that the "
                "frontend is up and reachable from the operator"
            )
            return {q: AgentHealth.unreachable(q, message) for q in queues}
        except Exception as exc:  # any failure of a read must become a condition, not a crashed timer
            return {
                q: AgentHealth.unreachable(
                    q, f"reading Temporal at {params} failed: {exc}; check the connection settings"
                )
                for q in queues
            }
        missing = {
            q: AgentHealth.unreachable(q, "no health was returned for this task queue")
            for q in queues
            if q not in result
        }
        return {**result, **missing}
