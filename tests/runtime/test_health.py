"""Workflow health read from a real Temporal dev server: live workers, backlog, run counts, last failure,
an unreachable server, and the number of calls one read makes."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slow_tools import agent_config, worker_env
from temporalio import workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkersRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from durable_agents_runtime.devserver import DevServer
from durable_agents_runtime.health import AgentHealth, read_health

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

READ_CALLS = (
    "describe_task_queue",
    "list_workers",
    "count_workflow_executions",
    "list_workflow_executions",
    "get_workflow_execution_history",
)


@workflow.defn
class Probe:
    """Completes, fails with "boom", or waits forever, as asked."""

    @workflow.run
    async def run(self, mode: str) -> str:
        if mode == "fail":
            raise ApplicationError("boom: the probe was told to fail")
        if mode == "wait":
            await workflow.wait_condition(lambda: False)
        return "done"


# A worker in its own process, so the test can SIGKILL it like a crashed pod.
_WORKER_SCRIPT = """
import asyncio, sys
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

@workflow.defn(name="Probe")
class Probe:
    @workflow.run
    async def run(self, mode: str) -> str:
        return "done"

async def main(address, namespace, queue, identity):
    client = await Client.connect(address, namespace=namespace)
    worker = Worker(client, task_queue=queue, workflows=[Probe], identity=identity,
                    workflow_runner=UnsandboxedWorkflowRunner())
    await worker.run()

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass(frozen=True)
class Target:
    address: str
    namespace: str


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def temporal(temporal_dev_server: DevServer) -> Target:
    """The session's dev server."""
    return Target(temporal_dev_server.address, temporal_dev_server.namespace)


@pytest.fixture
async def client(temporal: Target) -> Client:
    return await Client.connect(temporal.address, namespace=temporal.namespace)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _queue(purpose: str) -> str:
    return f"health-{purpose}-{uuid.uuid4().hex[:8]}"


