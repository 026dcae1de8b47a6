"""`durable-agents dev` stopped by SIGTERM at any moment exits within its bound and takes its server along.

The bound is documented next to `DEV_STOP_MARGIN`: the manifests' longest `worker.gracefulShutdownTimeout`
plus that margin. Each case starts a real `dev` process (embedded Temporal dev server, a worker polling
it), sends SIGTERM at a different moment — while it imports, while the server starts, idle, as a run
starts, while a tool runs, while a tool blocks the event loop — and checks that the process is gone within
the bound and that no `temporal` process of its own is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from blocking_tools import ENV_LOG as BLOCKING_LOG
from blocking_tools import ENV_SECONDS as BLOCKING_SECONDS
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from slow_tools import ENV_LOG as SLOW_LOG
from slow_tools import ENV_SECONDS as SLOW_SECONDS
from slow_tools import executions
from temporalio.client import Client

from durable_agents_api.contract import WORKFLOW_NAME, RunInput
from durable_agents_cli.dev import DEV_STOP_MARGIN
from durable_agents_runtime.devserver import free_port

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GRACE_SECONDS = 2.0
BOUND = GRACE_SECONDS + DEV_STOP_MARGIN.total_seconds()
SLACK = 1.5
"""Process scheduling on a loaded machine; not part of the documented bound."""
START_TIMEOUT = 60.0

MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: {name}
spec:
  agent:
    name: {name}_agent
    model: test
    toolsets:
      - id: {toolset}
        entrypoint: {toolset_module}:toolset
  worker:
    gracefulShutdownTimeout: {grace:.0f}s
"""


@dataclass
class Dev:
    """A `durable-agents dev` process under test."""

    process: subprocess.Popen[bytes]
    state: Path
    port: int
    output: Path
    tool_log: Path
    task_queue: str

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    async def client(self) -> Client:
        return await Client.connect(f"127.0.0.1:{self.port}", plugins=[PydanticAIPlugin()])

    async def start_run(self) -> None:
        client = await self.client()
        await client.start_workflow(
            WORKFLOW_NAME,
            RunInput(prompt="Process the item."),
            id=f"stop-{uuid.uuid4()}",
            task_queue=self.task_queue,
        )

    async def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        with anyio.fail_after(START_TIMEOUT):
            while not condition():
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"dev exited with {self.process.returncode} before {what}:\n{self.text()}"
                    )
                await anyio.sleep(0.02)

    async def wait_until_idle(self) -> None:
        await self.wait_for(lambda: "Press Ctrl-C to stop." in self.text(), "it served")


def start_dev(
    tmp_path: Path, *, blocking: bool = False, tool_seconds: float = 20, prompt: bool = False
) -> Dev:
    name = "blocker" if blocking else "slow"
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(
        MANIFEST.format(
            name=name,
            toolset="blocking" if blocking else "slow",
            toolset_module="blocking_tools" if blocking else "slow_tools",
            grace=GRACE_SECONDS,
        )
    )
    state, output, tool_log = tmp_path / "state", tmp_path / "dev.log", tmp_path / "tools.log"
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    environment.update(
        {
            "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), environment.get("PYTHONPATH")) if p),
            SLOW_LOG: str(tool_log),
            SLOW_SECONDS: str(tool_seconds),
            BLOCKING_LOG: str(tool_log),
            BLOCKING_SECONDS: str(tool_seconds),
        }
    )
    args = [
        "dev",
        str(manifest),
        "--port",
        str(port),
        "--ui-port",
        str(free_port()),
        "--state-dir",
        str(state),
    ]
    if prompt:
        args += ["--prompt", "Process the item."]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable_agents_cli", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=REPO,
        )
    return Dev(process, state, port, output, tool_log, f"default.{name}")


def temporal_processes(state: Path) -> list[int]:
    """Live processes serving the sqlite file in `state`: the dev server `dev` started."""
    marker = str(state / "temporal.db").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def started(dev: Dev, tool: str) -> Callable[[], bool]:
    return lambda: ("start", tool, dev.process.pid) in executions(dev.tool_log)


# --- the moments ----------------------------------------------------------------------------------------


