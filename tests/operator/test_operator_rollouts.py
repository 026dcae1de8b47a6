"""Rainbow rollouts of a versioned DurableAgent: the operator's handlers, real `durable-agents worker`
processes serving the configs it rendered, and a real Temporal dev server. The Kubernetes side is the
recording `FakeKube`; the test plays the deployment controller (it starts a worker process per version
Deployment and marks it ready) and moves the operator's clock for the sunset delay.

The agent's model records what it received (the instructions tell the versions apart) and its tool waits
for a file, so a change can land while a run sits in its tool.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from operator_support import (
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    make_operator,
    make_real_operator,
)
from temporalio.client import Client

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, Decisions, RunInput, RunOutput
from durable_agents_operator.event_budget import PER_OBJECT_BURST, PER_OBJECT_REFILL
from durable_agents_operator.handlers import durableagent
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.temporal_clients import TemporalPool
from durable_agents_runtime.decisions import decide, pending_calls
from durable_agents_runtime.versioning import describe_deployment

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]

RUNTIME_TESTS = Path(__file__).parents[1] / "runtime"
if str(RUNTIME_TESTS) not in sys.path:
    sys.path.append(str(RUNTIME_TESTS))  # versioned_agents: the recording model and the gated tool
versioned_agents: Any = importlib.import_module("versioned_agents")
short_poller_ttl: Any = importlib.import_module("short_poller_ttl")

SUNSET = 30.0


@pytest.fixture(scope="module")
def short_ttl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with short_poller_ttl.ShortPollerTtlDevServer(tmp_path_factory.mktemp("short-ttl")) as server:
        yield DevServer(server.address, server.namespace)


def _agent(queue: str, instructions: str, *, toolset: bool = True, **versioning: Any) -> dict[str, Any]:
    manifest = agent_manifest(temporal={"taskQueue": queue})
    manifest["spec"]["agent"].update(model=versioned_agents.MODEL, instructions=instructions)
    if toolset:
        manifest["spec"]["agent"]["toolsets"] = [{"id": "gated", "entrypoint": "versioned_agents:gated"}]
    manifest["spec"]["versioning"] = {"enabled": True, "sunsetDelay": f"{SUNSET:g}s", **versioning}
    return manifest


class Cluster:
    """The operator plus what the test plays: the deployment controller and the kubelet."""

    def __init__(self, kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any, tmp: Path):
        self.kube, self.clock = kube, clock
        self.ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
        self.start_worker = start_worker
        self.model_log, self.release = tmp / "model.log", tmp / "release"
        self.workers: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        return self.kube.objects[agent_key()].get("status") or {}

    def versions(self) -> dict[str, dict[str, Any]]:
        return {row["buildId"]: row for row in self.status().get("versions") or []}

    def condition(self, kind: str = "Rollout") -> tuple[str, str, str]:
        [found] = [c for c in self.status()["conditions"] if c["type"] == kind]
        return found["status"], found["reason"], found["message"]

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {k.name: o for k, o in self.kube.objects.items() if k.kind == "Deployment"}

    def events(self, reason: str) -> list[str]:
        return [e["message"] for e in self.kube.events if e["reason"] == reason]

    async def apply(self, manifest: dict[str, Any]) -> None:
        key = agent_key()
        if key in self.kube.objects:
            self.kube.edit(key, lambda obj: obj.update(spec=manifest["spec"]))
        else:
            self.kube.put(manifest)
        await durableagent.reconcile(self.ops, self.kube.body(key))

    async def serve(self, build_id: str) -> Any:
        """Start a worker on the version's rendered ConfigMap and mark its Deployment ready."""
        rendered = self.kube.objects[ObjectKey("v1", "ConfigMap", "ns", f"hello-runtime-{build_id}")]
        config = RuntimeConfig.model_validate_json(rendered["data"]["runtime.json"])
        env = {
            versioned_agents.ENV_LOG: str(self.model_log),
            versioned_agents.ENV_RELEASE: str(self.release),
            "PYTHONPATH": str(RUNTIME_TESTS),
        }
        worker = await asyncio.to_thread(self.start_worker, config, **env)
        self.workers[build_id] = worker
        key = ObjectKey("apps/v1", "Deployment", "ns", f"hello-worker-{build_id}")
        self.kube.set_status(key, {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
        return worker

    async def annotate(self, rollback: str) -> None:
        """`kubectl annotate durableagent hello durable-agents.dev/rollback=...`, then the kopf handler."""
        key = agent_key()
        edit = {"durable-agents.dev/rollback": rollback}
        self.kube.edit(key, lambda obj: obj["metadata"].setdefault("annotations", {}).update(edit))
        await durableagent.reconcile(self.ops, self.kube.body(key))

    async def tick_until(self, what: str, done: Any, timeout: float = 60) -> None:
        """Run the health timer (as kopf would, every interval) until `done()`."""
        deadline = time.monotonic() + timeout
        while True:
            self.clock.advance(1)
            await durableagent.check_health(self.ops, self.kube.body(agent_key()))
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout}s: {what}\nstatus: {self.status()}")
            await asyncio.sleep(0.2)


async def _start(client: Client, queue: str, prompt: str) -> Any:
    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=prompt),
        id=f"rollout-{uuid.uuid4()}",
        task_queue=queue,
        result_type=RunOutput,
    )