def _worker(client: Client, queue: str, identity: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[Probe],
        identity=identity,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def _health_until(
    client: Client,
    queue: str,
    done: Callable[[AgentHealth], bool],
    *,
    timeout: float = 15.0,
    **options: Any,
) -> AgentHealth:
    """Read until `done` holds (visibility and task queue stats are eventually consistent)."""
    deadline = time.monotonic() + timeout
    while True:
        health = (await read_health(client, [queue], **options))[queue]
        if done(health) or time.monotonic() > deadline:
            return health
        await asyncio.sleep(0.2)


async def _poller_identities(client: Client, queue: str) -> set[str]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {poller.identity for poller in response.pollers}


@asynccontextmanager
async def _worker_process(
    temporal: Target, queue: str, identity: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER_SCRIPT, temporal.address, temporal.namespace, queue, identity],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


class CallCounter:
    """Counts the read's gRPC calls on one client, and the most that were in flight at once."""

    def __init__(self, client: Client) -> None:
        self.calls: Counter[str] = Counter()
        self.described: Counter[str] = Counter()
        """Task queue → DescribeTaskQueue calls for it."""
        self.in_flight = 0
        self.most_in_flight = 0
        service = client.workflow_service
        for name in READ_CALLS:
            setattr(service, name, self._counting(name, getattr(service, name)))

    def _counting(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "describe_task_queue":
                self.described[args[0].task_queue.name] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                return await call(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


async def test_each_polling_worker_identity_counts_once(client: Client, temporal: Target):
    queue = _queue("workers")
    # The SDK allows one worker per queue on a client: the second worker gets its own connection.
    other = await Client.connect(temporal.address, namespace=temporal.namespace)

    async with _worker(client, queue, "worker-a"):
        one = await _health_until(client, queue, lambda h: h.workers >= 1)
        async with _worker(other, queue, "worker-b"):
            two = await _health_until(client, queue, lambda h: h.workers >= 2)

    assert one.workers == 1
    assert two.workers == 2
    assert two.reachable and two.error is None


async def test_a_sigkilled_worker_stays_listed_but_stops_counting_after_live_within(
    client: Client, temporal: Target
):
    queue = _queue("killed")
    window = timedelta(seconds=3)

    async with _worker(client, queue, "survivor"), _worker_process(temporal, queue, "doomed") as doomed:
        both = await _health_until(client, queue, lambda h: h.workers >= 2, timeout=30)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        await asyncio.sleep(window.total_seconds() + 1)
        # A task makes the live worker poll again; the killed one cannot.
        await client.execute_workflow(Probe.run, "ok", id=f"{queue}-refresh", task_queue=queue)

        listed = await _poller_identities(client, queue)
        short = (await read_health(client, [queue], live_within=window))[queue]
        long = (await read_health(client, [queue], live_within=timedelta(minutes=5)))[queue]

    assert both.workers == 2
    assert listed == {"survivor", "doomed"}
    assert short.workers == 1
    assert long.workers == 2


async def test_a_worker_killed_long_enough_ago_leaves_no_active_pollers(client: Client, temporal: Target):
    queue = _queue("gone")
    window = timedelta(seconds=3)

    async with _worker_process(temporal, queue, "doomed") as doomed:
        alive = await _health_until(client, queue, lambda h: h.workers >= 1, timeout=30)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    await asyncio.sleep(window.total_seconds() + 1)

    listed = await _poller_identities(client, queue)
    health = (await read_health(client, [queue], live_within=window))[queue]

    assert alive.workers == 1
    assert "doomed" in listed
    assert health.workers == 0
    assert health.reachable


async def test_workflows_nobody_polls_for_show_as_backlog(client: Client):
    queue = _queue("backlog")
    handles = [
        await client.start_workflow(Probe.run, "ok", id=f"{queue}-{index}", task_queue=queue)
        for index in range(3)
    ]
    try:
        health = await _health_until(client, queue, lambda h: h.backlog_count >= 1 and h.running == 3)
    finally:
        for handle in handles:
            await handle.terminate(reason="test cleanup")

    assert health.backlog_count >= 1
    assert health.backlog_age_seconds > 0
    assert health.workers == 0
    assert health.running == 3


async def test_run_counts_and_the_last_failure_message(client: Client):
    queue = _queue("runs")

    async with _worker(client, queue, "worker"):
        await client.execute_workflow(Probe.run, "ok", id=f"{queue}-ok", task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(Probe.run, "fail", id=f"{queue}-fail", task_queue=queue)
        waiting = await client.start_workflow(Probe.run, "wait", id=f"{queue}-wait", task_queue=queue)
        health = await _health_until(
            client,
            queue,
            lambda h: (h.running, h.completed, h.failed) == (1, 1, 1) and h.last_failure is not None,
        )
        await waiting.terminate(reason="stopped by the test")
        after = await _health_until(client, queue, lambda h: h.failed == 2, previous={queue: health})

    assert (health.running, health.completed, health.failed) == (1, 1, 1)
    assert health.last_failure is not None
    assert health.last_failure.workflow_id == f"{queue}-fail"
    assert "boom" in health.last_failure.message
    assert "Traceback" not in health.last_failure.message and "File " not in health.last_failure.message
    assert health.last_failure.time is not None
    assert after.failed == 2
    assert after.last_failure is not None
    assert after.last_failure.workflow_id == f"{queue}-wait"
    assert after.last_failure.message == "terminated: stopped by the test"


async def test_an_unreachable_server_marks_every_queue_without_raising():
    client = await Client.connect(f"127.0.0.1:{_free_port()}", lazy=True)
    counter = CallCounter(client)
    queues = [_queue("down-a"), _queue("down-b"), _queue("down-c")]

    started = time.monotonic()
    result = await read_health(client, queues, concurrency=1)
    elapsed = time.monotonic() - started

    assert set(result) == set(queues)
    for health in result.values():
        assert not health.reachable
        assert health.error is not None and health.error.startswith("cannot read Temporal")
        assert (health.workers, health.running, health.failed) == (0, 0, 0)
    # After the first connection failure the rest of the read makes no calls.
    assert counter.total == 1
    assert elapsed < 5


async def test_calls_per_read_follow_the_documented_formula(temporal: Target, client: Client):
    queues = [_queue("batch-a"), _queue("batch-b"), _queue("batch-c")]
    async with _worker(client, queues[0], "worker"):
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(Probe.run, "fail", id=f"{queues[0]}-fail", task_queue=queues[0])
    await _health_until(client, queues[0], lambda h: h.failed == 1)
    counted = await Client.connect(temporal.address, namespace=temporal.namespace)
    counter = CallCounter(counted)

    first = await read_health(counted, queues, concurrency=4)
    first_calls = dict(counter.calls)
    counter.calls.clear()
    counter.described.clear()
    second = await read_health(counted, queues, previous=first, concurrency=4)
    n, failed_queues = len(queues), 1

    # 2N describe + N count + 1 ListWorkers (up to 25 queues) + F * (list + close event), F = queues
    # whose failed count changed.
    assert first_calls == {
        "describe_task_queue": 2 * n,
        "list_workers": 1,
        "count_workflow_executions": n,
        "list_workflow_executions": failed_queues,
        "get_workflow_execution_history": failed_queues,
    }
    # Nothing runs: the queues that never had a worker are described on their workflow queue only (a
    # session's message, or a worker that only polls, would show there). The first queue's worker just
    # stopped, so what it costs depends on the moment (health_signals.queue_types_to_describe: none
    # while its fresh heartbeat still counts it, both types once only its last poll does, the workflow
    # queue once neither does); `described_at` says whether it was described.
    assert counter.described[queues[1]] == counter.described[queues[2]] == 1
    redescribed = second[queues[0]].described_at != first[queues[0]].described_at
    assert (counter.described[queues[0]] > 0) == redescribed and counter.described[queues[0]] <= 2
    assert counter.calls["list_workers"] == 1 and counter.calls["count_workflow_executions"] == n
    assert set(counter.calls) == {"describe_task_queue", "list_workers", "count_workflow_executions"}
    assert counter.most_in_flight <= 4
    assert second[queues[0]].last_failure == first[queues[0]].last_failure
    assert first[queues[0]].last_failure is not None
    assert all(second[queue].last_failure is None for queue in queues[1:])


async def test_more_queues_than_one_filter_holds_read_every_worker_of_the_namespace_in_one_call(
    client: Client, temporal: Target
):
    queues = [_queue(f"many-{i}") for i in range(30)]
    async with _worker(client, queues[7], "worker-many"):
        await _health_until(client, queues[7], lambda h: h.workers >= 1)
        counted = await Client.connect(temporal.address, namespace=temporal.namespace)
        counter = CallCounter(counted)
        health = await read_health(counted, queues, concurrency=8)

    assert counter.calls["list_workers"] == 1  # 25 queues a filter would have taken 2
    assert health[queues[7]].workers == 1
    assert all(health[q].workers == 0 and health[q].reachable for q in queues if q != queues[7])


async def test_an_idle_queue_whose_worker_heartbeats_costs_one_count_and_is_described_once_a_minute(
    client: Client, temporal: Target, start_worker: Any, tmp_path: Path
):
    import dataclasses

    config = agent_config(temporal, "idle_agent")
    start_worker(config, **worker_env(tmp_path / "tools.log", 0))
    queue = config.temporal.task_queue
    await _health_until(client, queue, lambda h: h.workers >= 1, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not await _heartbeat_cadence_known(client, queue):
        await asyncio.sleep(0.2)
    counted = await Client.connect(temporal.address, namespace=temporal.namespace)
    counter = CallCounter(counted)

    first = (await read_health(counted, [queue]))[queue]
    first_calls = dict(counter.calls)
    counter.calls.clear()
    second = (await read_health(counted, [queue], previous={queue: first}))[queue]
    second_calls = dict(counter.calls)
    counter.calls.clear()
    assert first.described_at is not None
    a_minute_on = dataclasses.replace(second, described_at=first.described_at - timedelta(seconds=61))
    third = (await read_health(counted, [queue], previous={queue: a_minute_on}))[queue]

    assert first_calls == {"describe_task_queue": 2, "list_workers": 1, "count_workflow_executions": 1}
    assert second_calls == {"list_workers": 1, "count_workflow_executions": 1}  # the heartbeats say it all
    assert (first.workers, second.workers, third.workers) == (1, 1, 1)
    assert second.described_at == first.described_at
    assert counter.calls["describe_task_queue"] == 2 and third.described_at != first.described_at


async def test_a_sigkilled_heartbeating_worker_is_gone_within_seconds(
    client: Client, temporal: Target, start_worker: Any, tmp_path: Path
):
    config = agent_config(temporal, "heartbeat_agent")
    worker = start_worker(config, **worker_env(tmp_path / "tools.log", 0))
    queue = config.temporal.task_queue
    await _health_until(client, queue, lambda h: h.workers >= 1, timeout=30)
    # Killed after its heartbeat cadence is known (the second heartbeat); before that, pollers decide.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not await _heartbeat_cadence_known(client, queue):
        await asyncio.sleep(0.2)

    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=10)
    killed = time.monotonic()
    # The default live_within (75 s) would keep the dead worker's last poll live; its heartbeats stop.
    gone = await _health_until(client, queue, lambda h: h.workers == 0, timeout=20)
    elapsed = time.monotonic() - killed
    print(f"SIGKILL -> 0 workers: {elapsed:.1f} s")

    assert gone.workers == 0
    assert elapsed < 15


async def _heartbeat_cadence_known(client: Client, queue: str) -> bool:
    request = ListWorkersRequest(namespace=client.namespace, query=f"TaskQueue='{queue}'")
    response = await client.workflow_service.list_workers(request)
    return any(
        info.worker_heartbeat.elapsed_since_last_heartbeat.ToTimedelta() > timedelta(0)
        for info in response.workers_info
    )
