"""`durable-agents dev` deletes a drained version in Temporal once the server no longer lists its worker.

In-process `DevRollout` against a dev server that forgets stopped workers' pollers within seconds
(`short_poller_ttl`); a changed manifest makes the old version drain (it has no open runs), stop, and go.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from short_poller_ttl import ShortPollerTtlDevServer
from temporalio.client import Client

from durable_agents_api.manifest import load_manifests, runtime_config
from durable_agents_runtime import dev_rollout
from durable_agents_runtime.agents import build_agent
from durable_agents_runtime.versioning import describe_deployment

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: retired
spec:
  agent:
    name: retired
    model: test
    instructions: "{instructions}"
  worker:
    gracefulShutdownTimeout: 1s
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShortPollerTtlDevServer]:
    with ShortPollerTtlDevServer(tmp_path_factory.mktemp("short-ttl")) as started:
        yield started


async def test_a_drained_version_is_deleted_in_temporal_after_its_worker_stopped(
    server: ShortPollerTtlDevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev_rollout, "RETIRE_POLL_SECONDS", 1.0)
    path = tmp_path / "retired.yaml"
    path.write_text(MANIFEST.format(instructions="Be v1."))
    [manifest] = load_manifests([path])
    config = dev_rollout.versioned(
        manifest, runtime_config(manifest, address=server.address, namespace=server.namespace)
    )
    client = await Client.connect(server.address, namespace=server.namespace, plugins=[PydanticAIPlugin()])
    said: list[str] = []
    rollout = dev_rollout.DevRollout(
        client, address=server.address, namespace=server.namespace, say=said.append, warn=said.append
    )
    await rollout.start([manifest], [config], [build_agent(config)])
    stopping = asyncio.Event()
    watching = asyncio.create_task(rollout.watch(stopping))
    try:
        path.write_text(MANIFEST.format(instructions="Be v2."))
        changed = time.monotonic()
        deadline = changed + 60
        while not any("deleted in Temporal" in line for line in said):
            assert time.monotonic() < deadline, said
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - changed
    finally:
        stopping.set()
        await watching
        await rollout.shutdown()
    [drained] = [line for line in said if "drained in" in line]
    [deleted] = [line for line in said if "deleted in Temporal" in line]
    old = drained.split()[1]
    assert deleted.startswith(f"version {old} of agent retired deleted in Temporal"), said
    state = await describe_deployment(client, config.temporal.task_queue.replace(".", "/"))
    assert state is not None and old not in [v.build_id for v in state.versions], state
    assert len(state.versions) == 1
    print(f"\ndev: manifest changed -> old version deleted in Temporal {seconds:.1f}s")
