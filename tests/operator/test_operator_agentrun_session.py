"""AgentRuns with `spec.session` against a real Temporal dev server and the real session workflow: each run
is the next turn of the conversation, its status holds that turn's reply, starting it twice is one turn,
and deleting it leaves the session alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kopf
import pytest
from operator_support import API, Clock, DevServer, FakeKube, agent_manifest
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client, WorkflowExecutionStatus
from test_operator_agentrun import operator, poll_until_finished, status

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import session_workflow_id
from durable_agents_operator.handlers import agentrun
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_runtime.worker import create_worker

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]

AGENT = "talker"
SEEN: list[list[str]] = []
"""What the model was shown, one list of prompts per model request (the worker runs in this process)."""


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    prompts = [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart)
    ]
    SEEN.append(prompts)
    return ModelResponse(parts=[TextPart(f"turn answer to {prompts[-1]!r}, having seen {len(prompts)}")])


talker = Agent(FunctionModel(_respond), name=AGENT, capabilities=[TemporalDurability()])


@pytest.fixture
async def client(dev_server: DevServer) -> Client:
    return await Client.connect(
        dev_server.address, namespace=dev_server.namespace, plugins=[PydanticAIPlugin()]
    )


@asynccontextmanager
async def session_worker(client: Client, dev_server: DevServer, queue: str) -> AsyncIterator[None]:
    """The real worker (run and session workflows, the agent's activities) for the test agent."""
    config = RuntimeConfig.model_validate(
        {
            "agent": {"name": AGENT, "model": "test"},
            "temporal": {"address": dev_server.address, "taskQueue": queue},
        }
    )
    async with create_worker(client, config, talker):
        yield


def agent_and_queue(kube: FakeKube) -> str:
    queue = f"sessions-{uuid.uuid4().hex[:8]}"
    manifest = agent_manifest(temporal={"taskQueue": queue})
    manifest["spec"]["agent"]["name"] = AGENT
    kube.put(manifest)
    return queue


def turn(kube: FakeKube, name: str, prompt: str, **spec: Any) -> ObjectKey:
    run = kube.put(
        {
            "apiVersion": API,
            "kind": "AgentRun",
            "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4())},
            "spec": {"agentRef": {"name": "hello"}, "prompt": prompt, **spec},
        }
    )
    return ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"])


async def test_runs_naming_a_session_are_its_turns_and_hold_each_reply(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    queue = agent_and_queue(kube)
    session = f"kube-{uuid.uuid4().hex[:8]}"
    ops = operator(kube, clock, dev_server)
    first = turn(kube, "first", f"I am Ada ({session})", session=session)
    second = turn(kube, "second", "who am I?", session=session)

    async with session_worker(client, dev_server, queue):
        await agentrun.start(ops, kube.body(first))
        running = status(kube, first)
        one = await poll_until_finished(ops, kube, first)
        await agentrun.start(ops, kube.body(second))
        two = await poll_until_finished(ops, kube, second)

    assert running["phase"] == "Running"
    assert running["workflowId"] == session_workflow_id(queue, session)
    assert running["workflowRunId"]
    assert one["phase"] == "Succeeded" and one["turn"] == 1
    assert one["output"] == f"turn answer to 'I am Ada ({session})', having seen 1"
    assert two["phase"] == "Succeeded" and two["turn"] == 2
    assert two["output"] == "turn answer to 'who am I?', having seen 2"
    assert SEEN[-1] == [f"I am Ada ({session})", "who am I?"]
    assert two["usage"]["requests"] == 1
    assert [e["reason"] for e in kube.events] == ["Started", "Succeeded", "Started", "Succeeded"]


async def test_starting_a_turn_twice_answers_it_once(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    queue = agent_and_queue(kube)
    session = f"twice-{uuid.uuid4().hex[:8]}"
    key = turn(kube, "again", f"count me once ({session})", session=session)

    async with session_worker(client, dev_server, queue):
        await agentrun.start(operator(kube, clock, dev_server), kube.body(key))
        # An operator restart before the Running status was written: the same start again.
        kube.objects[key].pop("status")
        restarted = operator(kube, clock, dev_server)
        await agentrun.start(restarted, kube.body(key))
        finished = await poll_until_finished(restarted, kube, key)

    assert finished["phase"] == "Succeeded" and finished["turn"] == 1
    assert [prompts for prompts in SEEN if prompts[0] == f"count me once ({session})"] == [
        [f"count me once ({session})"]
    ]


async def test_deleting_a_turn_leaves_the_session_running(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    queue = agent_and_queue(kube)
    session = f"keep-{uuid.uuid4().hex[:8]}"
    key = turn(kube, "kept", "hello", session=session)
    ops = operator(kube, clock, dev_server)

    async with session_worker(client, dev_server, queue):
        await agentrun.start(ops, kube.body(key))
        await agentrun.cancel(ops, kube.body(key), retry=0)
        description = await client.get_workflow_handle(session_workflow_id(queue, session)).describe()

    assert description.status == WorkflowExecutionStatus.RUNNING


async def test_a_turn_with_a_timeout_fails_at_once_naming_the_field(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    agent_and_queue(kube)
    key = turn(kube, "timed", "hello", session="s1", timeout="1m")

    with pytest.raises(kopf.PermanentError, match="timeout"):
        await agentrun.start(operator(kube, clock, dev_server), kube.body(key))

    failed = status(kube, key)
    assert failed["phase"] == "Failed"
    assert "spec.timeout: a session turn has no timeout of its own" in failed["message"]
