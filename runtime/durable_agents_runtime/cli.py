"""`durable-agents`: dev · worker · run · result · status · chat · sessions · history · operator · crds.

Heavy modules (pydantic-ai, temporalio, the operator) are imported inside each verb, so `--help` is instant
and a worker pod pays only for what `worker` needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporalio.client import Client

    from durable_agents_runtime._render import Renderer
    from durable_agents_runtime.config import RuntimeConfig
    from durable_agents_runtime.devserver import DevServer

__all__ = ["main"]

_STARTED = time.monotonic()
"""As early as this process can tell; the worker logs its start-up time from here."""

DEFAULT_ADDRESS = "127.0.0.1:7233"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 3
"""`run`/`result`: the run has not finished (still running, or no worker polls its task queue)."""


@dataclass(frozen=True)
class _Target:
    """The agent a `run`/`status` command is about: its name and task queue."""

    name: str
    task_queue: str
    guessed: bool = False
    """The task queue was derived from a bare agent name (`default.<name>`), not read from a manifest."""


def _resolve_target(agent: str, *, manifest: str | None, task_queue: str | None) -> _Target:
    """AGENT is a manifest path or an agent name; `-f` picks the agent from a manifest file by its
    `metadata.name` or its `spec.agent.name`."""
    from durable_agents_runtime.errors import ConfigError
    from durable_agents_runtime.manifest import load_manifests

    if manifest is None and (Path(agent).is_file() or agent.endswith((".yaml", ".yml"))):
        loaded = load_manifests([agent])[0]
        return _Target(loaded.name, task_queue or loaded.task_queue)
    if manifest is not None:
        loaded_all = load_manifests([manifest])
        matches = [m for m in loaded_all if agent in (m.name, m.agent.metadata.name)]
        if not matches:
            names = ", ".join(sorted({m.agent.metadata.name for m in loaded_all}))
            raise ConfigError(
                f"{manifest} has no DurableAgent with metadata.name or spec.agent.name {agent!r}: it has "
                f"{names}"
            )
        return _Target(matches[0].name, task_queue or matches[0].task_queue)
    from durable_agents_operator.api import default_task_queue

    return _Target(agent, task_queue or default_task_queue("default", agent), guessed=task_queue is None)


async def _client(args: argparse.Namespace, task_queue: str | None = None) -> Client:
    from durable_agents_runtime.config import TemporalSpec
    from durable_agents_runtime.connect import connect

    overrides = {"target_host": args.address} if args.address else {}
    if args.namespace:
        overrides["namespace"] = args.namespace
    spec = TemporalSpec.model_validate({"address": DEFAULT_ADDRESS, "taskQueue": task_queue or "unused"})
    return await connect(spec, overrides=overrides)


DEFAULT_WORKER_TIMEOUT = 10.0
"""Seconds `run` and `result` wait for a worker to poll the run's task queue before they stop waiting."""


async def _worker_polls(client: Client, task_queue: str, *, timeout: float) -> bool | None:
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


def _no_worker_hint(target: _Target) -> str:
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


def _not_started_message(run_id: str, task_queue: str, timeout: float, hint: str) -> str:
    return (
        f"no worker polls task queue {task_queue!r} (waited {timeout:g}s), so run {run_id} has not started."
        f"{hint}\n  The run stays queued and starts once a worker polls the queue: `durable-agents result "
        f"{run_id}` waits for it, `temporal workflow terminate --workflow-id {run_id}` drops it."
    )


def _failure_message(exc: BaseException) -> str:
    """Why a run failed: the first cause below Temporal's generic wrappers ("Workflow execution failed",
    "Activity task failed"), which is where the runtime and pydantic-ai put the cause and the fix."""
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import ActivityError, ChildWorkflowError

    current = exc
    while (
        isinstance(current, WorkflowFailureError | ActivityError | ChildWorkflowError) and current.__cause__
    ):
        current = current.__cause__
    return getattr(current, "message", None) or str(current) or type(current).__name__


# --- dev ------------------------------------------------------------------------------------------------

DEV_STOP_MARGIN = timedelta(seconds=5)
"""On SIGTERM or Ctrl-C, `dev` drains its workers (in-flight activities get the manifests' longest
`worker.gracefulShutdownTimeout`), stops the dev server and exits 0. If it is still running this margin
after that timeout, it kills the server and exits 1 anyway, saying so; a second signal does the same at
once."""
_SIGNAL_NAMES = {2: "SIGINT", 15: "SIGTERM"}
"""The signals that stop `dev`, by number (the same on every POSIX system)."""


