"""`durable-agents`: dev · worker · run · status · operator · crds.

Heavy modules (pydantic-ai, temporalio, the operator) are imported inside each verb, so `--help` is instant
and a worker pod pays only for what `worker` needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Target:
    """The agent a `run`/`status` command is about: its name and task queue."""

    name: str
    task_queue: str


def _resolve_target(agent: str, *, manifest: str | None, task_queue: str | None) -> _Target:
    """AGENT is a manifest path or an agent name; `-f` picks the named agent from a manifest file."""
    from durable_agents_runtime.errors import ConfigError
    from durable_agents_runtime.manifest import load_manifests

    if manifest is None and (Path(agent).is_file() or agent.endswith((".yaml", ".yml"))):
        loaded = load_manifests([agent])[0]
        return _Target(loaded.name, task_queue or loaded.task_queue)
    if manifest is not None:
        matches = [m for m in load_manifests([manifest]) if agent in (m.name, m.agent.metadata.name)]
        if not matches:
            raise ConfigError(f"{manifest} has no DurableAgent named {agent!r}")
        return _Target(matches[0].name, task_queue or matches[0].task_queue)
    from durable_agents_operator.api import default_task_queue

    return _Target(agent, task_queue or default_task_queue("default", agent))


async def _client(args: argparse.Namespace, task_queue: str) -> Client:
    from durable_agents_runtime.config import TemporalSpec
    from durable_agents_runtime.connect import connect

    overrides = {"target_host": args.address} if args.address else {}
    if args.namespace:
        overrides["namespace"] = args.namespace
    spec = TemporalSpec.model_validate({"address": DEFAULT_ADDRESS, "taskQueue": task_queue})
    return await connect(spec, overrides=overrides)


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


def _dev(args: argparse.Namespace, out: Renderer) -> int:
    import signal

    from durable_agents_runtime.devserver import DEFAULT_PORT, DEFAULT_UI_PORT, DevServer
    from durable_agents_runtime.manifest import load_manifests

    manifests = load_manifests(args.manifests)
    one_shot = args.prompt is not None
    # A one-shot run takes free ports so it never collides with a long-running `dev`.
    server = DevServer(
        args.state_dir,
        port=args.port or (None if one_shot else DEFAULT_PORT),
        ui_port=args.ui_port or DEFAULT_UI_PORT,
        ui=not one_shot,
    )

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the dev server in order too, like Ctrl-C.
    signal.signal(signal.SIGTERM, terminate)
    server.start()
    try:
        return asyncio.run(_dev_serve(server, manifests, args, out))
    except KeyboardInterrupt:
        if one_shot:
            raise
        return 0  # Ctrl-C is how a long-running `dev` is meant to stop
    finally:
        server.stop()


async def _dev_serve(server: DevServer, manifests: list[Any], args: argparse.Namespace, out: Renderer) -> int:
    import contextlib

    from durable_agents_runtime.connect import connect
    from durable_agents_runtime.manifest import runtime_config
    from durable_agents_runtime.observability import logfire_plugins
    from durable_agents_runtime.worker import create_worker

    configs = [runtime_config(m, address=server.address, namespace=server.namespace) for m in manifests]
    client = await connect(configs[0].temporal, plugins=logfire_plugins(configs[0]), use_env=False)
    async with contextlib.AsyncExitStack() as stack:
        for config in configs:
            await stack.enter_async_context(create_worker(client, config))
        if args.prompt is not None:
            return await _dev_run(client, configs[0], args, out, _STARTED)
        out.line(f"Temporal dev server: {server.address} (namespace {server.namespace})", style="bold")
        out.line(f"Web UI: {server.ui_url}")
        out.line(f"State: {server.db_file}")
        for config in configs:
            out.line(f"Worker: agent {config.agent.name} on task queue {config.temporal.task_queue}")
        out.line("Press Ctrl-C to stop.", style="dim")
        await asyncio.Event().wait()
    return 0


async def _dev_run(
    client: Client, config: RuntimeConfig, args: argparse.Namespace, out: Renderer, started: float
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
            RunInput(prompt=args.prompt, model=args.model),
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
    from durable_agents_runtime.errors import ConfigError
    from durable_agents_runtime.workflow import SUBSCRIBE_SIGNAL

    target = _resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    deps = None
    if args.deps is not None:
        try:
            deps = json.loads(args.deps)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--deps is not valid JSON ({exc}): pass a JSON object") from None
        if not isinstance(deps, dict):
            raise ConfigError('--deps must be a JSON object, e.g. \'{"user": "ada"}\'')
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
        return 0
    out.line(f"Run {handle.id} on task queue {target.task_queue}", style="dim")
    try:
        if args.stream:
            await _stream(client, handle, out)
        result = await handle.result()
    except WorkflowFailureError as exc:
        out.line(f"Run {handle.id} failed: {_failure_message(exc)}", style="bold red")
        return EXIT_FAILED
    out.run_output(result, tool_calls=not args.stream)
    return 0


async def _stream(client: Client, handle: Any, out: Renderer) -> None:
    from datetime import timedelta

    from pydantic_ai.durable_exec.temporal import stream_agent_events
    from temporalio.service import RPCError

    from durable_agents_runtime.contract import EVENT_TOPIC
    from durable_agents_runtime.workflow import EVENT_TOPIC_QUERY

    try:
        # The run knows its topic (a durable code agent may have chosen its own).
        topic = await handle.query(
            EVENT_TOPIC_QUERY, result_type=str | None, rpc_timeout=timedelta(seconds=20)
        )
    except RPCError:
        topic = EVENT_TOPIC  # no worker answered yet: the runtime's own topic is the likely one
    if topic is None:
        out.line("(this agent publishes no live events; waiting for the result)", style="dim")
        return
    async for event in stream_agent_events(client, handle, topic):
        out.event(event)


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
    return EXIT_FAILED if health.error else 0


# --- parser ---------------------------------------------------------------------------------------------


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help=f"Temporal frontend host:port (default: $TEMPORAL_ADDRESS or {DEFAULT_ADDRESS})"
    )
    parser.add_argument("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE or default)")
    parser.add_argument(
        "--task-queue", help="task queue (default: from the manifest, or default.<agent name>)"
    )
    parser.add_argument(
        "-f", "--file", metavar="MANIFEST", help="manifest file holding the agent named AGENT"
    )


def build_parser() -> argparse.ArgumentParser:
    """The `durable-agents` argument parser."""
    parser = argparse.ArgumentParser(
        prog="durable-agents", description="Durable pydantic-ai agents on Temporal."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    dev = verbs.add_parser("dev", help="embedded Temporal dev server + a worker per manifest")
    dev.add_argument("manifests", nargs="+", metavar="MANIFEST", help="DurableAgent manifest files")
    dev.add_argument("--prompt", help="run this prompt against the first agent, print the result and stop")
    dev.add_argument("--model", help="model override for the --prompt run")
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

    run = verbs.add_parser("run", help="start a run of an agent and print its output")
    run.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    run.add_argument("prompt", metavar="PROMPT")
    run.add_argument("--stream", action="store_true", help="show live events (tool calls, text)")
    run.add_argument("--no-wait", action="store_true", help="print the workflow id and exit")
    run.add_argument("--model", help="model override for this run")
    run.add_argument("--deps", metavar="JSON", help="deps for the run, as a JSON object")
    run.add_argument("--id", help="workflow id (default run-<uuid>)")
    _connection_flags(run)

    status = verbs.add_parser("status", help="the health the operator would write into status")
    status.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    status.add_argument("--json", action="store_true", help="print JSON")
    _connection_flags(status)

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
    verb = {"run": _run, "status": _status}[args.verb]
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
    args = build_parser().parse_args(argv)
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
