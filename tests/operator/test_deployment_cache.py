"""The Deployment cache the health timer reads: answers from the watch only while it is in sync, reads
from the API otherwise, resumes a watch from its last resourceVersion, lists again at once on 410 Gone and
after a back-off on other errors. A scripted API stands in here; tests/e2e/test_deployment_cache.py runs
the same cache against the real apiserver."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable_agents_operator.deployment_cache import SELECTOR, DeploymentCache
from durable_agents_operator.errors import KubeApiError, KubeUnavailable
from durable_agents_operator.object_identity import ObjectKey

pytestmark = pytest.mark.anyio


def deployment(name: str, version: str, ready: int = 0, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 2,
            "resourceVersion": version,
            "labels": {"big": "x" * 100},
            "managedFields": [{"manager": "durable-agents"}],
        },
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "worker"}]}}},
        "status": {"replicas": 3, "readyReplicas": ready},
    }


def key(name: str, namespace: str = "team-a") -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", namespace, name)


class Scripted:
    """An API whose lists and watches play what a test queues; `get` reads `objects` (counted)."""

    def __init__(self) -> None:
        self.lists: asyncio.Queue[tuple[list[dict[str, Any]], str] | Exception] = asyncio.Queue()
        self.watches: asyncio.Queue[list[dict[str, Any] | Exception]] = asyncio.Queue()
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.gets: list[ObjectKey] = []
        self.watched_from: list[str] = []
        self.selectors: set[str | None] = set()

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        self.gets.append(key)
        return self.objects.get(key)

    async def list_at(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.selectors.add(label_selector)
        answer = await self.lists.get()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        for event in await self.watches.get():
            if isinstance(event, Exception):
                raise event
            yield event


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def api() -> AsyncIterator[Scripted]:
    yield Scripted()


async def test_before_its_first_list_the_cache_reads_from_the_api_then_answers_from_the_watch(
    api: Scripted,
) -> None:
    api.objects[key("a-worker")] = deployment("a-worker", "1")
    cache = DeploymentCache(api, ["team-a"])
    task = asyncio.create_task(cache.run())
    try:
        await settle()
        assert await cache.get(key("a-worker")) is not None and api.gets == [key("a-worker")]
        await api.lists.put(([deployment("a-worker", "5", ready=1)], "7"))
        await cache.wait_synced()
        assert cache.synced("team-a") and not cache.synced("team-b")
        found = await cache.get(key("a-worker"))
        # Only what the status is computed from, so thousands of Deployments stay small.
        assert found == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "a-worker", "namespace": "team-a", "generation": 2},
            "status": {"replicas": 3, "readyReplicas": 1},
        }
        assert await cache.get(key("b-worker")) is None  # known absent: no read
        assert await cache.get(key("x", namespace="team-b")) is None  # not watched: read
        assert api.gets == [key("a-worker"), key("x", "team-b")]
        assert api.selectors == {SELECTOR} == {"app.kubernetes.io/managed-by=durable-agents"}
        assert (cache.counts.hits, cache.counts.reads) == (2, 2)
    finally:
        task.cancel()


async def test_watch_events_update_the_copy_and_a_finished_watch_resumes_from_its_last_version(
    api: Scripted,
) -> None:
    cache = DeploymentCache(api, [None])  # one cluster-wide watch
    task = asyncio.create_task(cache.run())
    try:
        await api.lists.put(([deployment("a-worker", "5")], "7"))
        await api.watches.put(
            [
                {"type": "MODIFIED", "object": deployment("a-worker", "8", ready=3)},
                {"type": "ADDED", "object": deployment("b-worker", "9", namespace="team-b")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
            ]
        )
        await api.watches.put([{"type": "DELETED", "object": deployment("a-worker", "13")}])
        await settle()
        assert api.watched_from[:2] == ["7", "12"]
        assert await cache.get(key("a-worker")) is None
        b = await cache.get(key("b-worker", namespace="team-b"))
        assert b is not None and b["status"]["readyReplicas"] == 0
        assert api.gets == []
    finally:
        task.cancel()


async def test_gone_lists_again_at_once_and_other_errors_read_from_the_api_until_relisted(
    api: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="durable_agents.operator.deployments")
    api.objects[key("a-worker")] = deployment("a-worker", "1", ready=2)
    cache = DeploymentCache(api, ["team-a"], backoff=(0.05, 0.1))
    task = asyncio.create_task(cache.run())
    try:
        await api.lists.put(([deployment("a-worker", "5")], "7"))
        await api.watches.put([KubeApiError("too old resource version", status=410)])
        await api.lists.put(([deployment("a-worker", "20", ready=1)], "21"))
        await api.watches.put([KubeUnavailable("the Kubernetes API did not answer")])
        await settle()
        assert api.watched_from == ["7", "21"]
        # The watch broke: the cache does not answer from it, it reads.
        assert not cache.synced("team-a")
        assert (await cache.get(key("a-worker")) or {})["status"]["readyReplicas"] == 2
        assert api.gets == [key("a-worker")]
        await api.lists.put(KubeUnavailable("still down"))
        await api.lists.put(([deployment("a-worker", "30", ready=3)], "31"))
        await asyncio.wait_for(cache.wait_synced(), timeout=5)
        assert (await cache.get(key("a-worker")) or {})["status"]["readyReplicas"] == 3
        assert cache.counts.lists == 3
    finally:
        task.cancel()
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    # One warning per failing streak (the watch error and the failed list after it are one streak).
    assert len(failures) == 1 and "reading them from the API until it recovers" in failures[0]
    assert any("watching worker Deployments in team-a again" in r.getMessage() for r in caplog.records)


async def test_other_kinds_are_always_read(api: Scripted) -> None:
    cache = DeploymentCache(api, [None])
    task = asyncio.create_task(cache.run())
    try:
        await api.lists.put(([], "1"))
        await cache.wait_synced()
        config = ObjectKey("v1", "ConfigMap", "team-a", "a-config")
        assert await cache.get(config) is None and api.gets == [config]
    finally:
        task.cancel()
