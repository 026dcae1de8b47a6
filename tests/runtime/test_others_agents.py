"""Agents written the way pydantic-ai's tests and docs write them run unchanged, and no mistake hangs a run.

Real dev server, real `durable-agents worker` processes serving the agents of `others_agents.py`. Each
test here failed before the runtime was fixed: the run retried forever with nothing in status.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_openai
import others_agents
import pytest
from fake_openai import FakeOpenAI
from pydantic_ai.durable_exec.temporal import stream_agent_events
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from test_runs import config

from durable_agents_api.config import DEFAULT_MAXIMUM_ATTEMPTS, RuntimeConfig
from durable_agents_api.contract import (
    EVENT_TOPIC,
    LIVE_EVENTS_QUERY,
    SUBSCRIBE_SIGNAL,
    WORKFLOW_NAME,
    LiveEvents,
    RunInput,
    RunOutput,
)
from durable_agents_runtime.activity_settings import DEFAULT_ACTIVITY
from durable_agents_runtime.health import read_health
from durable_agents_runtime.payload_limits import MAX_PAYLOAD_BYTES

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent


def backoff_seconds() -> float:
    """Total backoff of a failing activity under the runtime defaults: 1 + 2 + 4 + 8 s for five attempts."""
    retry = DEFAULT_ACTIVITY.retry
    assert (
        retry is not None and retry.initial_interval and retry.maximum_interval and retry.backoff_coefficient
    )
    interval, total = retry.initial_interval.total_seconds(), 0.0
    for _ in range(DEFAULT_MAXIMUM_ATTEMPTS - 1):
        total += min(interval, retry.maximum_interval.total_seconds())
        interval *= retry.backoff_coefficient
    return total


# Every broken agent must end within its documented retries plus a margin for a loaded 2-core machine.
END_BOUND = backoff_seconds() + 45


def code_agent(temporal: Any, name: str, **sections: Any) -> RuntimeConfig:
    return config(temporal, {"name": name, "entrypoint": f"others_agents:{name}"}, **sections)


def env(log: Path | None = None, **extra: str) -> dict[str, str]:
    values = {"PYTHONPATH": str(HERE), **extra}
    if log is not None:
        values[others_agents.ENV_LOG] = str(log)
    return values


async def start(
    client: Client, cfg: RuntimeConfig, prompt: str = "go", *, watched: bool = False, **input: Any
) -> WorkflowHandle[Any, RunOutput]:
    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=prompt, **input),
        id=f"others-{uuid.uuid4()}",
        task_queue=cfg.temporal.task_queue,
        result_type=RunOutput,
        start_signal=SUBSCRIBE_SIGNAL if watched else None,
    )


async def failure_of(handle: WorkflowHandle[Any, RunOutput]) -> str:
    """The run's failure as the CLI shows it: every message down the cause chain."""
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), END_BOUND)
    messages, current = [], failure.value.cause
    while current is not None:
        messages.append(str(current))
        current = current.__cause__
    return " | ".join(messages)


async def model_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    history = await handle.fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and "__model_request" in event.activity_task_scheduled_event_attributes.activity_type.name
    ]


# --- 1. models that cannot stream, and runs nobody watches -------------------------------------------------


async def test_a_function_model_without_stream_function_runs(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "unstreamable")
    start_worker(cfg, **env())

    handle = await start(temporal_client, cfg)
    result = await asyncio.wait_for(handle.result(), END_BOUND)

    assert result.output_text == "double said: 42"
    assert await model_activities(handle) == ["agent__unstreamable__model_request"] * 2


async def test_a_watched_run_of_an_unstreamable_model_runs_and_says_what_it_cannot_show(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "unstreamable")
    start_worker(cfg, **env())

    handle = await start(temporal_client, cfg, watched=True)
    info = await handle.query(LIVE_EVENTS_QUERY, result_type=LiveEvents)
    events = [event async for event in stream_agent_events(temporal_client, handle, EVENT_TOPIC)]
    result = await asyncio.wait_for(handle.result(), END_BOUND)

    assert info.topic == EVENT_TOPIC
    assert info.no_live_text is not None and "cannot stream" in info.no_live_text
    assert result.output_text == "double said: 42"
    assert type(events[-1]).__name__ == "AgentRunResultEvent", "the subscriber still gets the final event"
    assert "agent__unstreamable__model_request_stream" not in await model_activities(handle)