class _DevStopper:
    """SIGTERM/SIGINT → an orderly stop of `dev`, and a hard bound on how long that may take.

    The signal number reaches a pipe through `signal.set_wakeup_fd` (written by the C-level handler, so
    it arrives even while Python code cannot run) and a watcher thread acts on it: it sets the
    `asyncio.Event` the serve coroutine waits on, then, if the process is still alive `bound` later (a
    tool blocking the event loop, a worker that does not drain) or a second signal comes, kills the dev
    server and exits. A handler that raised KeyboardInterrupt instead would land wherever Python happens
    to be, including inside asyncio's own teardown, where it can hang the process.
    """

    def __init__(self, server: DevServer, *, grace: timedelta) -> None:
        from durable_agents_runtime.config import format_duration

        self._server = server
        self.grace = grace
        self.bound = grace + DEV_STOP_MARGIN
        # Spelled out now: the watcher thread must not import anything (the main thread may hold the
        # import lock when the signal comes).
        self._timeout_reason = (
            f"dev did not stop within {format_duration(self.bound)} of {{signal}} (worker."
            f"gracefulShutdownTimeout {format_duration(grace)} + {format_duration(DEV_STOP_MARGIN)}); a tool "
            "may be blocking the event loop"
        )
        self.signum: int | None = None
        """The first stop signal received, once the watcher has seen it."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._read, self._write = os.pipe()

    @property
    def signal_name(self) -> str:
        """`SIGTERM` or `SIGINT`, once one came."""
        return _SIGNAL_NAMES.get(self.signum or 0, "signal")

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (call from the main thread, before anything is started)."""
        import signal

        os.set_blocking(self._write, False)
        # The fd first: a signal between the two steps then meets the default action (nothing has started
        # yet), never a handler whose signal goes nowhere.
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in _SIGNAL_NAMES:
            # A Python-level handler must be set for the wakeup fd to receive the signal; it does nothing
            # itself, so no exception is ever raised into whatever code the signal interrupts.
            signal.signal(signum, lambda signum, frame: None)
        threading.Thread(target=self._watch, name="dev-stop", daemon=True).start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """An event set when a stop is requested (already set if one came before the loop ran)."""
        event = asyncio.Event()
        with self._lock:
            self._loop, self._event = loop, event
            if self.signum is not None:
                event.set()
        return event

    def detach(self) -> None:
        """The event loop is closing: a later signal has no loop to tell."""
        with self._lock:
            self._loop = self._event = None

    def _watch(self) -> None:
        import select

        first = os.read(self._read, 1)
        with self._lock:
            self.signum = first[0]
            if self._loop is not None and self._event is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._event.set)
        again, _, _ = select.select([self._read], [], [], self.bound.total_seconds())
        if again:
            self._force(f"a second {self.signal_name} came while stopping")
        else:
            self._force(self._timeout_reason.format(signal=self.signal_name))

    def _force(self, reason: str) -> None:
        message = (
            f"error: {reason}: killing the Temporal dev server and exiting now. Runs in flight continue "
            "when dev starts again with the same state directory.\n"
        )
        # Straight to the file descriptors: the main thread may be stuck holding the lock of sys.stderr,
        # and a flush that waits on the network (Logfire) is exactly what this must not do.
        os.write(2, message.encode())
        self._server.kill()
        os._exit(EXIT_FAILED)


def _parse_deps(text: str | None) -> Any:
    """`--deps JSON`: any JSON value (an object, a string, a list, ...), or None when not given."""
    from durable_agents_runtime.errors import ConfigError

    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--deps is not valid JSON ({exc}): pass a JSON value, quoted for the shell, e.g. "
            """'{"user": "ada"}' for an object or '"ada"' for a string"""
        ) from None


