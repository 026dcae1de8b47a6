"""The two sides of every comparison: our worker (from a RuntimeConfig) and the bare-library baseline.

A `Target` knows how to start its worker process for a task queue and what workflow (and argument) a
client starts on it, so the benchmarks drive both sides with the same code.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._agents import OURS_AGENT_NAME
from bench._baseline import BASELINE_WORKFLOW_NAME
from bench._floor import FLOOR_WORKFLOW_NAME
from bench._harness import VENV_BIN, WorkerProcess, free_port, python, subprocess_env

__all__ = ["Target", "baseline_target", "floor_target", "ours_available", "ours_config", "ours_target"]

# What ours needs before it can be measured; the benchmarks report "not available" until then.
_OURS_MODULES = ("durable_agents_runtime.worker", "durable_agents_cli.main")


@dataclass(frozen=True)
class Target:
    """One side of a comparison."""

    label: str
    workflow: str
    argument: Callable[[str], Any]
    """prompt → the workflow's argument."""
    command: Callable[[str, str, Path], tuple[list[str], dict[str, str]]]
    """(address, task queue, work dir) → (argv, environment) of the worker process."""
    health_port: Mapping[str, int] = field(default_factory=dict)

    def worker(self, address: str, task_queue: str, workdir: Path, tag: str = "") -> WorkerProcess:
        """A not-yet-started worker process for `task_queue` (log in `workdir`)."""
        argv, env = self.command(address, task_queue, workdir)
        slug = self.label.replace(" ", "-").replace(",", "")
        return WorkerProcess(argv, env, workdir / f"worker-{slug}{tag}.log")


def baseline_target(*, worker_heartbeat: float | None = None) -> Target:
    """pydantic-ai + Temporal with library defaults (see bench/_baseline.py).

    `worker_heartbeat` (seconds) turns on SDK worker heartbeats, for the health benchmark only.
    """

    def command(address: str, task_queue: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [python(), "-m", "bench._baseline", "--address", address, "--task-queue", task_queue]
        if worker_heartbeat is not None:
            argv += ["--worker-heartbeat", f"{worker_heartbeat:g}"]
        return argv, subprocess_env()

    return Target(label="baseline", workflow=BASELINE_WORKFLOW_NAME, argument=lambda p: p, command=command)


def floor_target() -> Target:
    """A plain Temporal workflow with the same three activities and no pydantic-ai (bench/_floor.py)."""

    def command(address: str, task_queue: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
        return [
            python(),
            "-m",
            "bench._floor",
            "--address",
            address,
            "--task-queue",
            task_queue,
        ], subprocess_env()

    return Target(label="floor", workflow=FLOOR_WORKFLOW_NAME, argument=lambda p: p, command=command)


def ours_available() -> str | None:
    """None when our runtime can be benchmarked, else why not."""
    missing = [m for m in _OURS_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"runtime modules not present yet: {', '.join(missing)}"
    return None


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def ours_config(
    address: str, task_queue: str, *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The RuntimeConfig (API form) of the benchmark agent as a code agent, with our defaults otherwise.

    `overrides` is merged into the API form (camelCase), e.g. `{"worker": {"sandbox": False}}`.
    """
    from durable_agents_api.config import RuntimeConfig

    base: dict[str, Any] = {
        "agent": {"name": OURS_AGENT_NAME, "entrypoint": "bench._agents:agent"},
        "temporal": {"address": address, "taskQueue": task_queue},
        # Logfire stays on (our default) but cannot send: no token reaches the worker.
    }
    return RuntimeConfig.model_validate(_merge(base, overrides or {})).to_api()


def ours_target(*, label: str = "ours", overrides: Mapping[str, Any] | None = None) -> Target:
    """Our worker (`durable-agents worker`) reading a RuntimeConfig file, as a pod runs it."""
    from durable_agents_api.contract import (
        ENV_BIND_HOST,
        ENV_CONFIG,
        ENV_HEALTH_PORT,
        ENV_METRICS_PORT,
        WORKFLOW_NAME,
        RunInput,
    )

    ports: dict[str, int] = {}

    def command(address: str, task_queue: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
        path = workdir / f"runtime-{task_queue}.json"
        path.write_text(json.dumps(ours_config(address, task_queue, overrides=overrides), indent=2))
        health = free_port()
        ports[task_queue] = health
        env = subprocess_env(
            {
                ENV_CONFIG: str(path),
                ENV_BIND_HOST: "127.0.0.1",
                ENV_HEALTH_PORT: str(health),
                ENV_METRICS_PORT: str(free_port()),
            }
        )
        return [str(VENV_BIN / "durable-agents"), "worker"], env

    return Target(
        label=label,
        workflow=WORKFLOW_NAME,
        argument=lambda prompt: RunInput.model_validate({"prompt": prompt}),
        command=command,
        health_port=ports,
    )
