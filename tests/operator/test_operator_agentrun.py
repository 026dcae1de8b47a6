"""AgentRun handlers against a real Temporal dev server and a real worker: start once, follow the
workflow to its end, cancel on deletion, and stay idempotent across operator restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kopf
import pytest
from operator_support import API, Clock, DevServer, FakeKube, agent_manifest, make_operator
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput, RunUsageSummary
from durable_agents_operator.handlers import agentrun
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.temporal_clients import TemporalPool

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]


@workflow.defn(name=WORKFLOW_NAME)
class ScriptedAgentRun:
    """Stands in for the agent workflow: the prompt says what to do."""

    @workflow.run
    async def run(self, request: RunInput) -> RunOutput:
        if request.prompt == "fail":
            raise ApplicationError("the model refused: rephrase the prompt", non_retryable=True)
        if request.prompt == "wait":
            await workflow.wait_condition(lambda: False)
        text = "é" * 3000 if request.prompt == "big" else f"echo: {request.prompt} ({request.model})"
        usage = RunUsageSummary(requests=2, input_tokens=30, output_tokens=12, tool_calls=1)
        return RunOutput(output=text, output_text=text, usage=usage)


@pytest.fixture
async def client(dev_server: DevServer) -> Client:
    return await Client.connect(
        dev_server.address, namespace=dev_server.namespace, plugins=[PydanticAIPlugin()]
    )


@asynccontextmanager
async def worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ScriptedAgentRun],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield


def operator(kube: FakeKube, clock: Clock, dev_server: DevServer, **overrides: Any) -> Operator:
    """A freshly started operator: new Temporal clients, empty caches (as after a restart)."""
    timeout = overrides.pop("temporal_timeout", 5.0)
    return make_operator(
        kube,
        clock=clock,
        temporal=TemporalPool(timeout=timeout),
        temporal_address=dev_server.address,
        temporal_timeout=timeout,
        **overrides,
    )


def setup(kube: FakeKube, prompt: str, **spec: Any) -> tuple[ObjectKey, str]:
    """An agent on its own task queue and an AgentRun of it; returns the run's key and the queue."""
    queue = f"runs-{uuid.uuid4().hex[:8]}"
    kube.put(agent_manifest(temporal={"taskQueue": queue}))
    run = kube.put(
        {
            "apiVersion": API,
            "kind": "AgentRun",
            "metadata": {"name": "run-1", "namespace": "ns", "uid": str(uuid.uuid4())},
            "spec": {"agentRef": {"name": "hello"}, "prompt": prompt, **spec},
        }
    )
    return ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"]), queue


def status(kube: FakeKube, key: ObjectKey) -> dict[str, Any]:
    return kube.objects[key].get("status") or {}


async def poll_until_finished(ops: Operator, kube: FakeKube, key: ObjectKey) -> dict[str, Any]:
    for _ in range(100):
        await agentrun.poll(ops, kube.body(key))
        if status(kube, key)["phase"] != "Running":
            return status(kube, key)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run did not finish: {status(kube, key)}")


async def test_a_run_starts_its_workflow_and_records_output_and_usage(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "hello there", model="test")
    ops = operator(kube, clock, dev_server)
    async with worker(client, queue):
        await agentrun.start(ops, kube.body(key))
        started = status(kube, key)
        assert started["phase"] == "Running"
        assert started["workflowId"] == f"agentrun-{kube.objects[key]['metadata']['uid']}"
        assert started["taskQueue"] == queue
        finished = await poll_until_finished(ops, kube, key)
    assert finished["phase"] == "Succeeded"
    assert finished["output"] == "echo: hello there (test)"
    assert finished["outputSize"] == len("echo: hello there (test)")
    assert finished["outputTruncated"] is False
    assert finished["usage"] == {"requests": 2, "inputTokens": 30, "outputTokens": 12, "toolCalls": 1}
    assert finished["completionTime"].endswith("Z")
    assert [e["reason"] for e in kube.events] == ["Started", "Succeeded"]


async def test_a_large_output_is_truncated_on_a_character_boundary_with_its_full_size(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "big")
    ops = operator(kube, clock, dev_server)
    async with worker(client, queue):
        await agentrun.start(ops, kube.body(key))
        finished = await poll_until_finished(ops, kube, key)
    assert finished["outputSize"] == 6000
    assert finished["outputTruncated"] is True
    assert finished["output"] == "é" * 2048
    assert len(finished["output"].encode()) <= 4096