def _dev(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.agents import build_agent
    from durable_agents_runtime.devserver import DEFAULT_PORT, DEFAULT_UI_PORT, DevServer, free_port
    from durable_agents_runtime.manifest import load_manifests, runtime_config

    one_shot = args.prompt is not None
    # A one-shot run takes free ports so it never collides with a long-running `dev`.
    server = DevServer(
        args.state_dir,
        port=args.port or (free_port() if one_shot else DEFAULT_PORT),
        ui_port=args.ui_port or DEFAULT_UI_PORT,
        ui=not one_shot,
    )
    # Everything that can be wrong with the manifests fails here, before a server starts.
    manifests = load_manifests(args.manifests)
    deps = _parse_deps(args.deps)
    configs = [runtime_config(m, address=server.address, namespace=server.namespace) for m in manifests]
    stopper = _DevStopper(server, grace=max(c.worker.graceful_shutdown_timeout for c in configs))
    stopper.install()
    agents = [build_agent(config) for config in configs]
    if stopper.signum is not None:
        return _stopped_code(stopper, one_shot)
    try:
        server.start()
        if stopper.signum is not None:
            return _stopped_code(stopper, one_shot)
        return asyncio.run(_dev_serve(server, configs, agents, deps, args, out, stopper))
    finally:
        stopper.detach()
        server.stop(timeout=DEV_STOP_MARGIN.total_seconds() / 2)


def _stopped_code(stopper: _DevStopper, one_shot: bool) -> int:
    # A stopped long-running `dev` is a normal end; a one-shot run cut short is not (128 + signal number).
    return 128 + (stopper.signum or 0) if one_shot else 0


async def _dev_serve(
    server: DevServer,
    configs: list[RuntimeConfig],
    agents: list[Any],
    deps: Any,
    args: argparse.Namespace,
    out: Renderer,
    stopper: _DevStopper,
) -> int:
    from durable_agents_runtime.connect import connect
    from durable_agents_runtime.observability import logfire_plugins
    from durable_agents_runtime.worker import create_worker

    stopping = stopper.attach(asyncio.get_running_loop())
    client = await connect(configs[0].temporal, plugins=logfire_plugins(configs[0]), use_env=False)
    async with contextlib.AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(create_worker(client, config, agent))
            for config, agent in zip(configs, agents, strict=True)
        ]
        try:
            if args.prompt is not None:
                run = asyncio.ensure_future(_dev_run(client, configs[0], deps, args, out, _STARTED))
                stop = asyncio.ensure_future(stopping.wait())
                await asyncio.wait([run, stop], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if run.done():
                    return run.result()
                run.cancel()
                out.line(f"{stopper.signal_name}: the run did not finish; stopping", style="bold red")
                return _stopped_code(stopper, True)
            out.line(f"Temporal dev server: {server.address} (namespace {server.namespace})", style="bold")
            out.line(f"Web UI: {server.ui_url}")
            out.line(f"State: {server.db_file}")
            for config in configs:
                out.line(f"Worker: agent {config.agent.name} on task queue {config.temporal.task_queue}")
            out.line("Press Ctrl-C to stop.", style="dim")
            await stopping.wait()
            out.line(
                f"{stopper.signal_name}: stopping the workers (in-flight activities get up to "
                f"{stopper.grace.total_seconds():g}s) and the dev server",
                style="dim",
            )
            return 0
        finally:
            # All at once: one after another, their graceful shutdown times would add up.
            await asyncio.gather(*(worker.shutdown() for worker in workers))


async def _dev_run(
    client: Client, config: RuntimeConfig, deps: Any, args: argparse.Namespace, out: Renderer, started: float
) -> int:
    import uuid

    from temporalio.client import WorkflowFailureError

    from durable_agents_runtime.contract import WORKFLOW_NAME, RunInput, RunOutput

    workflow_id = f"run-{uuid.uuid4()}"
    out.line(
        f"Agent {config.agent.name} · task queue {config.temporal.task_queue} · run {workflow_id}",
        style="dim",
    )
    try:
        result = await client.execute_workflow(
            WORKFLOW_NAME,
            RunInput(prompt=args.prompt, deps=deps, model=args.model),
            id=workflow_id,
            task_queue=config.temporal.task_queue,
            result_type=RunOutput,
        )
    except WorkflowFailureError as exc:
        out.line(f"Run failed: {_failure_message(exc)}", style="bold red")
        return EXIT_FAILED
    out.run_output(result)
    out.line(f"Done in {time.monotonic() - started:.1f}s", style="dim")
    return 0


# --- worker ---------------------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    import logging

    from durable_agents_runtime.config import RuntimeConfig
    from durable_agents_runtime.contract import CONFIG_FILE_KEY, CONFIG_MOUNT_DIR, ENV_CONFIG
    from durable_agents_runtime.errors import ConfigError

    path = args.config or os.environ.get(ENV_CONFIG)
    if path is None:
        mounted = Path(CONFIG_MOUNT_DIR) / CONFIG_FILE_KEY
        if not mounted.is_file():
            raise ConfigError(f"no runtime config: pass --config PATH or set {ENV_CONFIG}")
        path = str(mounted)
    if not Path(path).is_file():
        raise ConfigError(f"runtime config {path!r} does not exist: check --config / {ENV_CONFIG}")
    config = RuntimeConfig.from_file(path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from durable_agents_runtime.worker import serve

    asyncio.run(serve(config, started=_STARTED))
    return 0


# --- run ------------------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: Renderer) -> int:
    import uuid

    from temporalio.client import WorkflowFailureError

    from durable_agents_runtime.contract import WORKFLOW_NAME, RunInput, RunOutput
    from durable_agents_runtime.workflow import SUBSCRIBE_SIGNAL

    target = _resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    deps = _parse_deps(args.deps)
    client = await _client(args, target.task_queue)
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=args.prompt, deps=deps, model=args.model),
        id=args.id or f"run-{uuid.uuid4()}",
        task_queue=target.task_queue,
        result_type=RunOutput,
        start_signal=SUBSCRIBE_SIGNAL if args.stream else None,
    )
    if args.no_wait:
        print(handle.id, flush=True)
        if await _worker_polls(client, target.task_queue, timeout=0) is False:
            hint = _no_worker_hint(target)
            print(
                f"warning: no worker polls task queue {target.task_queue!r} right now.{hint}",
                file=sys.stderr,
                flush=True,
            )
        return 0
    out.line(f"Run {handle.id} on task queue {target.task_queue}", style="dim")
    # Waiting on a queue nobody polls would wait forever in silence.
    if await _worker_polls(client, target.task_queue, timeout=args.worker_timeout) is False:
        message = _not_started_message(
            handle.id, target.task_queue, args.worker_timeout, _no_worker_hint(target)
        )
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_NOT_FINISHED
    from durable_agents_runtime.retry_report import report_retries

    # Temporal retries failing activities on its own; say so while waiting instead of waiting in silence.
    retries = asyncio.create_task(report_retries(handle, lambda line: out.line(line, style="yellow")))
    try:
        live = await _stream(client, handle, out) if args.stream else False
        result = await handle.result()
    except WorkflowFailureError as exc:
        out.line(f"Run {handle.id} failed: {_failure_message(exc)}", style="bold red")
        return EXIT_FAILED
    finally:
        retries.cancel()
    out.run_output(result, tool_calls=not live)
    return 0


