"""`durable-agents dev` runs a manifest's schedules on its embedded server, and `schedules`/`trigger` list
them and run one now — real processes, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from temporalio.client import Client

from durable_agents_api.contract import RunOutput
from durable_agents_runtime.devserver import free_port

pytestmark = pytest.mark.runtime

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: echoer
spec:
  agent:
    name: echo
    entrypoint: schedule_agents:echo_agent
  worker:
    gracefulShutdownTimeout: 1s
  schedules:
{schedules}"""
DIGEST = """\
    - name: digest
      cron: ["0 0 1 1 *"]
      timeZone: Europe/Paris
      prompt: {prompt}
"""


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    return {**env, "NO_COLOR": "1"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "durable_agents_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment(), cwd=REPO)


async def output_of(address: str, run_id: str) -> str:
    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    handle = client.get_workflow_handle(run_id, result_type=RunOutput)
    return (await asyncio.wait_for(handle.result(), 30)).output_text


def write(path: Path, schedules: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(MANIFEST.format(schedules=schedules))
    partial.replace(path)


def wait_for(log: Path, process: subprocess.Popen[bytes], text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (seen := log.read_text(errors="replace") if log.exists() else ""):
        assert process.poll() is None, f"dev exited with {process.returncode}:\n{seen}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{seen}"
        time.sleep(0.05)
    return seen


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path, str]]:
    manifest, log, port = tmp_path / "echoer.yaml", tmp_path / "dev.log", free_port()
    write(manifest, DIGEST.format(prompt="first digest"))
    command = [sys.executable, "-m", "durable_agents_cli", "dev", str(manifest), "--port", str(port)]
    command += ["--ui-port", str(free_port()), "--state-dir", str(tmp_path / "state")]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=environment(), cwd=REPO
        )
    yield process, manifest, log, f"127.0.0.1:{port}"
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_dev_serves_the_manifests_schedules_and_the_cli_lists_and_triggers_them(
    dev: tuple[subprocess.Popen[bytes], Path, Path, str],
) -> None:
    process, manifest, log, address = dev
    started = wait_for(log, process, "Press Ctrl-C to stop.")
    assert "Schedule digest of agent echoer: next run " in started, started

    listed = cli("schedules", str(manifest), "--address", address, "--json")
    assert listed.returncode == 0, listed.stderr
    [digest] = json.loads(listed.stdout)
    assert (digest["name"], digest["scheduleId"], digest["paused"]) == (
        "digest",
        "schedule:default/echoer/digest",
        False,
    )
    assert digest["nextRunTime"].endswith("T23:00:00Z")  # 1 January 00:00 in Paris

    triggered = cli("trigger", "echoer", "digest", "--address", address)
    assert triggered.returncode == 0, triggered.stderr
    run_id = triggered.stdout.strip()
    assert run_id.startswith("schedule:default/echoer/digest-")
    assert asyncio.run(output_of(address, run_id)) == "echo: first digest"

    # A saved change to the schedules reaches the server without restarting dev.
    write(manifest, DIGEST.format(prompt="second digest").replace("digest\n", "weekly\n", 1))
    changed = wait_for(log, process, "Schedule weekly of agent echoer: next run")
    assert "Schedule schedule:default/echoer/digest deleted" in changed

    unknown = cli("trigger", "echoer", "digest", "--address", address)
    assert unknown.returncode == 2 and "has no schedule 'digest'" in unknown.stderr, unknown.stderr
    assert "Traceback" not in log.read_text()
