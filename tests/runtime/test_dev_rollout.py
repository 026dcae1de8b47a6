"""`durable-agents dev` rolls a changed manifest out like the operator: new version next to the old one.

A real `dev` process (embedded dev server, versioned workers) serves a manifest; the test edits the file
while a run is inside a slow tool, and reads what the model received from the recording model's log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from slow_tools import ENV_LOG, ENV_SECONDS, executions
from temporalio.client import Client
from versioned_agents import ENV_LOG as MODEL_LOG
from versioned_agents import MODEL, received

from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.devserver import free_port

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT = 60.0

MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: rolled
spec:
  agent:
    name: rolled
    model: "{model}"
    instructions: "{instructions}"
{toolsets}  versioning:
    behavior: {behavior}
  worker:
    gracefulShutdownTimeout: 1s
"""
TOOLSETS = "    toolsets:\n      - id: slow\n        entrypoint: slow_tools:toolset\n"


def write_manifest(path: Path, instructions: str, *, behavior: str = "Pinned", toolsets: bool = True) -> None:
    text = MANIFEST.format(
        model=MODEL, instructions=instructions, toolsets=TOOLSETS if toolsets else "", behavior=behavior
    )
    # A rename, so the watcher never reads half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    port: int
    output: Path
    manifest: Path
    tool_log: Path
    model_log: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    async def wait_for(self, condition: Callable[[str], bool], what: str) -> str:
        with anyio.fail_after(TIMEOUT):
            while not condition(text := self.text()):
                if self.process.poll() is not None:
                    raise AssertionError(f"dev exited with {self.process.returncode} before {what}:\n{text}")
                await anyio.sleep(0.02)
        return text

    async def start_run(self, prompt: str) -> object:
        client = await Client.connect(f"127.0.0.1:{self.port}", plugins=[PydanticAIPlugin()])
        return await client.start_workflow(
            WORKFLOW_NAME,
            RunInput(prompt=prompt),
            id=f"rolled-{uuid.uuid4()}",
            task_queue="default.rolled",
            result_type=RunOutput,
        )


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Callable[..., Dev]]:
    started: list[Dev] = []

    def start(*, behavior: str = "Pinned", tool_seconds: float = 12, write: bool = True) -> Dev:
        manifest = tmp_path / "rolled.yaml"
        if write:
            write_manifest(manifest, "Be v1.", behavior=behavior)
        output = tmp_path / f"dev-{len(started)}.log"
        tool_log, model_log = tmp_path / "tools.log", tmp_path / "model.log"
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
        environment.update(
            {
                "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), environment.get("PYTHONPATH")) if p),
                ENV_LOG: str(tool_log),
                ENV_SECONDS: str(tool_seconds),
                MODEL_LOG: str(model_log),
                "NO_COLOR": "1",
            }
        )
        command = [sys.executable, "-m", "durable_agents_cli", "dev", str(manifest), "--port", str(port)]
        command += ["--ui-port", str(free_port()), "--state-dir", str(tmp_path / "state")]
        with output.open("wb") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=environment, cwd=REPO
            )
        started.append(Dev(process, port, output, manifest, tool_log, model_log))
        return started[-1]

    yield start
    for process in (d.process for d in started):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _instructions_by_prompt(log: Path) -> dict[str, list[str | None]]:
    seen: dict[str, list[str | None]] = {}
    for request in received(log):
        seen.setdefault(request["prompt"], []).append(request["instructions"])
    return seen


async def test_a_changed_manifest_serves_new_runs_while_the_old_version_drains_its_runs(
    dev: Callable[..., Dev],
) -> None:
    session = dev()
    await session.wait_for(lambda t: "Press Ctrl-C to stop." in t, "it served")
    old_run = await session.start_run("old run")
    with anyio.fail_after(TIMEOUT):
        while not any(e[:2] == ("start", "slow_step") for e in executions(session.tool_log)):
            await anyio.sleep(0.05)

    changed_at = time.monotonic()
    write_manifest(session.manifest, "Be v2.")
    text = await session.wait_for(lambda t: "serves new runs" in t, "the new version served")
    rollout_seconds = time.monotonic() - changed_at
    new_run = await session.start_run("new run")
    # The old run is still inside its 12 s tool: its version must still be serving.
    assert "drained in" not in session.text(), "the old version stopped while its run was still open"
    assert not any(e[:2] == ("end", "slow_step") for e in executions(session.tool_log))

    assert (await new_run.result()).output == "done: slow:x"  # pyright: ignore[reportAttributeAccessIssue]
    assert (await old_run.result()).output == "done: slow:x"  # pyright: ignore[reportAttributeAccessIssue]
    drained_text = await session.wait_for(lambda t: "drained in" in t, "the old version drained")

    seen = _instructions_by_prompt(session.model_log)
    assert seen["old run"] == ["Be v1.", "Be v1."], seen
    assert seen["new run"] == ["Be v2.", "Be v2."], seen
    versions = re.search(r"version (\w+) of agent rolled serves new runs; version (\w+) drains", text)
    assert versions is not None, text
    old_version = versions.group(2)
    assert f"version {old_version} of agent rolled drained in" in drained_text
    print(f"dev rollout: manifest written -> new version current in {rollout_seconds:.2f}s")
    drained = re.search(r"drained in ([0-9.]+)s", drained_text)
    assert drained is not None
    print(f"dev drain: {drained.group(1)}s from promotion to the old worker stopping (12 s tool in flight)")
    assert "Traceback" not in session.text(), session.text()


