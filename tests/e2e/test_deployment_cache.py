"""The operator's Deployment cache against the real apiserver: one list, then watches filtered on the
`managed-by` label, resumed from their last resourceVersion when the server ends them (5 s here instead of
~5 min), and every change seen without a read per Deployment."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from durable_agents_operator.deployment_cache import DeploymentCache
from durable_agents_operator.object_identity import ObjectKey

from .conftest import Kubectl, create_namespace

pytestmark = pytest.mark.e2e


def _deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none", "command": ["true"]}]},
            },
        },
    }


async def _until(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_cache_follows_labelled_deployments_across_resumed_watches_without_reads(
    kubectl: Kubectl, kubeconfig: Path
) -> None:
    from kubernetes import client, config

    from durable_agents_operator.kube import KubeClient

    namespace = create_namespace(kubectl, "deploy-cache")
    managed = {"app.kubernetes.io/managed-by": "durable-agents"}

    def kubectl_async(*args: str, input: str | None = None) -> Any:
        return asyncio.to_thread(kubectl, *args, input=input)

    async def scenario() -> DeploymentCache:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        kube = KubeClient.from_configuration(configuration, field_manager="deployment-cache-e2e")
        cache = DeploymentCache(kube, [namespace], watch_seconds=5)
        following = asyncio.create_task(cache.run())
        key = ObjectKey("apps/v1", "Deployment", namespace, "hello-worker")
        try:
            await asyncio.wait_for(cache.wait_synced(), timeout=30)
            await kubectl_async(
                "apply", "-n", namespace, "-f", "-", input=json.dumps(_deployment("hello-worker", managed))
            )
            await kubectl_async(
                "apply", "-n", namespace, "-f", "-", input=json.dumps(_deployment("someone-elses", {}))
            )
            first = await _until("the new Deployment in the cache", lambda: cache.get(key))
            # Outlive a few server-ended watches, then change the Deployment: the resumed watch sees it.
            await asyncio.sleep(12)
            await kubectl_async("scale", "deployment/hello-worker", "--replicas=1", "-n", namespace)

            async def scaled() -> bool:
                found = await cache.get(key)
                return found is not None and found["metadata"]["generation"] > first["metadata"]["generation"]

            await _until("the scaled Deployment's new generation", scaled)
            other = await cache.get(ObjectKey("apps/v1", "Deployment", namespace, "someone-elses"))
            await kubectl_async("delete", "deployment/hello-worker", "-n", namespace)

            async def gone() -> bool:
                return await cache.get(key) is None

            await _until("the deleted Deployment to leave the cache", gone)
            assert other is None  # not the operator's: not watched
            return cache
        finally:
            following.cancel()
            await kube.aclose()

    cache = asyncio.run(scenario())
    kubectl("delete", "namespace", namespace, "--wait=false")

    assert cache.counts.reads == 0, "every get was answered from the watch"
    assert cache.counts.lists == 1, "the watches were resumed, never listed again"
    assert cache.counts.watches >= 3, cache.counts
