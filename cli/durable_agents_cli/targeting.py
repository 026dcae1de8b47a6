"""Which agent and which Temporal a command talks to: the shared flags, the agent's task queue, the client,
and whether a worker polls the queue (so no verb waits on a queue nobody serves)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporalio.client import Client

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_WORKER_TIMEOUT",
    "DEPS_HELP",
    "EXIT_FAILED",
    "EXIT_NOT_FINISHED",
    "EXIT_USAGE",
    "STARTED",
    "Target",
    "connect_client",
    "connection_flags",
    "no_worker_hint",
    "not_started_message",
    "parse_deps",
    "resolve_target",
    "worker_polls",
    "worker_timeout_flag",
]

STARTED = time.monotonic()
"""As early as this process can tell; the worker logs its start-up time from here."""

DEFAULT_ADDRESS = "127.0.0.1:7233"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 3
"""`run`/`result`: the run has not finished (still running, or no worker polls its task queue)."""


@dataclass(frozen=True)
class Target:
    """The agent a `run`/`status` command is about: its name and task queue."""

    name: str
    task_queue: str
    guessed: bool = False
    """The task queue was derived from a bare agent name (`default.<name>`), not read from a manifest."""


def resolve_target(agent: str, *, manifest: str | None, task_queue: str | None) -> Target:
    """AGENT is a manifest path or an agent name; `-f` picks the agent from a manifest file by its
    `metadata.name` or its `spec.agent.name`."""
    from durable_agents_api.errors import ConfigError
    from durable_agents_api.manifest import load_manifests

    if manifest is None and (Path(agent).is_file() or agent.endswith((".yaml", ".yml"))):
        loaded = load_manifests([agent])[0]
        return Target(loaded.name, task_queue or loaded.task_queue)
    if manifest is not None:
        loaded_all = load_manifests([manifest])
        matches = [m for m in loaded_all if agent in (m.name, m.agent.metadata.name)]
        if not matches:
            names = ", ".join(sorted({m.agent.metadata.name for m in loaded_all}))
            raise ConfigError(
                f"{manifest} has no DurableAgent with metadata.name or spec.agent.name {agent!r}: it has "
                f"{names}"
            )
        return Target(matches[0].name, task_queue or matches[0].task_queue)
    from durable_agents_api.resources import default_task_queue

    return Target(agent, task_queue or default_task_queue("default", agent), guessed=task_queue is None)


async def connect_client(args: argparse.Namespace, task_queue: str | None = None) -> Client:
    from durable_agents_api.config import TemporalSpec
    from durable_agents_runtime.connect import connect
    from durable_agents_runtime.connect_errors import CLI_SETTINGS

    overrides = {"target_host": args.address} if args.address else {}
    if args.namespace:
        overrides["namespace"] = args.namespace
    spec = TemporalSpec.model_validate({"address": DEFAULT_ADDRESS, "taskQueue": task_queue or "unused"})
    return await connect(spec, overrides=overrides, settings=CLI_SETTINGS)


DEFAULT_WORKER_TIMEOUT = 10.0
"""Seconds `run` and `result` wait for a worker to poll the run's task queue before they stop waiting."""


async def worker_polls(client: Client, task_queue: str, *, timeout: float) -> bool | None:
    """Whether a live worker polls `task_queue` for workflow tasks, waiting up to `timeout` seconds for
    one to appear (a worker may still be starting); None, with a warning, when Temporal would not say."""
    from datetime import UTC, datetime

    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.service import RPCError

    from durable_agents_runtime.health_signals import DEFAULT_LIVE_WITHIN, live_workers

    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = await client.workflow_service.describe_task_queue(
                request, timeout=timedelta(seconds=5)
            )
        except RPCError as exc:
            print(
                f"warning: cannot tell whether a worker polls task queue {task_queue!r} ({exc.message})",
                file=sys.stderr,
                flush=True,
            )
            return None
        # Temporal lists a dead worker's poller for minutes: count only recent polls.
        if live_workers([response], now=datetime.now(UTC), live_within=DEFAULT_LIVE_WITHIN):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


def no_worker_hint(target: Target) -> str:
    """How to reach a worker for `target` (one indented line per remedy, for the end of a message)."""
    if target.guessed:
        return (
            f"\n  The queue comes from the name alone (default.<name>), but a worker polls its manifest's "
            "queue, <metadata.namespace>.<metadata.name> (or spec.temporal.taskQueue): another queue when "
            f"metadata.name is not {target.name!r}."
            "\n  Name the manifest instead (`durable-agents run MANIFEST PROMPT`, or -f MANIFEST), pass "
            "--task-queue, or start a worker (`durable-agents dev MANIFEST`)."
        )
    return (
        "\n  Start a worker for this agent (`durable-agents dev MANIFEST`, or check the DurableAgent's "
        "pods), or check --task-queue, --address and --namespace."
    )


def not_started_message(run_id: str, task_queue: str, timeout: float, hint: str) -> str:
    return (
        f"no worker polls task queue {task_queue!r} (waited {timeout:g}s), so run {run_id} has not started."
        f"{hint}\n  The run stays queued and starts once a worker polls the queue: `durable-agents result "
        f"{run_id}` waits for it, `temporal workflow terminate --workflow-id {run_id}` drops it."
    )


def parse_deps(text: str | None) -> Any:
    """`--deps JSON`: any JSON value (an object, a string, a list, ...), or None when not given."""
    from durable_agents_api.errors import ConfigError

    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--deps is not valid JSON ({exc}): pass a JSON value, quoted for the shell, e.g. "
            """'{"user": "ada"}' for an object or '"ada"' for a string"""
        ) from None


def connection_flags(parser: argparse.ArgumentParser, *, agent: bool = True) -> None:
    parser.add_argument(
        "--address", help=f"Temporal frontend host:port (default: $TEMPORAL_ADDRESS or {DEFAULT_ADDRESS})"
    )
    parser.add_argument("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE or default)")
    if not agent:
        return
    parser.add_argument(
        "--task-queue",
        help="task queue (default: from the manifest, or default.<AGENT> for a bare name, which matches "
        "the manifest's queue only when its metadata.name is AGENT)",
    )
    parser.add_argument(
        "-f",
        "--file",
        metavar="MANIFEST",
        help="manifest file holding the agent AGENT (by metadata.name or spec.agent.name)",
    )


def worker_timeout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT,
        metavar="SECONDS",
        help=f"stop waiting (exit {EXIT_NOT_FINISHED}) if no worker polls the run's task queue within this "
        f"many seconds; the run stays queued (default {DEFAULT_WORKER_TIMEOUT:g})",
    )


DEPS_HELP = "deps for the run, as a JSON value: an object for a dataclass or model deps type, a string, ..."
