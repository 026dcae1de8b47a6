"""`durable-agents run` and `result`: start a run, stream it, wait for it, print its outcome."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from durable_agents_cli.targeting import (
    DEPS_HELP,
    EXIT_FAILED,
    EXIT_NOT_FINISHED,
    EXIT_USAGE,
    connect_client,
    connection_flags,
    no_worker_hint,
    not_started_message,
    parse_deps,
    resolve_target,
    worker_polls,
    worker_timeout_flag,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from durable_agents_cli.render import Renderer

__all__ = ["add_parsers"]


async def run_verb(args: argparse.Namespace, out: Renderer) -> int:
    import uuid

    from temporalio.client import WorkflowFailureError

    from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
    from durable_agents_runtime.failures import failure_message
    from durable_agents_runtime.workflow import SUBSCRIBE_SIGNAL

    target = resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    deps = parse_deps(args.deps)
    budget = _budget(args.budget)
    client = await connect_client(args, target.task_queue)
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=args.prompt, deps=deps, model=args.model, budget=budget),
        id=args.id or f"run-{uuid.uuid4()}",
        task_queue=target.task_queue,
        result_type=RunOutput,
        start_signal=SUBSCRIBE_SIGNAL if args.stream else None,
    )
    if args.no_wait:
        print(handle.id, flush=True)
        if await worker_polls(client, target.task_queue, timeout=0) is False:
            hint = no_worker_hint(target)
            print(
                f"warning: no worker polls task queue {target.task_queue!r} right now.{hint}",
                file=sys.stderr,
                flush=True,
            )
        return 0
    out.line(f"Run {handle.id} on task queue {target.task_queue}", style="dim")
    # Waiting on a queue nobody polls would wait forever in silence.
    if await worker_polls(client, target.task_queue, timeout=args.worker_timeout) is False:
        message = not_started_message(
            handle.id, target.task_queue, args.worker_timeout, no_worker_hint(target)
        )
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_NOT_FINISHED
    from durable_agents_cli.decisions import decider, watch_pending
    from durable_agents_runtime.retry_report import report_retries

    # Temporal retries failing activities on its own; say so while waiting instead of waiting in silence.
    retries = asyncio.create_task(report_retries(handle, lambda line: out.line(line, style="yellow")))
    # A run that waits for a decision says so; on a terminal, `--stream` asks for it inline.
    ask = args.stream and sys.stdin.isatty()
    waiting = asyncio.create_task(
        watch_pending(
            handle,
            lambda line: out.line(line, style="yellow"),
            ask=ask,
            decided_by=decider(),
            flags=f" --address {args.address}" if args.address else "",
        )
    )
    try:
        live = await _stream(client, handle, out) if args.stream else False
        result = await handle.result()
    except WorkflowFailureError as exc:
        out.line(f"Run {handle.id} failed: {failure_message(exc)}", style="bold red")
        return EXIT_FAILED
    finally:
        retries.cancel()
        waiting.cancel()
    out.run_output(result, tool_calls=not live)
    return 0


def _budget(text: str | None) -> Any:
    from durable_agents_api.budget import parse_budget
    from durable_agents_api.errors import ConfigError

    if text is None:
        return None
    try:
        return parse_budget(text)
    except ValueError as exc:
        raise ConfigError(f"--budget: {exc}") from None


async def _stream(client: Client, handle: Any, out: Renderer) -> bool:
    """Show the run's live events; False when it publishes no live tool calls and text (they are shown
    with the result instead)."""
    from durable_agents_runtime.client import AgentsClient

    agents = AgentsClient(client)
    # The run knows its topic (a durable code agent may have chosen its own) and what it can show.
    info = await agents.live_events(handle.id)
    if info.topic is None:
        out.line("(this agent publishes no live events; waiting for the result)", style="dim")
        return False
    if info.no_live_text is not None:
        out.line(
            f"(no live events: {info.no_live_text}; the tool calls and the answer follow when the run ends)",
            style="dim",
        )
    # Read to the final event even when nothing is live: a watched run waits for its subscriber.
    async for event in agents.run_events(handle.id, topic=info.topic):
        out.event(event)
    return info.no_live_text is None


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
        data["costUsd"] = result.cost_usd
        data["children"] = [child.workflow_id for child in result.children]
        data["toolCalls"] = [{"toolName": c.tool_name, "args": c.args} for c in result.tool_calls]
    data["error"] = error
    return json.dumps(data, default=str, indent=2)


async def result_verb(args: argparse.Namespace, out: Renderer) -> int:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
    from temporalio.service import RPCError, RPCStatusCode

    from durable_agents_api.contract import RunOutput
    from durable_agents_runtime.errors import TemporalConnectError
    from durable_agents_runtime.failures import failure_message

    run_id = args.run_id
    client = await connect_client(args)
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
        if await worker_polls(client, queue, timeout=args.worker_timeout) is False:
            hint = "\n  Start a worker for its agent, or check --address and --namespace."
            return report(
                "running",
                f"error: {not_started_message(run_id, queue, args.worker_timeout, hint)}",
                EXIT_NOT_FINISHED,
            )
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        final = await handle.describe()
        status = _status_name(final.status) if final.status is not None else "failed"
        return report(status, f"Run {run_id} {status}: {failure_message(exc)}", EXIT_FAILED)
    if args.json:
        print(_result_json(run_id, "completed", result), flush=True)
    else:
        out.run_output(result)
    return 0


def add_parsers(verbs: argparse._SubParsersAction) -> None:
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
    run.add_argument("--deps", metavar="JSON", help=DEPS_HELP)
    run.add_argument(
        "--budget",
        metavar="KEY=VALUE,...",
        help="what this run may use, e.g. totalTokens=1000,requests=5 (keys: requests, inputTokens, "
        "outputTokens, totalTokens, toolCalls); it can only tighten the agent's spec.budget",
    )
    run.add_argument("--id", help="workflow id (default run-<uuid>)")
    worker_timeout_flag(run)
    connection_flags(run)
    run.set_defaults(handler=run_verb)

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
    worker_timeout_flag(result)
    connection_flags(result, agent=False)
    result.set_defaults(handler=result_verb)