async def test_only_a_watched_run_streams_its_model_requests(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(
        temporal_dev_server,
        {
            "name": "watchable",
            "model": "test",
            "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
        },
    )
    start_worker(cfg)

    unwatched = await start(temporal_client, cfg, "Weather in Rome?")
    await unwatched.result()
    watched = await start(temporal_client, cfg, "Weather in Rome?", watched=True)
    events = [event async for event in stream_agent_events(temporal_client, watched, EVENT_TOPIC)]
    await watched.result()

    assert await model_activities(unwatched) == ["agent__watchable__model_request"] * 2
    assert await model_activities(watched) == ["agent__watchable__model_request_stream"] * 2
    names = [type(event).__name__ for event in events]
    assert (
        "FunctionToolCallEvent" in names and "PartDeltaEvent" in names and names[-1] == "AgentRunResultEvent"
    )


# --- 2. bounded retries, visible failures, deps ---------------------------------------------------------


async def test_a_tool_that_keeps_raising_fails_the_run_after_the_default_attempts_and_shows_while_retrying(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    cfg = code_agent(temporal_dev_server, "raising")
    start_worker(cfg, **env(log))

    handle = await start(temporal_client, cfg)
    seen_retrying = None
    for _ in range(int(backoff_seconds() * 4)):
        health = (await read_health(temporal_client, [cfg.temporal.task_queue]))[cfg.temporal.task_queue]
        failure = health.last_failure
        if failure is not None and failure.retrying:
            seen_retrying = failure
            break
        await asyncio.sleep(0.25)
    message = await failure_of(handle)

    assert seen_retrying is not None, "status never showed the failing attempt while the run retried"
    assert seen_retrying.workflow_id == handle.id
    assert "retrying agent__raising__toolset__" in seen_retrying.message
    assert "the tool has a bug: boom" in seen_retrying.message
    assert "the tool has a bug: boom" in message
    assert log.read_text().count("explode") == DEFAULT_MAXIMUM_ATTEMPTS
    health = (await read_health(temporal_client, [cfg.temporal.task_queue]))[cfg.temporal.task_queue]
    assert health.failed == 1 and health.running == 0
    assert health.last_failure is not None and not health.last_failure.retrying
    assert "boom" in health.last_failure.message


async def test_a_run_that_needs_deps_and_got_none_fails_at_once_saying_so(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "needs_deps")
    start_worker(cfg, **env())

    message = await failure_of(await start(temporal_client, cfg))
    ok = await (await start(temporal_client, cfg, deps={"name": "ada"})).result()

    assert "needs deps of type User, but the run passed none" in message
    assert "--deps" in message
    assert ok.output_text == '{"greet":"hello ada"}'


async def test_deps_of_any_json_type_reach_the_agent(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "text_deps")
    start_worker(cfg, **env())

    result = await (await start(temporal_client, cfg, deps="quiet")).result()

    assert result.output_text == '{"shout":"QUIET"}'


async def test_deps_given_to_an_agent_without_a_deps_type_are_refused(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "no_deps")
    start_worker(cfg, **env())

    message = await failure_of(await start(temporal_client, cfg, deps={"user": "ada"}))

    assert "declares no deps type, but the run passed deps" in message


# --- 3. honest slow tools are not killed; dead workers are still seen in seconds -------------------------


async def test_a_tool_that_blocks_the_event_loop_past_the_heartbeat_timeout_runs_once(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    cfg = code_agent(temporal_dev_server, "blocking")
    worker = start_worker(cfg, **env(log, BLOCKING_SECONDS="5"))

    result = await asyncio.wait_for((await start(temporal_client, cfg)).result(), END_BOUND)

    assert result.output_text == "crunch said: crunched x"
    assert log.read_text().count("crunch-start") == 1, "the blocking tool was timed out and re-run"
    assert "event loop has been blocked" in worker.tail(20_000)


async def test_a_worker_killed_in_a_blocking_tool_is_replaced_before_the_start_to_close_timeout(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    cfg = code_agent(temporal_dev_server, "blocking")
    first = start_worker(cfg, **env(log, BLOCKING_SECONDS="5"))
    handle = await start(temporal_client, cfg)
    for _ in range(400):
        if log.exists() and "crunch-start" in log.read_text():
            break
        await asyncio.sleep(0.05)
    first.kill()
    start_worker(cfg, **env(log, BLOCKING_SECONDS="1"))

    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    result = await asyncio.wait_for(handle.result(), END_BOUND)
    recovered_in = loop.time() - killed_at

    assert result.output_text == "crunch said: crunched x"
    starts = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("crunch-start")]
    assert len(starts) == 2 and starts[0] == str(first.pid)
    start_to_close = DEFAULT_ACTIVITY.start_to_close_timeout
    assert start_to_close is not None
    # Seen through the missing heartbeats (2 s), not after the 60 s start-to-close timeout.
    assert recovered_in < start_to_close.total_seconds() / 2


# --- 4. payloads over Temporal's limit ----------------------------------------------------------------------


async def test_a_model_answer_over_the_payload_limit_fails_at_once_naming_the_limit(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "huge")
    start_worker(cfg, **env())

    handle = await start(temporal_client, cfg)
    message = await failure_of(handle)

    assert "PayloadTooLarge" in message or "the model's response is 2.5 MB" in message
    assert f"payload size limit ({MAX_PAYLOAD_BYTES} bytes)" in message
    assert "max_tokens" in message
    description = await handle.describe()
    assert description.raw_description.workflow_execution_info.history_length < 20


async def test_a_message_history_over_the_payload_limit_fails_at_once(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "big_tool")
    start_worker(cfg, **env())

    message = await failure_of(await start(temporal_client, cfg, "p" * 1_000_000))

    assert "carries a message history of 2.2 MB" in message
    assert "pass large data by reference" in message


# --- 5. run-time models of any provider ---------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


async def test_a_run_can_override_the_model_with_a_provider_the_agent_does_not_use(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, fake: FakeOpenAI
) -> None:
    fake.add(fake_openai.text("an answer from the other provider"))
    cfg = config(temporal_dev_server, {"name": "switcher", "model": "test"}, model={"baseUrl": fake.base_url})
    start_worker(cfg)

    result = await (await start(temporal_client, cfg, model="openai-chat:fake-model")).result()

    assert result.output_text == "an answer from the other provider"
    assert len(fake.completion_requests) == 1


async def test_a_run_can_override_the_model_with_one_from_a_module_that_defines_a_durable_agent(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = config(temporal_dev_server, {"name": "switcher_py", "model": "test"})
    start_worker(cfg, **env())

    result = await (await start(temporal_client, cfg, model="python:code_agents:scripted_model")).result()

    assert result.output_text == "scripted answer"


# --- 6. every toolset kind on a plain agent made durable ---------------------------------------------------


async def test_every_toolset_kind_runs_on_a_plain_agent_made_durable(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "toolsets")
    start_worker(cfg, **env())

    handle = await start(temporal_client, cfg)
    result = await handle.result()

    assert result.output_text == "decorated=101 dyn_tool=1001 kit_tool=2 pre_times_ten=10"
    history = await handle.fetch_history()
    activities = {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    # Each toolset's calls are activities of their own, the dynamic one included.
    assert {
        "agent__toolsets__toolset__<agent>__call_tool",
        "agent__toolsets__toolset__kit__call_tool",
        "agent__toolsets__toolset__pre__call_tool",
        "agent__toolsets__dynamic_toolset__dyn__get_tools",
        "agent__toolsets__dynamic_toolset__dyn__call_tool",
    } <= activities


# --- 7. manifest settings that cannot apply ----------------------------------------------------------------


async def test_manifest_activities_for_an_agent_durable_in_code_are_refused(
    temporal_dev_server: Any, start_worker: Any
) -> None:
    cfg = config(
        temporal_dev_server,
        {"name": "durable_code", "entrypoint": "code_agents:durable"},
        activities={"model": {"startToCloseTimeout": "10s"}},
    )

    worker = start_worker(cfg, wait=False, **env())

    assert worker.process.wait(60) == 2
    output = worker.tail()
    assert "is already durable in code" in output and "activities.model cannot apply" in output


# --- no silent hang anywhere ------------------------------------------------------------------------------


async def test_no_broken_agent_hangs_each_ends_with_a_message_naming_the_cause(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    cases = {
        "raising": ({}, "the tool has a bug: boom"),
        "needs_deps": ({}, "needs deps of type User"),
        "no_deps": ({"deps": {"x": 1}}, "declares no deps type"),
        "huge": ({}, "the model's response is 2.5 MB"),
        "big_tool": ({"prompt": "p" * 1_000_000}, "carries a message history"),
    }
    configs = {name: code_agent(temporal_dev_server, name) for name in cases}
    workers = [start_worker(cfg, wait=False, **env(log)) for cfg in configs.values()]
    for worker in workers:
        worker.wait_ready(180)  # five workers starting at once on a busy 2-core machine
    handles = {
        name: await start(temporal_client, configs[name], **{"prompt": "go", **cases[name][0]})
        for name in cases
    }

    messages = await asyncio.gather(*(failure_of(handle) for handle in handles.values()))

    for (name, (_, expected)), message in zip(cases.items(), messages, strict=True):
        assert expected in message, f"{name}: {message}"


# --- what the CLI shows -------------------------------------------------------------------------------------


async def cli_run(temporal: Any, cfg: RuntimeConfig, *flags: str) -> subprocess.CompletedProcess[str]:
    """`durable-agents run AGENT go` against `cfg`'s task queue, in a subprocess."""
    from test_dev import cli

    target = ["--address", temporal.address, "--task-queue", cfg.temporal.task_queue]
    return await asyncio.to_thread(cli, "run", cfg.agent.name, "go", *flags, *target, timeout=END_BOUND)


async def test_run_shows_the_failed_attempts_while_the_run_retries(
    temporal_dev_server: Any, start_worker: Any, tmp_path: Path
) -> None:
    cfg = code_agent(temporal_dev_server, "raising")
    start_worker(cfg, **env(tmp_path / "tools.log"))

    done = await cli_run(temporal_dev_server, cfg)

    assert done.returncode == 1, done.stdout + done.stderr
    retried = [line for line in done.stdout.splitlines() if "failed: " in line and "retrying" in line]
    # Backoff 1, 2, 4, 8 s and a poll every second: at least the later attempts are seen, in order.
    assert len(retried) >= 2, done.stdout
    attempts = [int(line.split()[1]) for line in retried]
    assert attempts == sorted(set(attempts)) and attempts[-1] == DEFAULT_MAXIMUM_ATTEMPTS - 1, retried
    assert all(line.startswith("attempt ") and "agent__raising__toolset__" in line for line in retried)
    assert all("the tool has a bug: boom" in line for line in retried)
    assert retried[-1].endswith(
        f"retrying (attempt {DEFAULT_MAXIMUM_ATTEMPTS} of {DEFAULT_MAXIMUM_ATTEMPTS})"
    )
    assert "the tool has a bug: boom" in done.stdout.splitlines()[-1]


async def test_run_stream_of_an_unstreamable_model_says_why_and_shows_the_tool_calls_at_the_end(
    temporal_dev_server: Any, start_worker: Any
) -> None:
    cfg = code_agent(temporal_dev_server, "unstreamable")
    start_worker(cfg, **env())

    done = await cli_run(temporal_dev_server, cfg, "--stream")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "(no live events: the agent's model cannot stream" in done.stdout
    assert "double(n=21)" in done.stdout, "the tool calls are shown with the result"
    assert "double said: 42" in done.stdout