async def while_importing(dev: Dev) -> None:
    await anyio.sleep(0.1)


async def as_the_server_starts(dev: Dev) -> None:
    await dev.wait_for(lambda: (dev.state / "temporal.log").exists(), "the server started")


async def just_after_the_server_started(dev: Dev) -> None:
    await as_the_server_starts(dev)
    await anyio.sleep(0.3)


async def while_the_workers_start(dev: Dev) -> None:
    await as_the_server_starts(dev)
    await anyio.sleep(1.0)


async def idle(dev: Dev) -> None:
    await dev.wait_until_idle()


async def idle_for_a_while(dev: Dev) -> None:
    await dev.wait_until_idle()
    await anyio.sleep(1.5)


async def as_a_run_starts(dev: Dev) -> None:
    await dev.wait_until_idle()
    await dev.start_run()


async def mid_tool(dev: Dev) -> None:
    await dev.wait_until_idle()
    await dev.start_run()
    await dev.wait_for(started(dev, "slow_step"), "the slow tool began")


async def mid_tool_then_again(dev: Dev) -> None:
    await mid_tool(dev)
    dev.process.send_signal(signal.SIGTERM)
    await anyio.sleep(0.5)


async def mid_blocking_tool(dev: Dev) -> None:
    await dev.wait_until_idle()
    await dev.start_run()
    await dev.wait_for(
        lambda: dev.tool_log.exists() and "start block" in dev.tool_log.read_text(), "it blocked"
    )


async def mid_one_shot_run(dev: Dev) -> None:
    await dev.wait_for(started(dev, "slow_step"), "the slow tool began")


@dataclass(frozen=True)
class Case:
    moment: Callable[[Dev], Awaitable[None]]
    exit_codes: tuple[int, ...] = (0,)
    message: str | None = None
    blocking: bool = False
    tool_seconds: float = 20
    prompt: bool = False


CASES = {
    # Before the CLI has installed its handler nothing has started: Python's default action is fine.
    "while-importing": Case(while_importing, exit_codes=(0, -signal.SIGTERM)),
    "as-the-server-starts": Case(as_the_server_starts),
    "just-after-the-server-started": Case(just_after_the_server_started),
    "while-the-workers-start": Case(while_the_workers_start),
    "idle": Case(idle),
    "idle-for-a-while": Case(idle_for_a_while),
    "as-a-run-starts": Case(as_a_run_starts),
    "mid-tool-that-ends-within-the-grace-time": Case(mid_tool, tool_seconds=1),
    "mid-tool-that-outlasts-the-grace-time": Case(mid_tool),
    "mid-tool-then-a-second-sigterm": Case(mid_tool_then_again, exit_codes=(1,), message="second SIGTERM"),
    "mid-tool-that-blocks-the-event-loop": Case(
        mid_blocking_tool, exit_codes=(1,), message="did not stop within", blocking=True
    ),
    "mid-run-of-dev-prompt": Case(mid_one_shot_run, exit_codes=(128 + signal.SIGTERM,), prompt=True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_dev_exits_within_the_bound_after_sigterm_and_leaves_no_server(
    case: Case, tmp_path: Path
) -> None:
    dev = start_dev(tmp_path, blocking=case.blocking, tool_seconds=case.tool_seconds, prompt=case.prompt)
    try:
        await case.moment(dev)
        dev.process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        try:
            code = await anyio.to_thread.run_sync(lambda: dev.process.wait(BOUND + SLACK))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dev still running {BOUND + SLACK:.1f}s after SIGTERM:\n{dev.text()}"
            ) from None
        exited_after = time.monotonic() - signalled_at
    finally:
        if dev.process.poll() is None:
            dev.process.kill()
            dev.process.wait()
        leftovers = temporal_processes(dev.state)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)

    output = dev.text()
    assert code in case.exit_codes, output
    assert exited_after <= BOUND + SLACK
    assert leftovers == [], f"dev left its Temporal server running:\n{output}"
    assert "Traceback" not in output, output
    if case.message is not None:
        assert case.message in output, output
    if case.tool_seconds < GRACE_SECONDS:
        assert ("end", "slow_step", dev.process.pid) in executions(dev.tool_log), "the drain cut the tool off"
