"""Provider errors through a real worker process and a local OpenAI-compatible server.

The worker runs `durable-agents worker` against the session's Temporal dev server; its model is
`openai-chat:<name>` with `model.baseUrl` pointing at `fake_openai`. Temporal's retry policy from the
manifest (`activities.model.retry`) must own retries: the provider SDK must not retry on its own, so the
fake server sees exactly one request per activity attempt.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import fake_openai
import pytest
from fake_openai import FakeOpenAI, RecordedRequest
from temporalio.client import Client, WorkflowFailureError

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.demo import get_weather

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

API_KEY = "sk-fake-4f1c9e0b7d2a4e63b5c8"
MAX_ATTEMPTS = 4
AGENT_NAME = "provider_agent"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_script(fake: FakeOpenAI) -> None:
    fake.replace([])


@pytest.fixture(scope="module")
def config(temporal_dev_server: Any, fake: FakeOpenAI) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": AGENT_NAME,
                "model": "openai-chat:fake-model",
                "instructions": "Answer briefly.",
                "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
            },
            "model": {"baseUrl": fake.base_url},
            "temporal": {
                "address": temporal_dev_server.address,
                "namespace": temporal_dev_server.namespace,
                "taskQueue": f"providers-{uuid.uuid4().hex[:8]}",
            },
            "activities": {
                "model": {
                    "startToCloseTimeout": "10s",
                    "retry": {
                        "initialInterval": "100ms",
                        "backoffCoefficient": 1.0,
                        "maximumAttempts": MAX_ATTEMPTS,
                    },
                }
            },
        }
    )


@pytest.fixture(scope="module")
def worker(start_module_worker: Any, config: RuntimeConfig) -> Any:
    """One worker for the module: each test scripts the fake anew and runs its own workflow."""
    return start_module_worker(config, OPENAI_API_KEY=API_KEY)


async def run_agent(client: Client, config: RuntimeConfig, prompt: str) -> RunOutput:
    return await client.execute_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=prompt),
        id=f"providers-{uuid.uuid4()}",
        task_queue=config.temporal.task_queue,
        result_type=RunOutput,
    )


def run_failure(error: WorkflowFailureError) -> str:
    """The reason the workflow failed: the message `status.lastFailure` and `durable-agents run` lead with."""
    assert error.cause is not None
    return error.cause.message


def assert_key_used_and_never_logged(fake: FakeOpenAI, worker: Any) -> None:
    assert fake.completion_requests, "the worker never reached the fake provider"
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}" for r in fake.completion_requests)
    assert API_KEY not in worker.output.read_text()


async def test_server_errors_are_retried_by_the_manifests_policy_until_success(
    temporal_client: Client, config: RuntimeConfig, worker: Any, fake: FakeOpenAI
) -> None:
    fake.add(
        fake_openai.error(500, "upstream exploded", type_="server_error"),
        fake_openai.error(500, "upstream exploded again", type_="server_error"),
        fake_openai.text("Third time lucky."),
    )

    result = await run_agent(temporal_client, config, "Say something.")

    assert result.output == "Third time lucky."
    assert len(fake.completion_requests) == 3
    assert_key_used_and_never_logged(fake, worker)


async def test_bad_request_fails_the_run_at_once_with_the_providers_message(
    temporal_client: Client, config: RuntimeConfig, worker: Any, fake: FakeOpenAI
) -> None:
    fake.add(fake_openai.error(400, "Invalid value for 'temperature': expected a number <= 2"))

    with pytest.raises(WorkflowFailureError) as info:
        await run_agent(temporal_client, config, "Say something.")

    reason = run_failure(info.value)
    assert len(fake.completion_requests) == 1
    assert "rejected" in reason and "400" in reason
    assert "Invalid value for 'temperature'" in reason
    assert_key_used_and_never_logged(fake, worker)


async def test_rate_limiting_exhausts_the_retry_policy_and_says_so(
    temporal_client: Client, config: RuntimeConfig, worker: Any, fake: FakeOpenAI
) -> None:
    # The body deliberately does not mention rate limits: the failure must say so on its own.
    fake.add(*[fake_openai.error(429, "Slow down.", type_="requests") for _ in range(MAX_ATTEMPTS)])

    with pytest.raises(WorkflowFailureError) as info:
        await run_agent(temporal_client, config, "Say something.")

    assert len(fake.completion_requests) == MAX_ATTEMPTS
    assert re.search(r"rate[- ]?limit", run_failure(info.value), re.IGNORECASE), run_failure(info.value)
    assert_key_used_and_never_logged(fake, worker)


async def test_tool_call_round_trip_through_the_provider(
    temporal_client: Client, config: RuntimeConfig, worker: Any, fake: FakeOpenAI
) -> None:
    def answer_with_tool_result(request: RecordedRequest) -> fake_openai.Reply:
        tool_message = request.messages[-1]
        assert tool_message["role"] == "tool"
        return fake_openai.text(f"The weather: {tool_message['content']}")

    fake.add(fake_openai.tool_call("get_weather", {"city": "Paris"}), answer_with_tool_result)

    result = await run_agent(temporal_client, config, "Weather in Paris?")

    assert result.output == f"The weather: {get_weather('Paris')}"
    assert [c.tool_name for c in result.tool_calls] == ["get_weather"]
    assert result.usage.requests == 2
    assert len(fake.completion_requests) == 2
    # The tool's definition reached the provider with the first request.
    tools = fake.completion_requests[0].body.get("tools", [])
    assert "get_weather" in {t["function"]["name"] for t in tools}
    assert_key_used_and_never_logged(fake, worker)
