"""`spec.autoscaling` through the health timer: scale up on a real backlog, back down after the delay, keep
the count when Temporal is down, and keep it across a reconcile of a spec change."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import kopf
import pytest
from operator_support import (
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    deployment_key,
    make_operator,
    make_real_operator,
    roll_out,
)
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from durable_agents_operator.handlers import durableagent
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_runtime.health import AgentHealth, read_health

pytestmark = pytest.mark.anyio

PDB = ObjectKey("policy/v1", "PodDisruptionBudget", "ns", "hello-worker")


@workflow.defn(name="AutoscalingProbe")
class Probe:
    """Finishes at once: enough to put a task on the queue and take it off again."""

    @workflow.run
    async def run(self) -> str:
        return "done"


class ScriptedBacklog:
    """A health reader returning a set backlog and run count, or an unreachable Temporal."""

    def __init__(self) -> None:
        self.backlog = 0
        self.running = 0
        self.down: str | None = None

    async def __call__(
        self, client: Client, task_queues: Sequence[str], previous: Mapping[str, AgentHealth]
    ) -> Mapping[str, AgentHealth]:
        if self.down is not None:
            return {q: AgentHealth.unreachable(q, self.down) for q in task_queues}
        return {q: AgentHealth(q, 1, self.backlog, 1.0, self.running, 0, 0, None) for q in task_queues}


def replicas(kube: FakeKube) -> int:
    return kube.objects[deployment_key()]["spec"]["replicas"]


def autoscaling_status(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[agent_key()]["status"]["autoscaling"]


def scaled_events(kube: FakeKube) -> list[str]:
    return [e["message"] for e in kube.events if e["reason"] in ("ScaledUp", "ScaledDown")]


async def health_until(client: Client, queue: str, done: Any, timeout: float = 20) -> AgentHealth:
    """Read the queue until `done(health)` holds: backlog and visibility counts settle a moment late."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        health = (await read_health(client, [queue], live_within=timedelta(seconds=75)))[queue]
        if done(health) or asyncio.get_running_loop().time() > deadline:
            return health
        await asyncio.sleep(0.2)


async def test_the_timer_scales_workers_up_on_a_backlog_and_down_after_the_delay(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    queue = f"autoscale-{uuid.uuid4().hex[:8]}"
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    autoscaling = {"enabled": True, "minReplicas": 0, "maxReplicas": 5, "targetBacklogPerWorker": 2}
    await durableagent.reconcile(
        ops, kube.put(agent_manifest(replicas=1, temporal={"taskQueue": queue}, autoscaling=autoscaling))
    )
    assert replicas(kube) == 0  # minReplicas until the first reading; spec.replicas is ignored
    roll_out(kube)

    client = await Client.connect(dev_server.address, namespace=dev_server.namespace)
    handles = [
        await client.start_workflow(Probe.run, id=f"{queue}-{index}", task_queue=queue) for index in range(6)
    ]
    queued = await health_until(client, queue, lambda h: h.running == 6 and h.backlog_count >= 5)
    assert queued.running == 6, queued

    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    backlog = status["backlog"]["count"]
    scaled_to = math.ceil(backlog / 2)
    assert scaled_to >= 3
    assert replicas(kube) == scaled_to
    assert PDB in kube.objects  # more than one worker: the disruption budget comes with the scale-up
    assert status["autoscaling"]["reason"] == "ScaledUp"
    assert status["autoscaling"]["lastScaleTime"] == "2026-11-26T12:00:10Z"
    assert scaled_events(kube) == [
        f"Scaled workers from 0 to {scaled_to}: backlog {backlog}, target 2 per worker, 6 running"
    ]
    progressing = {c["type"]: c for c in status["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("True", "RollingOut")

    roll_out(kube)
    async with Worker(
        client, task_queue=queue, workflows=[Probe], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        assert [await h.result() for h in handles] == ["done"] * 6
    drained = await health_until(client, queue, lambda h: h.running == 0 and h.backlog_count == 0)
    assert (drained.running, drained.backlog_count) == (0, 0)

    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert replicas(kube) == scaled_to  # within scaleDownDelay (2 min) of the scale-up
    assert autoscaling_status(kube)["reason"] == "ScaleDownDelayed"
    assert autoscaling_status(kube)["desiredReplicas"] == 0
    progressing = {c["type"]: c for c in kube.objects[agent_key()]["status"]["conditions"]}["Progressing"]
    assert (progressing["reason"], "spec.replicas is ignored" in progressing["message"]) == (
        "Autoscaling",
        True,
    )

    clock.advance(110)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert replicas(kube) == 0
    assert PDB not in kube.objects
    assert autoscaling_status(kube)["reason"] == "ScaledDown"
    assert scaled_events(kube)[-1] == f"Scaled workers from {scaled_to} to 0: backlog 0, target 2 per worker"


async def test_temporal_down_keeps_the_workers_and_a_spec_change_keeps_the_autoscaled_count(
    kube: FakeKube, clock: Clock
) -> None:
    reader = ScriptedBacklog()
    ops = make_operator(kube, clock=clock, reader=reader)
    autoscaling = {"enabled": True, "minReplicas": 1, "targetBacklogPerWorker": 10}
    await durableagent.reconcile(ops, kube.put(agent_manifest(autoscaling=autoscaling)))
    roll_out(kube)
    reader.backlog, reader.running = 35, 4
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert replicas(kube) == 4
    roll_out(kube)

    reader.down = "connection refused"
    clock.advance(600)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert replicas(kube) == 4
    assert autoscaling_status(kube)["reason"] == "TemporalUnreachable"

    # A spec change (here `kubectl scale`, which autoscaling overrides) rebuilds the Deployment from the
    # recorded decision, not from spec.replicas.
    body = kube.edit(agent_key(), lambda o: o["spec"].update(replicas=1))
    await durableagent.reconcile(ops, body)
    assert replicas(kube) == 4

    reader.down = None
    body = kube.edit(agent_key(), lambda o: o["spec"]["autoscaling"].update(enabled=False))
    await durableagent.reconcile(ops, body)
    assert replicas(kube) == 1
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert "autoscaling" not in kube.objects[agent_key()]["status"]


async def test_a_spec_the_builders_refuse_keeps_the_recorded_scale_decision(
    kube: FakeKube, clock: Clock
) -> None:
    reader = ScriptedBacklog()
    ops = make_operator(kube, clock=clock, reader=reader)
    autoscaling = {"enabled": True, "minReplicas": 1, "targetBacklogPerWorker": 10}
    await durableagent.reconcile(ops, kube.put(agent_manifest(autoscaling=autoscaling)))
    roll_out(kube)
    reader.backlog = 35
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert replicas(kube) == 4

    body = kube.edit(agent_key(), lambda o: o["spec"].update(template={"env": [{"value": "x"}]}))
    with pytest.raises(kopf.PermanentError):
        await durableagent.reconcile(ops, body)
    clock.advance(600)
    await durableagent.check_health(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Ready"] == "InvalidSpec"
    assert (status["autoscaling"]["replicas"], status["autoscaling"]["reason"]) == (4, "NotChecked")
    assert replicas(kube) == 4
