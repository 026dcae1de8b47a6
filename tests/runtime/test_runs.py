"""Agent runs end to end: a real dev server, real `durable-agents worker` processes, the `test` model."""

from __future__ import annotations

import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
# Worker processes import the test code agents from this directory.
CODE_AGENTS_ENV = {"PYTHONPATH": str(HERE)}


def config(temporal: Any, agent: dict[str, Any], **sections: Any) -> RuntimeConfig:
    """A runtime config for `agent` on its own task queue of the session's dev server."""
    return RuntimeConfig.model_validate(
        {
            "agent": agent,
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": f"{agent['name']}-{uuid.uuid4().hex[:8]}",
            },
            **sections,
        }
    )


DEMO_AGENT = {
    "name": "travel",
    "model": "test",
    "instructions": "Use the tools to answer.",
    "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
}


async def start(
    client: Client, cfg: RuntimeConfig, prompt: str, **input: Any
) -> WorkflowHandle[Any, RunOutput]:
    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=prompt, **input),
        id=f"test-{uuid.uuid4()}",
        task_queue=cfg.temporal.task_queue,
        result_type=RunOutput,
    )


async def run(client: Client, cfg: RuntimeConfig, prompt: str, **input: Any) -> RunOutput:
    return await (await start(client, cfg, prompt, **input)).result()


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, dict[str, float]]]:
    """(activity type, its timeouts in seconds) for every activity the run scheduled, in order."""
    history = await handle.fetch_history()
    scheduled = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            timeouts = {
                "start_to_close": attrs.start_to_close_timeout.ToTimedelta().total_seconds(),
                "heartbeat": attrs.heartbeat_timeout.ToTimedelta().total_seconds(),
                "initial_interval": attrs.retry_policy.initial_interval.ToTimedelta().total_seconds(),
            }
            scheduled.append((attrs.activity_type.name, timeouts))
    return scheduled


@pytest.fixture(scope="module")
def demo_worker(temporal_dev_server: Any, start_module_worker: Any) -> tuple[RuntimeConfig, Any]:
    cfg = config(temporal_dev_server, DEMO_AGENT)
    return cfg, start_module_worker(cfg)


async def test_a_run_calls_the_tools_and_returns_output_tool_calls_and_usage(
    temporal_client: Client, demo_worker: tuple[RuntimeConfig, Any]
) -> None:
    cfg, _ = demo_worker

    result = await run(temporal_client, cfg, "Weather and time in Paris?")

    assert [call.tool_name for call in result.tool_calls] == ["get_weather", "get_local_time"]
    assert all(isinstance(call.args, dict) and "city" in call.args for call in result.tool_calls)
    # The test model answers with the tool results, so the output proves the tools really ran.
    assert "°C in" in result.output_text and ":00 in" in result.output_text
    assert result.usage.requests == 2
    assert result.usage.tool_calls == 2
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0


async def test_the_worker_answers_liveness_and_readiness_while_polling(
    demo_worker: tuple[RuntimeConfig, Any],
) -> None:
    _, worker = demo_worker

    for url in (worker.liveness_url, worker.health_url):
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200


async def test_metrics_expose_temporal_sdk_and_run_counters(
    temporal_client: Client, demo_worker: tuple[RuntimeConfig, Any]
) -> None:
    cfg, worker = demo_worker
    await run(temporal_client, cfg, "Weather in Tokyo?")

    with urllib.request.urlopen(worker.metrics_url, timeout=5) as response:
        metrics = response.read().decode()

    assert re.search(r"^temporal_workflow_completed\S* ", metrics, re.MULTILINE), metrics[:2000]
    assert re.search(r"^temporal_activity_execution_latency\S*", metrics, re.MULTILINE)
    assert re.search(r"^durable_agents_runs_completed\S* [1-9]", metrics, re.MULTILINE), metrics[:2000]


async def test_structured_output_follows_the_json_schema(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"],
    }
    cfg = config(
        temporal_dev_server,
        {
            "name": "forecaster",
            "model": "test",
            "output": {"type": "json", "schema": schema, "name": "forecast"},
        },
    )
    start_worker(cfg)

    result = await run(temporal_client, cfg, "Forecast for Oslo")

    assert isinstance(result.output, dict)
    assert isinstance(result.output["city"], str) and isinstance(result.output["celsius"], int)
    assert result.tool_calls == [], "the output tool is not a tool call the agent made"


