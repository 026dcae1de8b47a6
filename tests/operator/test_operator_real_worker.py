"""The operator and a real `durable-agents worker` process together: the worker serves the runtime config
the operator rendered into the ConfigMap, the operator's health read sees it polling, and an AgentRun
runs on it to the end."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from operator_support import (
    API,
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    make_real_operator,
    roll_out,
)

from durable_agents_api.config import RuntimeConfig
from durable_agents_operator.handlers import agentrun, durableagent
from durable_agents_operator.object_identity import ObjectKey

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]


async def run_to_end(ops: Any, kube: FakeKube, run: dict[str, Any], *, polls: int) -> dict[str, Any]:
    """Start the AgentRun and poll it (every 0.1 s, at most `polls` times) until it leaves Running."""
    key = ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"])
    await agentrun.start(ops, run)
    for _ in range(polls):
        await agentrun.poll(ops, kube.body(key))
        if kube.objects[key]["status"]["phase"] != "Running":
            break
        await asyncio.sleep(0.1)
    return kube.objects[key]["status"]


async def test_a_worker_on_the_rendered_config_polls_reports_healthy_and_completes_a_run(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any
) -> None:
    queue = f"hello-{uuid.uuid4().hex[:8]}"
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    manifest = agent_manifest(temporal={"taskQueue": queue})
    manifest["spec"]["agent"]["toolsets"] = [
        {"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}
    ]
    await durableagent.reconcile(ops, kube.put(manifest))

    rendered = kube.objects[ObjectKey("v1", "ConfigMap", "ns", "hello-runtime")]["data"]["runtime.json"]
    worker = await asyncio.to_thread(start_worker, RuntimeConfig.model_validate_json(rendered))

    roll_out(kube)
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    assert status["workers"] == 1
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Ready"] == ("True", "AllWorkersPolling")

    run = kube.put(
        {
            "apiVersion": API,
            "kind": "AgentRun",
            "metadata": {"name": "paris", "namespace": "ns", "uid": str(uuid.uuid4())},
            "spec": {"agentRef": {"name": "hello"}, "prompt": "What is the weather in Paris?"},
        }
    )
    finished = await run_to_end(ops, kube, run, polls=200)
    assert finished["phase"] == "Succeeded", f"{finished}\n{worker.tail()}"
    assert set(json.loads(finished["output"])) == {"get_weather", "get_local_time"}
    assert finished["usage"]["requests"] == 2
    assert finished["usage"]["toolCalls"] == 2


async def test_an_agent_run_calling_a_sub_agent_counts_its_child_and_sums_the_usage(
    kube: FakeKube, clock: Clock, dev_server: DevServer, start_worker: Any
) -> None:
    suffix = uuid.uuid4().hex[:8]
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    researcher = agent_manifest("researcher", temporal={"taskQueue": f"researcher-{suffix}"})
    researcher["spec"]["agent"].update(model="python:durable_agents_runtime.demo:model")
    researcher["spec"]["agent"]["toolsets"] = [
        {"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}
    ]
    lead = agent_manifest("lead", temporal={"taskQueue": f"lead-{suffix}"})
    lead["spec"]["agent"]["subAgents"] = [
        {
            "name": "ask_researcher",
            "agentRef": "researcher",
            "description": "Ask the researcher about a city.",
            "taskQueue": f"researcher-{suffix}",
        }
    ]
    workers = []
    for manifest in (researcher, lead):
        await durableagent.reconcile(ops, kube.put(manifest))
        name = manifest["metadata"]["name"]
        rendered = kube.objects[ObjectKey("v1", "ConfigMap", "ns", f"{name}-runtime")]["data"]["runtime.json"]
        workers.append(await asyncio.to_thread(start_worker, RuntimeConfig.model_validate_json(rendered)))

    run = kube.put(
        {
            "apiVersion": API,
            "kind": "AgentRun",
            "metadata": {"name": "delegated", "namespace": "ns", "uid": str(uuid.uuid4())},
            "spec": {"agentRef": {"name": "lead"}, "prompt": "Weather in Paris?"},
        }
    )
    finished = await run_to_end(ops, kube, run, polls=600)
    assert finished["phase"] == "Succeeded", f"{finished}\n" + "\n".join(w.tail() for w in workers)
    assert finished["children"] == 1
    (child,) = finished["childWorkflowIds"]
    assert child.startswith(f"{finished['workflowId']}/call-"), finished
    # The lead's own two requests (call the tool, answer) plus the researcher's two (tools, answer).
    assert finished["usage"]["requests"] == 4, finished["usage"]