async def test_a_failed_workflow_fails_the_run_with_its_message(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "fail")
    ops = operator(kube, clock, dev_server)
    async with worker(client, queue):
        await agentrun.start(ops, kube.body(key))
        finished = await poll_until_finished(ops, kube, key)
    assert finished["phase"] == "Failed"
    assert "the model refused: rephrase the prompt" in finished["message"]
    assert kube.events[-1]["type"] == "Warning"


async def test_the_run_timeout_bounds_the_workflow(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "wait", timeout="1s")
    ops = operator(kube, clock, dev_server)
    async with worker(client, queue):
        await agentrun.start(ops, kube.body(key))
        finished = await poll_until_finished(ops, kube, key)
    assert finished["phase"] == "Failed"
    assert "timed out" in finished["message"]


async def test_starting_the_same_run_twice_starts_one_workflow(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, _ = setup(kube, "wait")
    body = kube.body(key)  # as seen before the first start wrote any status
    await agentrun.start(operator(kube, clock, dev_server), body)
    workflow_id = status(kube, key)["workflowId"]
    first = await client.get_workflow_handle(workflow_id).describe()
    # The operator restarts after starting the workflow but before its status write landed.
    await agentrun.start(operator(kube, clock, dev_server), body)
    second = await client.get_workflow_handle(workflow_id).describe()
    assert second.run_id == first.run_id
    assert second.status == WorkflowExecutionStatus.RUNNING
    await client.get_workflow_handle(workflow_id).terminate("test cleanup")


async def test_starting_a_run_whose_workflow_already_finished_does_not_run_it_again(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "once")
    body = kube.body(key)
    async with worker(client, queue):
        await agentrun.start(operator(kube, clock, dev_server), body)
        workflow_id = status(kube, key)["workflowId"]
        await client.get_workflow_handle(workflow_id).result()
        first = await client.get_workflow_handle(workflow_id).describe()
        await agentrun.start(operator(kube, clock, dev_server), body)
    second = await client.get_workflow_handle(workflow_id).describe()
    assert (second.run_id, second.status) == (first.run_id, WorkflowExecutionStatus.COMPLETED)
    assert status(kube, key)["phase"] == "Running"  # the poll timer will read the result
    finished = await poll_until_finished(operator(kube, clock, dev_server), kube, key)
    assert finished["phase"] == "Succeeded"


async def test_deleting_a_running_run_cancels_its_workflow(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    key, queue = setup(kube, "wait")
    ops = operator(kube, clock, dev_server)
    async with worker(client, queue):
        await agentrun.start(ops, kube.body(key))
        workflow_id = status(kube, key)["workflowId"]
        await agentrun.cancel(ops, kube.body(key), retry=0)
        for _ in range(50):
            description = await client.get_workflow_handle(workflow_id).describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
    assert description.status == WorkflowExecutionStatus.CANCELED


async def test_deleting_a_finished_or_never_started_run_needs_no_temporal(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    key, _ = setup(kube, "hi")
    ops = operator(kube, clock, dev_server)
    await agentrun.cancel(ops, kube.body(key), retry=0)  # no workflow with that id: nothing to cancel
    kube.set_status(key, {"phase": "Succeeded"})
    await agentrun.cancel(ops, kube.body(key), retry=0)


async def test_a_run_of_a_missing_agent_stays_pending_and_is_retried(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    key, _ = setup(kube, "hi")
    del kube.objects[ObjectKey(API, "DurableAgent", "ns", "hello")]
    with pytest.raises(kopf.TemporaryError, match="DurableAgent 'hello' does not exist") as raised:
        await agentrun.start(operator(kube, clock, dev_server), kube.body(key))
    assert raised.value.delay == 15
    assert status(kube, key)["phase"] == "Pending"
    assert "create it or fix spec.agentRef" in status(kube, key)["message"]


async def test_an_unreachable_temporal_keeps_the_run_pending_within_the_timeout(
    kube: FakeKube, clock: Clock
) -> None:
    key, _ = setup(kube, "hi")
    closed = DevServer("127.0.0.1:1")
    ops = operator(kube, clock, closed, temporal_timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(kopf.TemporaryError):
        await agentrun.start(ops, kube.body(key))
    assert loop.time() - started < 5
    assert status(kube, key)["phase"] == "Pending"
    assert "could not connect to Temporal at 127.0.0.1:1" in status(kube, key)["message"]


async def test_an_invalid_run_fails_at_once_with_the_field(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    key, _ = setup(kube, "hi")
    kube.objects[key]["spec"]["timeout"] = "soon"
    with pytest.raises(kopf.PermanentError, match=r"spec\.timeout"):
        await agentrun.start(operator(kube, clock, dev_server), kube.body(key))
    assert status(kube, key)["phase"] == "Failed"
