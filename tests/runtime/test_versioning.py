"""Worker Deployment Versioning on the real dev server: a change never reaches runs in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from versioned_agents import ENV_LOG as MODEL_LOG
from versioned_agents import ENV_RELEASE, gated_starts, received, versioned_config

from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.versioning import (
    build_id,
    deployment_name,
    describe_deployment,
    pinned_open_runs,
    promote,
    worker_version,
)

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent


async def _start(client: Client, task_queue: str, prompt: str) -> Any:
    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=prompt),
        id=f"versioned-{uuid.uuid4()}",
        task_queue=task_queue,
        result_type=RunOutput,
    )


async def test_run_in_flight_finishes_on_its_version_with_the_old_instructions(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    gated = ("gated", "versioned_agents:gated")
    v1 = versioned_config(
        temporal_dev_server, name="versioned", task_queue=None, instructions="Be v1.", toolset=gated
    )
    v2 = versioned_config(
        temporal_dev_server,
        name="versioned",
        task_queue=v1.temporal.task_queue,
        instructions="Be v2.",
        toolset=gated,
    )
    version1, version2 = worker_version(v1), worker_version(v2)
    assert version1 is not None and version2 is not None
    assert version1.deployment_name == version2.deployment_name == v1.temporal.task_queue.replace(".", "/")
    assert build_id(v1) != build_id(v2), "an instructions change must be a new version"
    model_log, release = tmp_path / "model.log", tmp_path / "release"
    env = {MODEL_LOG: str(model_log), ENV_RELEASE: str(release), "PYTHONPATH": str(HERE)}

    old = start_worker(v1, **env)
    await promote(temporal_client, version1)
    in_flight = await _start(temporal_client, v1.temporal.task_queue, "old run")
    await _until(lambda: gated_starts(model_log) == [old.pid], "the old run reached its tool")

    # The old run stays inside its tool until released: the change lands mid-tool, whatever the load.
    new = start_worker(v2, **env)
    await promote(temporal_client, version2)

    async def routing() -> tuple[str | None, bool] | None:
        state = await describe_deployment(temporal_client, version2.deployment_name)
        return None if state is None else (state.current, state.propagating)

    # Until Temporal has handed the routing change to the task queue, a new run may still start on v1
    # (the operator's Rollout condition waits for the same thing before it says Complete).
    await _until_async(routing, (version2.build_id, False), "v2 current and routed")
    fresh = await _start(temporal_client, v1.temporal.task_queue, "new run")
    await _until(lambda: gated_starts(model_log) == [old.pid, new.pid], "the new run reached its tool")
    assert await pinned_open_runs(temporal_client, version1) == 1
    release.touch()

    assert (await in_flight.result()).output == "done: gated:x"
    assert (await fresh.result()).output == "done: gated:x"

    by_prompt: dict[str, list[tuple[str | None, int]]] = {}
    for request in received(model_log):
        by_prompt.setdefault(request["prompt"], []).append((request["instructions"], request["pid"]))
    # Both model requests of the run in flight (before and after the tool) went to v1's worker, with v1's
    # instructions, although v2 was current when the tool returned.
    assert by_prompt["old run"] == [("Be v1.", old.pid), ("Be v1.", old.pid)]
    assert by_prompt["new run"] == [("Be v2.", new.pid), ("Be v2.", new.pid)]
    info = (await in_flight.describe()).raw_description.workflow_execution_info.versioning_info
    assert info.deployment_version.build_id == version1.build_id
    await _until_async(lambda: pinned_open_runs(temporal_client, version1), 0, "v1 drained")
    state = await describe_deployment(temporal_client, version1.deployment_name)
    assert state is not None and state.current == version2.build_id
    assert {v.build_id for v in state.versions} == {version1.build_id, version2.build_id}


async def _until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def _until_async(read: Any, expected: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        await asyncio.sleep(0.1)


async def test_unchanged_config_is_the_same_version_and_connection_changes_are_not_a_version(
    temporal_dev_server: Any,
) -> None:
    config = versioned_config(temporal_dev_server, name="versioned", task_queue="q", instructions="Same.")
    moved = config.model_copy(update={"temporal": config.temporal.model_copy(update={"address": "x:1"})})
    assert build_id(config) == build_id(moved)
    assert build_id(config) != build_id(config, image="registry.example/agent:2")
    auto = versioned_config(
        temporal_dev_server, name="versioned", task_queue="q", instructions="Same.", behavior="AutoUpgrade"
    )
    assert build_id(auto) != build_id(config)
    dotted = versioned_config(temporal_dev_server, name="versioned", task_queue="ns.agent", instructions="x")
    assert deployment_name(dotted) == "ns/agent", "Temporal reads a dot in a deployment name as a separator"