async def test_a_run_can_override_the_model(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    # The configured model points at a port nothing listens on: only the override can answer.
    cfg = config(
        temporal_dev_server,
        {"name": "overridden", "model": "openai-chat:gpt-4.1-mini"},
        model={"baseUrl": "http://127.0.0.1:9/v1"},
    )
    start_worker(cfg)

    result = await run(temporal_client, cfg, "Say something", model="test")

    assert result.output_text == "success (no tool calls)"
    assert result.usage.requests == 1


async def test_an_unknown_model_override_fails_the_run_at_once(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "strict", "model": "test"})
    start_worker(cfg)

    with pytest.raises(WorkflowFailureError) as failure:
        await run(temporal_client, cfg, "Hi", model="nosuchprovider:model-x")

    assert "nosuchprovider:model-x" in str(failure.value.cause)


async def test_a_plain_code_agent_is_made_durable_by_the_worker(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "plain_code", "entrypoint": "code_agents:plain"})
    start_worker(cfg, **CODE_AGENTS_ENV)

    handle = await start(temporal_client, cfg, "Look up a key")
    result = await handle.result()

    assert [call.tool_name for call in result.tool_calls] == ["lookup"]
    assert "value-of-" in result.output_text
    # Durable: the model requests and the tool call ran as the agent's activities.
    names = [name for name, _ in await scheduled_activities(handle)]
    assert names[0].startswith("agent__plain_code__model_request") and len(names) == 3
    assert re.fullmatch(r"agent__plain_code__toolset__.+__call_tool", names[1])


async def test_an_already_durable_code_agent_runs_unchanged(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "durable_code", "entrypoint": "code_agents:durable"})
    start_worker(cfg, **CODE_AGENTS_ENV)

    result = await run(temporal_client, cfg, "Count a word")

    assert [call.tool_name for call in result.tool_calls] == ["count"]
    assert result.usage.tool_calls == 1


async def test_activity_settings_apply_at_every_level_over_the_defaults(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(
        temporal_dev_server,
        DEMO_AGENT,
        activities={
            "default": {"startToCloseTimeout": "40s"},
            "model": {"heartbeatTimeout": "5s"},
            "toolsets": {"demo": {"startToCloseTimeout": "20s"}},
            "tools": {
                "demo": {"get_local_time": {"startToCloseTimeout": "7s", "retry": {"initialInterval": "3s"}}}
            },
        },
    )
    start_worker(cfg)

    handle = await start(temporal_client, cfg, "Weather and time in Berlin?")
    await handle.result()

    activities = await scheduled_activities(handle)
    model = [t for name, t in activities if "__model_request" in name]
    tools = [t for name, t in activities if name.endswith("__toolset__demo__call_tool")]
    # Model requests: the manifest's default start-to-close and model heartbeat, the runtime's 1 s retry.
    assert model == [{"start_to_close": 40, "heartbeat": 5, "initial_interval": 1}] * 2
    # Tools: the toolset's timeout, one tool's own settings, and the runtime's 2 s heartbeat for both.
    assert sorted(tools, key=lambda t: t["start_to_close"]) == [
        {"start_to_close": 7, "heartbeat": 2, "initial_interval": 3},
        {"start_to_close": 20, "heartbeat": 2, "initial_interval": 1},
    ]


async def test_an_agent_wrapped_in_the_deprecated_temporal_agent_runs_unchanged(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "legacy_code", "entrypoint": "code_agents:legacy"})
    start_worker(cfg, **CODE_AGENTS_ENV)

    result = await run(temporal_client, cfg, "Count a word")

    assert [call.tool_name for call in result.tool_calls] == ["count"]


async def test_a_code_agent_whose_name_differs_from_the_manifest_is_refused(
    temporal_dev_server: Any, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "other_name", "entrypoint": "code_agents:plain"})

    worker = start_worker(cfg, wait=False, **CODE_AGENTS_ENV)

    assert worker.process.wait(60) == 2
    assert "is named 'plain_code' but agent.name is 'other_name'" in worker.output.read_text()


async def test_worker_options_sandbox_off_run_context_type_and_passthrough_modules_are_honoured(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(
        temporal_dev_server,
        DEMO_AGENT,
        worker={
            "sandbox": False,
            "runContextType": "pydantic_ai.durable_exec.temporal:TemporalRunContext",
            "passthroughModules": ["decimal"],
        },
    )
    start_worker(cfg)

    result = await run(temporal_client, cfg, "Weather in Cairo?")

    assert [call.tool_name for call in result.tool_calls] == ["get_weather", "get_local_time"]