async def _until(condition: Any, what: str, timeout: float = 60, detail: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}\n{detail() if detail else ''}")
        await asyncio.sleep(0.05)


async def test_a_change_runs_next_to_the_old_version_which_drains_its_runs_and_is_sunset(
    kube: FakeKube,
    clock: Clock,
    dev_server: DevServer,
    start_worker: Any,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    queue = f"rollout-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(kube, clock, dev_server, start_worker, tmp_path)
    unversioned = _agent(queue, "Be v1.")
    del unversioned["spec"]["versioning"]
    await cluster.apply(unversioned)
    assert set(cluster.deployments()) == {"hello-worker"}
    await cluster.apply(_agent(queue, "Be v1."))
    [v1] = cluster.versions()
    assert set(cluster.deployments()) == {"hello-worker", f"hello-worker-{v1}"}, "kept until v1 serves"
    assert cluster.versions()[v1]["role"] == "target"
    old = await cluster.serve(v1)
    await cluster.tick_until("v1 current", lambda: cluster.condition()[1] == "Complete")
    assert cluster.status()["currentVersion"] == v1
    assert set(cluster.deployments()) == {f"hello-worker-{v1}"}
    assert ObjectKey("v1", "ConfigMap", "ns", "hello-runtime") not in kube.objects
    assert len(cluster.events("VersionPromoted")) == 1

    in_flight = await _start(temporal_client, queue, "old run")
    await _until(lambda: versioned_agents.gated_starts(cluster.model_log) == [old.pid], "the old run's tool")

    applied = time.monotonic()
    await cluster.apply(_agent(queue, "Be v2."))
    versions = cluster.versions()
    [v2] = set(versions) - {v1}
    assert set(cluster.deployments()) == {f"hello-worker-{v1}", f"hello-worker-{v2}"}
    assert (versions[v1]["role"], versions[v2]["role"]) == ("current", "target")
    assert cluster.condition()[:2] == ("False", "Progressing")
    new = await cluster.serve(v2)
    serving = time.monotonic()
    await cluster.tick_until("v2 current", lambda: cluster.status().get("currentVersion") == v2)
    rollout_seconds, promote_seconds = time.monotonic() - applied, time.monotonic() - serving
    # New runs start on v2 once Temporal has handed the routing change to the task queue.
    await cluster.tick_until("routing propagated", lambda: cluster.condition()[1] == "Complete")
    versions = cluster.versions()
    assert (versions[v2]["role"], versions[v1]["role"]) == ("current", "draining")
    assert versions[v1]["pinnedOpenRuns"] == 1
    assert versions[v1]["replicas"] == 1, "a draining version keeps its workers"
    assert cluster.status()["selector"].endswith(f"durable-agents.dev/build-id={v2}")
    assert any(f"version {v2} is current (was {v1})" in m for m in cluster.events("VersionPromoted"))

    # `kubectl scale` (spec.replicas) acts on the current version; the draining one keeps what it has.
    scaled = _agent(queue, "Be v2.")
    scaled["spec"]["replicas"] = 3
    await cluster.apply(scaled)
    replicas = {n: d["spec"]["replicas"] for n, d in cluster.deployments().items()}
    assert replicas == {f"hello-worker-{v1}": 1, f"hello-worker-{v2}": 3}
    await cluster.apply(_agent(queue, "Be v2."))

    fresh = await _start(temporal_client, queue, "new run")
    await _until(
        lambda: versioned_agents.gated_starts(cluster.model_log) == [old.pid, new.pid],
        "the new run's tool",
        detail=lambda: (cluster.model_log.read_text(), new.tail(), old.tail()),
    )

    # Rollback: the previous version still has its workers, so it is current again at once, and back.
    await cluster.apply(_agent(queue, "Be v1."))
    assert cluster.status()["currentVersion"] == v1
    assert any("rollback" in m for m in cluster.events("VersionPromoted")), cluster.events("VersionPromoted")
    assert cluster.versions()[v2]["role"] == "draining"
    await cluster.apply(_agent(queue, "Be v2."))
    assert cluster.status()["currentVersion"] == v2
    state = await describe_deployment(temporal_client, queue.replace(".", "/"))
    assert state is not None and state.current == v2

    released = time.monotonic()
    cluster.release.touch()
    assert (await in_flight.result()).output == "done: gated:x"
    assert (await fresh.result()).output == "done: gated:x"
    by_prompt: dict[str, list[tuple[str | None, int]]] = {}
    for request in versioned_agents.received(cluster.model_log):
        by_prompt.setdefault(request["prompt"], []).append((request["instructions"], request["pid"]))
    assert by_prompt["old run"] == [("Be v1.", old.pid), ("Be v1.", old.pid)]
    assert by_prompt["new run"] == [("Be v2.", new.pid), ("Be v2.", new.pid)]

    await cluster.tick_until("v1 drained", lambda: cluster.versions()[v1]["role"] == "drained")
    drain_seconds = time.monotonic() - released
    assert cluster.deployments()[f"hello-worker-{v1}"]["spec"]["replicas"] == 0
    assert cluster.condition()[:2] == ("True", "Complete")
    clock.advance(SUNSET)
    await cluster.tick_until("v1 sunset", lambda: v1 not in cluster.versions())
    assert set(cluster.deployments()) == {f"hello-worker-{v2}"}
    assert ObjectKey("v1", "ConfigMap", "ns", f"hello-runtime-{v1}") not in kube.objects
    assert any(v1 in m for m in cluster.events("VersionSunset"))
    print(
        f"\nrollout: apply -> new version current {rollout_seconds:.1f}s (its worker ready -> current "
        f"{promote_seconds:.1f}s); drain: last run released -> old version drained {drain_seconds:.1f}s"
    )


async def test_a_change_old_runs_cannot_replay_is_blocked_and_the_old_version_stays_current(
    kube: FakeKube,
    clock: Clock,
    dev_server: DevServer,
    start_worker: Any,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    queue = f"gated-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(kube, clock, dev_server, start_worker, tmp_path)
    cluster.release.touch()
    await cluster.apply(_agent(queue, "Be v1.", behavior="AutoUpgrade", replayHistories=5))
    [v1] = cluster.versions()
    old = await cluster.serve(v1)
    await cluster.tick_until("v1 current", lambda: cluster.condition()[1] == "Complete")
    done = await _start(temporal_client, queue, "a run that used the tool")
    assert (await done.result()).output == "done: gated:x"

    # The new config drops the toolset that run used: replaying it would issue other commands.
    await cluster.apply(_agent(queue, "Be v1.", toolset=False, behavior="AutoUpgrade", replayHistories=5))
    [v2] = set(cluster.versions()) - {v1}
    await cluster.serve(v2)
    await cluster.tick_until("blocked", lambda: cluster.condition()[1] == "Blocked")
    status, _, message = cluster.condition()
    assert status == "False"
    assert done.id in message and "ctivity" in message, message
    [event] = cluster.events("ReplayGateRefused")
    assert done.id in event
    warnings = [e for e in kube.events if e["reason"] == "ReplayGateRefused"]
    assert warnings[0]["type"] == "Warning"
    assert cluster.status()["currentVersion"] == v1
    assert cluster.versions()[v2]["replayGate"] == "Refused"
    state = await describe_deployment(temporal_client, queue.replace(".", "/"))
    assert state is not None and state.current == v1

    # The old version keeps serving new runs; another tick announces nothing new.
    later = await _start(temporal_client, queue, "after the refusal")
    assert (await later.result()).output == "done: gated:x"
    assert versioned_agents.received(cluster.model_log)[-1]["pid"] == old.pid
    await cluster.tick_until("still blocked", lambda: cluster.condition()[1] == "Blocked")
    assert len(cluster.events("ReplayGateRefused")) == 1


def _approving(queue: str, instructions: str, **versioning: Any) -> dict[str, Any]:
    """An agent whose `delete_file` calls wait for a person (tests/runtime/approval_agents.py)."""
    manifest = agent_manifest(temporal={"taskQueue": queue})
    manifest["spec"]["agent"] = {
        "name": "hello",
        "model": "python:approval_agents:deleting",
        "instructions": instructions,
        "toolsets": [{"id": "files", "entrypoint": "approval_agents:files"}],
    }
    manifest["spec"]["approvals"] = {"tools": [{"toolset": "files", "tool": "delete_*"}]}
    manifest["spec"]["versioning"] = {"enabled": True, "sunsetDelay": f"{SUNSET:g}s", **versioning}
    return manifest


async def test_a_progressive_rollout_ramps_then_promotes_and_a_run_awaiting_approval_keeps_its_version(
    kube: FakeKube,
    clock: Clock,
    dev_server: DevServer,
    start_worker: Any,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    clock.now = datetime.now(UTC)  # the ramp's start comes from Temporal's clock
    queue = f"ramped-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(kube, clock, dev_server, start_worker, tmp_path)
    steps = [{"rampPercentage": 25, "pause": "30s"}]
    await cluster.apply(_approving(queue, "Be v1.", strategy="Progressive", steps=steps))
    [v1] = cluster.versions()
    await cluster.serve(v1)
    await cluster.tick_until("v1 current", lambda: cluster.condition()[1] == "Complete")
    waiting = await _start(temporal_client, queue, "tidy up")
    for _ in range(300):
        if await pending_calls(waiting):
            break
        await asyncio.sleep(0.1)
    assert await pending_calls(waiting), "the run did not reach its approval"

    await cluster.apply(_approving(queue, "Be v2.", strategy="Progressive", steps=steps))
    [v2] = set(cluster.versions()) - {v1}
    await cluster.serve(v2)
    await cluster.tick_until("v2 ramping", lambda: cluster.versions()[v2]["role"] == "ramping")
    assert any(f"25% of new runs go to version {v2}" in m for m in cluster.events("VersionRamping"))
    state = await describe_deployment(temporal_client, queue)
    assert state is not None and (state.current, state.ramping, state.ramp_percentage) == (v1, v2, 25)
    await cluster.tick_until("step 1's pause", lambda: "step 1 of 1" in cluster.condition()[2])
    assert cluster.status()["currentVersion"] == v1

    clock.advance(30)
    await cluster.tick_until("v2 current", lambda: cluster.status().get("currentVersion") == v2)
    state = await describe_deployment(temporal_client, queue)
    assert state is not None and (state.current, state.ramping) == (v2, None)

    # The run awaiting approval is pinned to v1: v1 keeps its worker past the sunset delay.
    clock.advance(SUNSET)
    await cluster.tick_until("v1 draining", lambda: cluster.versions()[v1]["role"] == "draining")
    assert cluster.versions()[v1]["pinnedOpenRuns"] == 1
    assert cluster.deployments()[f"hello-worker-{v1}"]["spec"]["replicas"] == 1
    await decide(waiting, Decisions(all="approve", decided_by="test"))
    assert (await waiting.result()).output == "model was told: deleted a.txt"
    await cluster.tick_until("v1 drained", lambda: cluster.versions()[v1]["role"] == "drained")


async def test_without_temporal_the_new_version_is_created_and_nothing_moves(
    kube: FakeKube, clock: Clock
) -> None:
    async def unreachable(params: Any) -> Client:
        raise ConnectionRefusedError("connection refused")

    ops = make_operator(kube, clock=clock, temporal=TemporalPool(timeout=1, connect=unreachable))
    kube.put(_agent("q", "Be v1."))
    await durableagent.reconcile(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    [rollout] = [c for c in status["conditions"] if c["type"] == "Rollout"]
    assert (rollout["status"], rollout["reason"]) == ("Unknown", "TemporalUnreachable")
    assert "connection refused" in rollout["message"]
    assert status.get("currentVersion") is None
    [deployment] = [k.name for k in kube.objects if k.kind == "Deployment"]
    assert deployment.startswith("hello-worker-"), "the spec's version is applied without Temporal"


async def test_rollback_annotation_holds_the_previous_version_until_rolled_forward_and_sunset_leaves_temporal(
    kube: FakeKube, clock: Clock, short_ttl_server: DevServer, start_worker: Any, tmp_path: Path
) -> None:
    queue = f"rollback-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(short_ttl_server.address, namespace=short_ttl_server.namespace)
    cluster = Cluster(kube, clock, short_ttl_server, start_worker, tmp_path)
    await cluster.apply(_agent(queue, "Be v1.", toolset=False))
    [v1] = cluster.versions()
    await cluster.serve(v1)
    await cluster.tick_until("v1 current", lambda: cluster.status().get("currentVersion") == v1)
    await cluster.apply(_agent(queue, "Be v2.", toolset=False))
    [v2] = set(cluster.versions()) - {v1}
    await cluster.serve(v2)
    await cluster.tick_until("v2 current", lambda: cluster.status().get("currentVersion") == v2)
    assert cluster.status()["previousVersion"] == v1

    # kubectl annotate durableagent hello durable-agents.dev/rollback=previous (kopf runs reconcile)
    annotated = time.monotonic()
    await cluster.annotate("previous")
    assert cluster.status()["currentVersion"] == v1, cluster.status()
    rollback_seconds = time.monotonic() - annotated
    assert cluster.status()["rollback"] == {"buildId": v1, "specBuildId": v2}
    assert "durable-agents.dev/rollback" not in (
        kube.objects[agent_key()]["metadata"].get("annotations") or {}
    )
    [rolled] = cluster.events("VersionRolledBack")
    assert f"version {v1} becomes current at once" in rolled
    assert any("rollback asked for by annotation" in m for m in cluster.events("VersionPromoted"))
    state = await describe_deployment(client, queue)
    assert state is not None and state.current == v1

    # The hold outlives the annotation: the spec's version drains instead of being promoted again.
    await cluster.tick_until("v2 drained", lambda: cluster.versions()[v2]["role"] == "drained")
    assert cluster.status()["currentVersion"] == v1
    await cluster.annotate("0123456789abcdef")
    [refused] = cluster.events("RollbackRefused")
    assert "unknown build id '0123456789abcdef'" in refused
    assert [e["type"] for e in kube.events if e["reason"] == "RollbackRefused"] == ["Warning"]

    # Sunset: the Deployment goes, then (once the server no longer lists its pollers) the version in Temporal.
    clock.advance(SUNSET)
    await cluster.tick_until("v2 sunset", lambda: v2 not in cluster.versions())
    assert set(cluster.deployments()) == {f"hello-worker-{v1}"}
    stopped = time.monotonic()
    await asyncio.to_thread(cluster.workers[v2].stop)  # the kubelet stops the deleted Deployment's pod
    await cluster.tick_until(
        "v2 deleted in Temporal", lambda: v2 in (cluster.status().get("retiredVersions") or [])
    )
    delete_seconds = time.monotonic() - stopped
    state = await describe_deployment(client, queue)
    assert state is not None and [v.build_id for v in state.versions] == [v1]
    assert not cluster.status().get("retiringVersions")

    # `previous` is now the spec's own version: the hold ends and the spec's version is created again.
    clock.advance(PER_OBJECT_REFILL * PER_OBJECT_BURST)  # the agent's Event budget refills
    await cluster.annotate("previous")
    assert (
        f"{v2} is the spec's version; the rollback held so far ends"
        in cluster.events("VersionRolledBack")[-1]
    )
    assert not cluster.status().get("rollback")
    assert set(cluster.deployments()) == {f"hello-worker-{v1}", f"hello-worker-{v2}"}
    assert (cluster.status()["currentVersion"], cluster.versions()[v2]["role"]) == (v1, "target")
    print(
        f"\nrollback: annotation -> previous version current {rollback_seconds:.1f}s; sunset version "
        f"deleted in Temporal {delete_seconds:.1f}s after its worker stopped (poller TTL "
        f"{short_poller_ttl.POLLER_TTL})"
    )