async def _stream(client: Client, handle: Any, out: Renderer) -> bool:
    """Show the run's live events; False when it publishes no live tool calls and text (they are shown
    with the result instead)."""
    from datetime import timedelta

    from pydantic_ai.durable_exec.temporal import stream_agent_events
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from durable_agents_runtime.contract import EVENT_TOPIC, LIVE_EVENTS_QUERY, LiveEvents

    try:
        # The run knows its topic (a durable code agent may have chosen its own) and what it can show.
        info = await handle.query(
            LIVE_EVENTS_QUERY, result_type=LiveEvents, rpc_timeout=timedelta(seconds=20)
        )
    except (RPCError, WorkflowQueryFailedError):
        info = LiveEvents(topic=EVENT_TOPIC)  # no worker answered yet: the runtime's own topic is likely
    if info.topic is None:
        out.line("(this agent publishes no live events; waiting for the result)", style="dim")
        return False
    if info.no_live_text is not None:
        out.line(
            f"(no live events: {info.no_live_text}; the tool calls and the answer follow when the run ends)",
            style="dim",
        )
    # Read to the final event even when nothing is live: a watched run waits for its subscriber.
    async for event in stream_agent_events(client, handle, info.topic):
        out.event(event)
    return info.no_live_text is None


# --- status ---------------------------------------------------------------------------------------------


