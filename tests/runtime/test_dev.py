"""The `durable-agents` command as a user runs it: `dev` (README command 1), `run`, `status`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_api.manifest import load_manifests, runtime_config
from durable_agents_runtime.devserver import ENV_STATE_DIR, DevServer, find_temporal_binary
from durable_agents_runtime.errors import DevServerError

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.yaml"
PROMPT = "What is the weather like in Paris, and what time is it there?"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`durable-agents ARGS` in a subprocess, without the developer's Temporal settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    return subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environment, **(env or {})},
        cwd=REPO,
    )


@pytest.mark.runtime
def test_the_readme_demo_prints_the_tool_calls_the_output_and_usage(tmp_path: Path) -> None:
    state = tmp_path / "state"
    started = time.monotonic()

    done = cli("dev", "examples/hello.yaml", "--prompt", PROMPT, env={ENV_STATE_DIR: str(state)})

    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r'^  get_weather\(city="Paris"\)', out, re.MULTILINE), out
    assert re.search(r'^  get_local_time\(city="Paris"\)', out, re.MULTILINE), out
    assert "Output:" in out and "°C in Paris; the local time is 13:00 in Paris (UTC+1)." in out
    assert "Usage: 2 requests" in out
    assert "Traceback" not in done.stderr
    assert (state / "temporal.db").is_file(), "the dev server keeps its state in the state directory"
    # Generous for a loaded CI machine; on an idle one it takes a few seconds.
    assert elapsed < 60


def test_an_invalid_manifest_stops_dev_with_the_field_and_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HELLO.read_text().replace("  agent:\n", "  agent:\n    temprature: 0.2\n"))

    done = cli("dev", str(bad), "--prompt", PROMPT, env={ENV_STATE_DIR: str(tmp_path / "state")})

    assert done.returncode == 2
    assert f"invalid {bad}:" in done.stderr
    assert "spec.agent.temprature: unknown field" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.runtime
@pytest.mark.anyio
async def test_a_restarted_dev_server_keeps_its_workflows(tmp_path: Path) -> None:
    with DevServer(tmp_path) as server:
        client = await Client.connect(server.address)
        # No worker: the run stays pending, and must still be there after the restart.
        handle = await client.start_workflow(
            WORKFLOW_NAME, "pending", id=f"kept-{uuid.uuid4()}", task_queue="none"
        )

    with DevServer(tmp_path) as server:
        client = await Client.connect(server.address)
        description = await client.get_workflow_handle(handle.id).describe()

    assert description.run_id == handle.result_run_id


@pytest.mark.runtime
@pytest.mark.anyio
async def test_a_port_taken_as_the_server_starts_is_chosen_again(tmp_path: Path) -> None:
    # The first start reports a port taken (as when another process binds it between our check and the
    # server's bind); the next start, on freshly chosen ports, is the real server.
    real = find_temporal_binary()
    marker = tmp_path / "first-start-done"
    binary = tmp_path / "temporal"
    binary.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{marker}" ]; then touch "{marker}"; '
        "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1; fi\n"
        f'exec "{real}" "$@"\n'
    )
    binary.chmod(0o755)
    server = DevServer(tmp_path / "state", binary=str(binary))
    with server:
        client = await Client.connect(server.address)
        assert (await client.service_client.check_health()) is True
    assert marker.exists()


@pytest.mark.runtime
def test_a_taken_port_the_caller_gave_fails_at_once_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DevServerError, match=f"port {port} on 127.0.0.1 was taken"):
            DevServer(tmp_path, http_port=port).start()
    assert time.monotonic() - started < 20


# --- run and status against a worker on the session's dev server ---------------------------------------


@pytest.fixture(scope="module")
def hello(temporal_dev_server: Any, start_module_worker: Any) -> RuntimeConfig:
    """examples/hello.yaml served by a worker process, on a task queue of its own."""
    [manifest] = load_manifests([HELLO])
    config = runtime_config(
        manifest, address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
    )
    temporal = config.temporal.model_copy(update={"task_queue": f"hello-{uuid.uuid4().hex[:8]}"})
    config = config.model_copy(update={"temporal": temporal})
    start_module_worker(config)
    return config


def target(config: RuntimeConfig) -> list[str]:
    return ["--address", config.temporal.address, "--task-queue", config.temporal.task_queue]


@pytest.mark.runtime
def test_run_stream_shows_tool_calls_and_results_as_they_happen(hello: RuntimeConfig) -> None:
    done = cli("run", "examples/hello.yaml", PROMPT, "--stream", *target(hello))

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    calls = [i for i, line in enumerate(lines) if line.startswith("→ ")]
    results = [i for i, line in enumerate(lines) if line.startswith("← ")]
    assert [lines[i].split("(")[0] for i in calls] == ["→ get_weather", "→ get_local_time"]
    assert len(results) == 2 and max(calls) < min(results)
    assert "Output:" in done.stdout and "Usage: 2 requests" in done.stdout


@pytest.mark.runtime
@pytest.mark.anyio
async def test_run_no_wait_prints_the_workflow_id_of_the_started_run(
    hello: RuntimeConfig, temporal_client: Client
) -> None:
    done = cli("run", "hello", "Weather in Rome?", "--no-wait", *target(hello))

    assert done.returncode == 0, done.stderr
    workflow_id = done.stdout.strip()
    assert re.fullmatch(r"run-[0-9a-f-]{36}", workflow_id)
    result = await temporal_client.get_workflow_handle(workflow_id, result_type=RunOutput).result()
    assert result.usage.tool_calls == 2


@pytest.mark.runtime
@pytest.mark.anyio
async def test_status_prints_the_agents_health(hello: RuntimeConfig, temporal_client: Client) -> None:
    await temporal_client.execute_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="Weather in Lima?"),
        id=f"status-{uuid.uuid4()}",
        task_queue=hello.temporal.task_queue,
        result_type=RunOutput,
    )

    text = cli("status", "hello", *target(hello))
    as_json = cli("status", "hello", "--json", *target(hello))

    assert text.returncode == 0, text.stderr
    assert f"task queue: {hello.temporal.task_queue}" in text.stdout
    assert "workers: 1" in text.stdout
    health = json.loads(as_json.stdout)
    assert health["workers"] == 1
    assert health["runs"]["completed"] >= 1
    assert health["runs"]["failed"] == 0


@pytest.mark.runtime
def test_a_failed_run_prints_the_cause_and_exits_1(hello: RuntimeConfig) -> None:
    done = cli("run", "hello", "Hi", "--model", "nosuchprovider:model-x", *target(hello))

    assert done.returncode == 1
    assert "failed: cannot use model 'nosuchprovider:model-x'" in done.stdout
    assert "Name a model as pydantic-ai does" in done.stdout
