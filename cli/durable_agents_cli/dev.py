"""`durable-agents dev`: the embedded Temporal dev server and a worker per manifest (and `--prompt` runs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from durable_agents_cli.targeting import DEPS_HELP, EXIT_FAILED, STARTED, parse_deps

if TYPE_CHECKING:
    from temporalio.client import Client

    from durable_agents_api.config import RuntimeConfig
    from durable_agents_cli.render import Renderer
    from durable_agents_runtime.devserver import DevServer

__all__ = ["DEV_STOP_MARGIN", "add_parser"]

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
        from durable_agents_api.config import format_duration

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


def dev_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.manifest import load_manifests, runtime_config
    from durable_agents_runtime.agents import build_agent
    from durable_agents_runtime.devserver import DEFAULT_PORT, DEFAULT_UI_PORT, DevServer, free_port

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
    deps = parse_deps(args.deps)
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
        if not one_shot:
            return asyncio.run(
                _dev_rollout(server, manifests, configs, agents, out, stopper, args.manifests, args)
            )
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
                run = asyncio.ensure_future(_dev_run(client, configs[0], deps, args, out, STARTED))
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


async def _dev_rollout(
    server: DevServer,
    manifests: list[Any],
    configs: list[RuntimeConfig],
    agents: list[Any],
    out: Renderer,
    stopper: _DevStopper,
    paths: list[str],
    args: argparse.Namespace,
) -> int:
    """Long-running `dev`: versioned workers, and a changed manifest rolled out next to the old version;
    the manifests' schedules on the embedded server, synced again when a manifest changes."""
    from durable_agents_cli import schedules
    from durable_agents_runtime.connect import connect
    from durable_agents_runtime.dev_rollout import DevRollout
    from durable_agents_runtime.observability import logfire_plugins

    stopping = stopper.attach(asyncio.get_running_loop())
    client = await connect(configs[0].temporal, plugins=logfire_plugins(configs[0]), use_env=False)
    rollout = DevRollout(
        client,
        address=server.address,
        namespace=server.namespace,
        say=lambda text: out.line(text, style="bold"),
        warn=lambda text: out.line(f"warning: {text}", style="bold red"),
    )
    gateway = None
    try:
        await rollout.start(manifests, configs, agents)
        out.line(f"Temporal dev server: {server.address} (namespace {server.namespace})", style="bold")
        out.line(f"Web UI: {server.ui_url}")
        out.line(f"State: {server.db_file}")
        for line in rollout.describe():
            out.line(line)
        await schedules.dev_sync(client, manifests, out.line)
        if not args.no_gateway:
            from durable_agents_cli.gateway import start_gateway
            from durable_agents_runtime.client import AgentsClient

            async def agents_client() -> AgentsClient:
                return AgentsClient(client)

            try:
                gateway = await start_gateway(
                    agents_client, manifests, host=args.gateway_host, port=args.gateway_port, out=out
                )
            except OSError as exc:
                # The workers matter more than the console: say why there is none and go on.
                out.line(
                    f"warning: no gateway: cannot listen on {args.gateway_host}:{args.gateway_port} "
                    f"({exc.strerror}): pass --gateway-port PORT (0: a free one) or --no-gateway",
                    style="bold red",
                )
        out.line("Watching the manifests: a change starts a new version; the old one drains.", style="dim")
        out.line("Press Ctrl-C to stop.", style="dim")
        watching = asyncio.ensure_future(schedules.dev_watch(client, paths, stopping, out.line))
        try:
            await rollout.watch(stopping)
        finally:
            watching.cancel()
        out.line(
            f"{stopper.signal_name}: stopping the workers (in-flight activities get up to "
            f"{stopper.grace.total_seconds():g}s) and the dev server",
            style="dim",
        )
        return 0
    finally:
        if gateway is not None:
            from durable_agents_cli.gateway import stop_gateway

            await stop_gateway(*gateway)
        await rollout.shutdown()


async def _dev_run(
    client: Client, config: RuntimeConfig, deps: Any, args: argparse.Namespace, out: Renderer, started: float
) -> int:
    import uuid

    from temporalio.client import WorkflowFailureError

    from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
    from durable_agents_cli.decisions import decider, watch_pending
    from durable_agents_runtime.failures import failure_message

    workflow_id = f"run-{uuid.uuid4()}"
    out.line(
        f"Agent {config.agent.name} · task queue {config.temporal.task_queue} · run {workflow_id}",
        style="dim",
    )
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=args.prompt, deps=deps, model=args.model),
        id=workflow_id,
        task_queue=config.temporal.task_queue,
        result_type=RunOutput,
    )
    # A call that needs a decision is asked for on a terminal, or shown with the command that decides it.
    waiting = asyncio.create_task(
        watch_pending(
            handle,
            lambda line: out.line(line, style="yellow"),
            ask=sys.stdin.isatty(),
            decided_by=decider(),
            flags=f" --address {config.temporal.address} --namespace {config.temporal.namespace}",
        )
    )
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        out.line(f"Run failed: {failure_message(exc)}", style="bold red")
        return EXIT_FAILED
    finally:
        waiting.cancel()
    out.run_output(result)
    out.line(f"Done in {time.monotonic() - started:.1f}s", style="dim")
    return 0


def add_parser(verbs: argparse._SubParsersAction) -> None:
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
    dev.add_argument("--deps", metavar="JSON", help=DEPS_HELP.replace("the run", "the --prompt run"))
    dev.add_argument(
        "--port", type=int, help="Temporal frontend port (default 7233; a free one with --prompt)"
    )
    dev.add_argument("--ui-port", type=int, help="web UI port (default 8233)")
    dev.add_argument(
        "--state-dir",
        help="directory of the server's sqlite state (default: $DURABLE_AGENTS_STATE_DIR or .state)",
    )
    from durable_agents_cli.gateway import gateway_flags

    gateway_flags(dev, dev=True)
    dev.set_defaults(handler=dev_verb)
