"""The health read under Temporal's namespace rate limit, on a dev server limited to 10 requests/s.

A burst of 2,000 agents drove the dev server past its namespace limit, and each refused call
(RESOURCE_EXHAUSTED) became a TemporalUnreachable agent. The read now slows down as a whole and retries
refused calls; what is still refused comes back `throttled`, so the operator can keep the last reading.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

import durable_agents_runtime.health as health_module
from durable_agents_runtime.devserver import DevServer
from durable_agents_runtime.health import read_health

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

RPS = 10
QUEUES = [f"throttled-{i}" for i in range(40)]  # ~120 calls: 12 s of this server's budget


class RateLimitedDevServer(DevServer):
    def command(self) -> list[str]:
        limits = (f"frontend.namespaceRPS={RPS}", f"frontend.namespaceRPS.visibility={RPS}")
        return [*super().command(), *(arg for limit in limits for arg in ("--dynamic-config-value", limit))]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RateLimitedDevServer]:
    with RateLimitedDevServer(tmp_path_factory.mktemp("limited")) as server:
        yield server


@pytest.fixture
async def limited(limited_server: RateLimitedDevServer) -> AsyncIterator[Client]:
    client = await Client.connect(limited_server.address, namespace=limited_server.namespace)
    # The limit is real: a burst of plain calls is mostly refused.
    assert (await _burst(client, 100))["RESOURCE_EXHAUSTED"] >= 50
    await asyncio.sleep(2)  # let the limiter's bucket fill again
    yield client


async def _burst(client: Client, calls: int) -> Counter[str]:
    async def one(i: int) -> str:
        request = DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=f"burst-{i}"),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        try:
            await client.workflow_service.describe_task_queue(request, timeout=timedelta(seconds=5))
        except RPCError as exc:
            return exc.status.name
        return "OK"

    return Counter(await asyncio.gather(*(one(i) for i in range(calls))))


async def test_a_read_over_the_namespace_rate_limit_slows_down_and_reads_every_queue(limited: Client) -> None:
    result = await read_health(limited, QUEUES, concurrency=8, rpc_timeout=timedelta(seconds=5))
    unread = {q: h.error for q, h in result.items() if not h.reachable}
    assert not unread, unread


async def test_a_queue_refused_on_every_try_comes_back_throttled_naming_the_limit_and_the_fix(
    limited: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_module, "THROTTLED_RETRIES", 0)
    result = await read_health(limited, QUEUES, concurrency=8, rpc_timeout=timedelta(seconds=5))
    throttled = [h for h in result.values() if not h.reachable]
    assert throttled, "no call was refused: the server's limit is not in effect"
    for health in throttled:
        assert health.throttled, health.error
        assert health.error is not None
        assert "RESOURCE_EXHAUSTED" in health.error and "frontend.namespaceRPS" in health.error
    # The rest were read: a refused call does not stop the read as a server that is down does.
    assert any(h.reachable for h in result.values())