async def test_an_auto_upgrade_change_old_runs_cannot_replay_is_refused_and_the_old_version_keeps_serving(
    dev: Callable[..., Dev],
) -> None:
    session = dev(behavior="AutoUpgrade", tool_seconds=0.1)
    await session.wait_for(lambda t: "Press Ctrl-C to stop." in t, "it served")
    first = await session.start_run("first run")
    assert (await first.result()).output == "done: slow:x"  # pyright: ignore[reportAttributeAccessIssue]

    write_manifest(session.manifest, "Be v1.", behavior="AutoUpgrade", toolsets=False)
    text = await session.wait_for(lambda t: "stays current" in t, "the gate refused")
    after = await session.start_run("after the refused change")

    assert "replay gate refused the change" in text and first.id in text, text  # pyright: ignore[reportAttributeAccessIssue]
    assert "serves new runs" not in text
    # The old version, with its tool, still serves new runs.
    assert (await after.result()).output == "done: slow:x"  # pyright: ignore[reportAttributeAccessIssue]


async def test_dev_restarted_with_a_changed_manifest_says_which_runs_wait_for_the_old_version(
    dev: Callable[..., Dev],
) -> None:
    first = dev(tool_seconds=120)
    await first.wait_for(lambda t: "Press Ctrl-C to stop." in t, "it served")
    stranded = await first.start_run("stranded run")
    with anyio.fail_after(TIMEOUT):
        while not any(e[:2] == ("start", "slow_step") for e in executions(first.tool_log)):
            await anyio.sleep(0.05)
    first.process.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(lambda: first.process.wait(30)) == 0, first.text()

    write_manifest(first.manifest, "Be v2.")
    second = dev(tool_seconds=120, write=False)
    text = await second.wait_for(lambda t: "Press Ctrl-C to stop." in t, "it served again")

    assert "1 open run(s) of agent rolled are pinned to version" in text, text
    assert "Restart dev with the manifest they started with" in text
    client = await Client.connect(f"127.0.0.1:{second.port}", plugins=[PydanticAIPlugin()])
    await client.get_workflow_handle(stranded.id).terminate("test over")  # pyright: ignore[reportAttributeAccessIssue]


async def test_reverting_the_manifest_while_the_old_version_drains_makes_it_current_again_at_once(
    dev: Callable[..., Dev],
) -> None:
    session = dev(tool_seconds=30)
    await session.wait_for(lambda t: "Press Ctrl-C to stop." in t, "it served")
    pinned = await session.start_run("pinned run")
    with anyio.fail_after(TIMEOUT):
        while not any(e[:2] == ("start", "slow_step") for e in executions(session.tool_log)):
            await anyio.sleep(0.05)
    write_manifest(session.manifest, "Be v2.")
    await session.wait_for(lambda t: "serves new runs;" in t, "the new version served")

    write_manifest(session.manifest, "Be v1.")
    text = await session.wait_for(lambda t: "(rollback)" in t, "the rollback")
    after = await session.start_run("after the rollback")

    versions = re.search(r"version (\w+) of agent rolled serves new runs; version (\w+) drains", text)
    assert versions is not None, text
    v2, v1 = versions.groups()
    assert f"version {v1} of agent rolled serves new runs again (rollback); version {v2} drains" in text
    with anyio.fail_after(TIMEOUT):
        while "after the rollback" not in _instructions_by_prompt(session.model_log):
            await anyio.sleep(0.05)
    # The new run started on the version rolled back to, with its instructions.
    assert _instructions_by_prompt(session.model_log)["after the rollback"] == ["Be v1."]
    client = await Client.connect(f"127.0.0.1:{session.port}", plugins=[PydanticAIPlugin()])
    described = await client.get_workflow_handle(after.id).describe()  # pyright: ignore[reportAttributeAccessIssue]
    assert described.raw_description.workflow_execution_info.versioning_info.deployment_version.build_id == v1
    await pinned.terminate("test over")  # pyright: ignore[reportAttributeAccessIssue]
    await client.get_workflow_handle(after.id).terminate("test over")  # pyright: ignore[reportAttributeAccessIssue]
    assert "Traceback" not in session.text(), session.text()