async def _status(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.health import read_health

    target = _resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    client = await _client(args, target.task_queue)
    health = (await read_health(client, [target.task_queue]))[target.task_queue]
    if args.json:
        print(json.dumps(health.to_dict(), default=str, indent=2), flush=True)
    else:
        out.line(f"Agent {target.name}", style="bold")
        out.health(health)
    if target.guessed and health.reachable and health.workers == 0:
        print(
            f"note: no worker polls task queue {target.task_queue!r}.{_no_worker_hint(target)}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_FAILED if health.error else 0


# --- result ---------------------------------------------------------------------------------------------


def _status_name(status: Any) -> str:
    """A Temporal `WorkflowExecutionStatus` as the CLI prints it: `completed`, `timedOut`, ..."""
    first, *rest = status.name.lower().split("_")
    return first + "".join(part.title() for part in rest)


def _result_json(run_id: str, status: str, result: Any = None, error: str | None = None) -> str:
    data: dict[str, Any] = {"id": run_id, "status": status}
    if result is not None:
        usage = result.usage
        data["output"] = result.output
        data["usage"] = {
            "requests": usage.requests,
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "toolCalls": usage.tool_calls,
        }
        data["toolCalls"] = [{"toolName": c.tool_name, "args": c.args} for c in result.tool_calls]
    data["error"] = error
    return json.dumps(data, default=str, indent=2)


async def _result(args: argparse.Namespace, out: Renderer) -> int:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
    from temporalio.service import RPCError, RPCStatusCode

    from durable_agents_runtime.contract import RunOutput
    from durable_agents_runtime.errors import TemporalConnectError

    run_id = args.run_id
    client = await _client(args)
    handle = client.get_workflow_handle(run_id, result_type=RunOutput)

    def report(status: str, message: str, code: int) -> int:
        # With --json, stdout carries every outcome and the exit code tells them apart.
        if args.json:
            print(_result_json(run_id, status, error=message.removeprefix("error: ")), flush=True)
        elif code == EXIT_FAILED:
            out.line(message, style="bold red")
        else:
            print(message, file=sys.stderr, flush=True)
        return code

    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise TemporalConnectError(f"cannot read run {run_id!r}: {exc.message}") from None
        return report(
            "notFound",
            f"error: no run {run_id!r} in namespace {client.namespace!r}: check the id (`durable-agents run "
            "--no-wait` prints it) and --address / --namespace",
            EXIT_USAGE,
        )
    if description.status == WorkflowExecutionStatus.RUNNING:
        queue = description.task_queue
        if not args.wait:
            return report(
                "running",
                f"run {run_id} is still running (task queue {queue!r}, started {description.start_time}): "
                f"`durable-agents result {run_id}` waits for it",
                EXIT_NOT_FINISHED,
            )
        if await _worker_polls(client, queue, timeout=args.worker_timeout) is False:
            hint = "\n  Start a worker for its agent, or check --address and --namespace."
            return report(
                "running",
                f"error: {_not_started_message(run_id, queue, args.worker_timeout, hint)}",
                EXIT_NOT_FINISHED,
            )
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        final = await handle.describe()
        status = _status_name(final.status) if final.status is not None else "failed"
        return report(status, f"Run {run_id} {status}: {_failure_message(exc)}", EXIT_FAILED)
    if args.json:
        print(_result_json(run_id, "completed", result), flush=True)
    else:
        out.run_output(result)
    return 0


# --- parser ---------------------------------------------------------------------------------------------


def _connection_flags(parser: argparse.ArgumentParser, *, agent: bool = True) -> None:
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


def _worker_timeout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT,
        metavar="SECONDS",
        help=f"stop waiting (exit {EXIT_NOT_FINISHED}) if no worker polls the run's task queue within this "
        f"many seconds; the run stays queued (default {DEFAULT_WORKER_TIMEOUT:g})",
    )


_DEPS_HELP = "deps for the run, as a JSON value: an object for a dataclass or model deps type, a string, ..."


def build_parser() -> argparse.ArgumentParser:
    """The `durable-agents` argument parser."""
    parser = argparse.ArgumentParser(
        prog="durable-agents", description="Durable pydantic-ai agents on Temporal."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    dev = verbs.add_parser(
        "dev",
        help="embedded Temporal dev server + a worker per manifest",
        description="Start an embedded Temporal dev server and a worker per manifest, until Ctrl-C or "
        "SIGTERM. On a stop signal the workers drain (in-flight activities get the longest "
        "worker.gracefulShutdownTimeout, default 30s) and the server stops; if that takes "
        f"{DEV_STOP_MARGIN.total_seconds():g}s longer, or a second signal comes, dev kills the server "
        "and exits 1.",
    )
    dev.add_argument("manifests", nargs="+", metavar="MANIFEST", help="DurableAgent manifest files")
    dev.add_argument("--prompt", help="run this prompt against the first agent, print the result and stop")
    dev.add_argument("--model", help="model override for the --prompt run")
    dev.add_argument("--deps", metavar="JSON", help=_DEPS_HELP.replace("the run", "the --prompt run"))
    dev.add_argument(
        "--port", type=int, help="Temporal frontend port (default 7233; a free one with --prompt)"
    )
    dev.add_argument("--ui-port", type=int, help="web UI port (default 8233)")
    dev.add_argument(
        "--state-dir",
        help="directory of the server's sqlite state (default: $DURABLE_AGENTS_STATE_DIR or .state)",
    )

    worker = verbs.add_parser("worker", help="run a worker from a runtime config (what pods run)")
    worker.add_argument("--config", help="RuntimeConfig file (JSON or YAML; default: $DURABLE_AGENTS_CONFIG)")

    run = verbs.add_parser(
        "run",
        help="start a run of an agent and print its output",
        description=f"Start a run and print its output. Exit codes: 0 succeeded, 1 failed, 2 usage error, "
        f"{EXIT_NOT_FINISHED} not finished (no worker polls the task queue).",
    )
    run.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    run.add_argument("prompt", metavar="PROMPT")
    run.add_argument("--stream", action="store_true", help="show live events (tool calls, text)")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="print the run id and exit; `durable-agents result ID` prints the outcome later",
    )
    run.add_argument("--model", help="model override for this run")
    run.add_argument("--deps", metavar="JSON", help=_DEPS_HELP)
    run.add_argument("--id", help="workflow id (default run-<uuid>)")
    _worker_timeout_flag(run)
    _connection_flags(run)

    result = verbs.add_parser(
        "result",
        help="print the outcome of a run (e.g. one started with run --no-wait)",
        description=f"Print a run's output and usage, or why it failed. Exit codes: 0 succeeded, 1 failed "
        f"(or was cancelled, terminated, timed out), 2 no such run, {EXIT_NOT_FINISHED} not finished.",
    )
    result.add_argument(
        "run_id", metavar="RUN_ID", help="the run's workflow id, as `run --no-wait` prints it"
    )
    result.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"wait for a running run to finish (default); --no-wait exits {EXIT_NOT_FINISHED} at once",
    )
    result.add_argument("--json", action="store_true", help="print JSON (id, status, output, usage, error)")
    _worker_timeout_flag(result)
    _connection_flags(result, agent=False)

    status = verbs.add_parser("status", help="the health the operator would write into status")
    status.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    status.add_argument("--json", action="store_true", help="print JSON")
    _connection_flags(status)

    from durable_agents_runtime import session_cli

    session_cli.add_parsers(verbs, _connection_flags, _worker_timeout_flag)

    verbs.add_parser("operator", help="run the kopf operator", add_help=False)
    verbs.add_parser("crds", help="print (or --write) the generated CRDs", add_help=False)
    return parser


