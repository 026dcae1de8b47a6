"""A toolset for crash and shutdown tests: a fast tool and a slow one, each logging to a file.

Workers under test are separate processes that get killed, so executions are counted in a file, not in
memory: every tool appends `start <tool> <pid>` and `end <tool> <pid>` lines to the file named by
`SLOW_TOOLS_LOG`. `SLOW_TOOLS_SECONDS` sets how long the slow tool sleeps (default 4).

Loaded by the worker as the toolset entrypoint `slow_tools:toolset` (with this directory on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai import FunctionToolset
from temporalio.client import Client, WorkflowHandle

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput

__all__ = [
    "ENV_LOG",
    "ENV_SECONDS",
    "TOOLSET_ID",
    "agent_config",
    "executions",
    "toolset",
    "wait_for_entry",
    "worker_env",
]

ENV_LOG = "SLOW_TOOLS_LOG"
ENV_SECONDS = "SLOW_TOOLS_SECONDS"
TOOLSET_ID = "slow"

toolset: FunctionToolset[None] = FunctionToolset(id=TOOLSET_ID)


def _record(event: str, tool: str) -> None:
    with Path(os.environ[ENV_LOG]).open("a") as log:
        log.write(f"{event} {tool} {os.getpid()}\n")


@toolset.tool_plain
async def fast_step(item: str) -> str:
    """Look an item up instantly."""
    _record("start", "fast_step")
    _record("end", "fast_step")
    return f"fast:{item}"


@toolset.tool_plain
async def slow_step(item: str) -> str:
    """Process an item slowly."""
    _record("start", "slow_step")
    await asyncio.sleep(float(os.environ.get(ENV_SECONDS, "4")))
    _record("end", "slow_step")
    return f"slow:{item}"


def executions(log: Path) -> list[tuple[str, str, int]]:
    """The log as `(event, tool, pid)` tuples, in order."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        event, tool, pid = line.split()
        rows.append((event, tool, int(pid)))
    return rows


async def wait_for_entry(log: Path, entry: tuple[str, str, int], *, timeout: float) -> None:
    """Wait until the log holds `(event, tool, pid)`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while entry not in executions(log):
        if time.monotonic() > deadline:
            raise AssertionError(f"{entry} not in the tool log after {timeout}s: {executions(log)}")
        await asyncio.sleep(0.05)


def agent_config(temporal: Any, name: str, **worker: Any) -> RuntimeConfig:
    """A `test`-model agent using this toolset, with the runtime's default activity settings.

    `temporal` is the session's dev server (`.address`, `.namespace`); each call gets its own task queue.
    The `test` model calls both tools in its first response, then answers with their results.
    """
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": name,
                "model": "test",
                "toolsets": [{"id": TOOLSET_ID, "entrypoint": "slow_tools:toolset"}],
            },
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": f"{name}-{uuid.uuid4().hex[:8]}",
            },
            "worker": worker,
        }
    )


def worker_env(log: Path, seconds: float) -> dict[str, str]:
    """Environment for a worker that serves `agent_config`: this directory importable, the log, the delay."""
    return {ENV_LOG: str(log), ENV_SECONDS: str(seconds), "PYTHONPATH": str(Path(__file__).resolve().parent)}


async def start_run_into_the_slow_tool(
    client: Client, config: RuntimeConfig, log: Path, *, worker_pid: int, id_prefix: str
) -> WorkflowHandle[Any, RunOutput]:
    """Start a run and return once the worker `worker_pid` has begun the slow tool."""
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="Process the item."),
        id=f"{id_prefix}-{uuid.uuid4()}",
        task_queue=config.temporal.task_queue,
        result_type=RunOutput,
    )
    await wait_for_entry(log, ("start", "slow_step", worker_pid), timeout=30)
    return handle