def _delegate(verb: str, argv: Sequence[str]) -> int:
    if verb == "operator":
        try:
            from durable_agents_operator.main import run as run_operator
        except ModuleNotFoundError as error:
            if error.name not in ("kopf", "kubernetes"):
                raise
            from durable_agents_runtime.errors import ConfigError

            # The runtime image leaves out the operator's dependencies (pyproject's `operator` extra).
            raise ConfigError(
                f"`durable-agents operator` needs {error.name}, which this installation lacks: install "
                "the operator extra (pip install 'durable-agents[operator]') or use the operator image"
            ) from error

        return run_operator(list(argv)) or 0
    from durable_agents_operator.crd import main as crds_main

    return crds_main(list(argv)) or 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.verb == "worker":
        return _worker(args)
    from durable_agents_runtime._render import Renderer

    out = Renderer()
    if args.verb == "dev":
        return _dev(args, out)
    from durable_agents_runtime import session_cli

    if args.verb in session_cli.VERBS:
        return asyncio.run(session_cli.run_verb(args, out))
    verb = {"run": _run, "result": _result, "status": _status}[args.verb]
    return asyncio.run(verb(args, out))


def _exit(code: int) -> None:
    """Leave without interpreter finalization once a verb is done.

    A process that ran a Temporal client can abort at exit (PyGILState_Release, temporalio/sdk-python#300),
    turning a success into a crash; everything that matters is flushed here first.
    """
    if "logfire" in sys.modules:
        sys.modules["logfire"].force_flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `durable-agents` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("operator", "crds"):
        # Their flags belong to the operator's own parsers.
        sys.exit(_delegate(argv[0], argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    from durable_agents_runtime.session_cli import take_message

    take_message(parser, args, extra)
    from durable_agents_runtime.errors import AgentLoadError, ConfigError, DurableAgentsError

    try:
        code = _dispatch(args)
    except (ConfigError, AgentLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_USAGE
    except DurableAgentsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    _exit(code)
