"""`durable-agents runs`, `approve`, `deny`, `answer`: see the runs of an agent and decide the tool calls
they wait on; and the inline prompt `run --stream` shows on a terminal."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from durable_agents_cli.targeting import connect_client, connection_flags, resolve_target

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from durable_agents_api.contract import Decision, PendingCall
    from durable_agents_cli.render import Renderer
    from durable_agents_runtime.decisions import RunSummary

__all__ = ["add_parsers", "decider", "watch_pending"]

PENDING_POLL_SECONDS = 1.0
"""How often `run` reads the pending calls of the run it waits for."""


def decider(args: argparse.Namespace | None = None) -> str:
    """Who decides from this terminal: `--as NAME`, or `<os user>@<host>`."""
    named = getattr(args, "decided_by", None) if args is not None else None
    return named or f"{getpass.getuser()}@{socket.gethostname()}"


def pending_line(call: PendingCall) -> str:
    expires = f", expires {call.expires_at:%Y-%m-%d %H:%M:%S}Z" if call.expires_at else ""
    what = "approval" if call.kind == "approval" else "its result (external input)"
    return f"{call.tool_name}({call.args_preview}) waits for {what} · call {call.tool_call_id}{expires}"


def _pending_json(call: PendingCall) -> dict[str, Any]:
    return call.model_dump(mode="json")


def _run_json(run: RunSummary) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "status": run.status,
        "startTime": run.started.isoformat() if run.started else None,
        "closeTime": run.closed.isoformat() if run.closed else None,
        "pendingCalls": [_pending_json(c) for c in run.pending] if run.pending is not None else None,
        "parent": run.parent,
        "children": run.children,
    }


async def runs_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.client import AgentsClient

    target = resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    agents = AgentsClient(await connect_client(args, target.task_queue))
    runs = await agents.list_runs(target.task_queue, limit=args.limit)
    if args.json:
        print(json.dumps([_run_json(r) for r in runs], indent=2), flush=True)
        return 0
    out.line(f"Runs of {target.name} (task queue {target.task_queue}), newest first", style="bold")
    if not runs:
        out.line("  (none)")
    for run in runs:
        started = f"{run.started:%Y-%m-%d %H:%M:%S}" if run.started else "?"
        waiting = ""
        if run.status == "running":
            waiting = " · pending: ?" if run.pending is None else f" · pending: {len(run.pending)}"
        called = f" · children: {len(run.children)}" if run.children else ""
        by = f" · called by {run.parent}" if run.parent else ""
        out.line(f"  {run.run_id}  {run.status}  started {started}{waiting}{called}{by}")
        for call in run.pending or []:
            out.line(f"      {pending_line(call)}", style="yellow")
        for child in run.children:
            out.line(f"      └ {child}", style="cyan")
    return 0


async def _send(args: argparse.Namespace, out: Renderer, decisions: list[Decision], **choice: Any) -> int:
    from durable_agents_api.contract import Decisions
    from durable_agents_runtime.client import AgentsClient

    agents = AgentsClient(await connect_client(args))
    outcome = await agents.decide(
        args.run_id, Decisions(decisions=decisions, decided_by=decider(args), **choice)
    )
    if args.json:
        print(outcome.model_dump_json(indent=2), flush=True)
        return 0
    out.line(f"Run {args.run_id}: decided {', '.join(outcome.decided)}", style="green")
    if outcome.pending:
        out.line(f"  still pending: {', '.join(outcome.pending)} (the run goes on once all are decided)")
    return 0


async def approve_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.contract import Decision
    from durable_agents_api.errors import ConfigError

    if not args.call_ids and not args.all:
        raise ConfigError(
            "name the call ids to approve, or pass --all (`durable-agents runs AGENT` lists them)"
        )
    decisions = [Decision(tool_call_id=c, approve=True) for c in args.call_ids]
    return await _send(args, out, decisions, all="approve" if args.all else None)


async def deny_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.contract import Decision
    from durable_agents_api.errors import ConfigError

    if not args.call_ids and not args.all:
        raise ConfigError("name the call ids to deny, or pass --all (`durable-agents runs AGENT` lists them)")
    decisions = [Decision(tool_call_id=c, approve=False, reason=args.reason) for c in args.call_ids]
    return await _send(args, out, decisions, all="deny" if args.all else None, reason=args.reason)


async def answer_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.contract import Decision

    try:
        result = json.loads(args.result)
    except json.JSONDecodeError:
        result = args.result  # plain text is the answer as it is
    return await _send(args, out, [Decision(tool_call_id=args.call_id, result=result)])


async def watch_pending(
    handle: WorkflowHandle[Any, Any],
    say: Callable[[str], None],
    *,
    ask: bool,
    decided_by: str,
    flags: str = "",
    poll_seconds: float = PENDING_POLL_SECONDS,
) -> None:
    """While `run` waits: say once per call that the run waits on it, and how to decide it; with `ask`
    (a terminal), ask for the decision inline. `flags` go at the end of the commands shown (e.g. the
    dev server's --address). Runs until cancelled."""
    from durable_agents_api.contract import Decisions
    from durable_agents_runtime.decisions import decide, pending_calls
    from durable_agents_runtime.errors import DecisionError

    seen: set[str] = set()
    while True:
        await asyncio.sleep(poll_seconds)
        try:
            calls = [c for c in await pending_calls(handle) if c.tool_call_id not in seen]
        except DecisionError:
            continue  # the result wait reports what matters; this is commentary
        for call in calls:
            seen.add(call.tool_call_id)
            say(f"waiting: {pending_line(call)}")
            if not ask:
                verb = "approve" if call.kind == "approval" else "answer"
                command = f"durable-agents {verb} {handle.id} {call.tool_call_id}{flags}"
                say(f"  decide: {command} (or deny ... --reason)")
                continue
            decision = await asyncio.to_thread(_ask, call)
            try:
                await decide(handle, Decisions(decisions=[decision], decided_by=decided_by))
            except DecisionError as exc:
                say(f"  {exc}")


def _ask(call: PendingCall) -> Decision:
    from durable_agents_api.contract import Decision

    if call.kind != "approval":
        text = input(f"  answer for {call.tool_name} (JSON or text): ")
        try:
            return Decision(tool_call_id=call.tool_call_id, result=json.loads(text))
        except json.JSONDecodeError:
            return Decision(tool_call_id=call.tool_call_id, result=text)
    reply = input(f"  approve {call.tool_name}? [y/N, or a reason to deny] ").strip()
    if reply.lower() in ("y", "yes"):
        return Decision(tool_call_id=call.tool_call_id, approve=True)
    reason = reply if reply.lower() not in ("", "n", "no") else None
    return Decision(tool_call_id=call.tool_call_id, approve=False, reason=reason)


def _decision_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON (decided, pending)")
    parser.add_argument(
        "--as",
        dest="decided_by",
        metavar="NAME",
        help="who decides, as recorded in the run's history (default: <os user>@<host>)",
    )
    connection_flags(parser, agent=False)


def add_parsers(verbs: argparse._SubParsersAction) -> None:
    runs = verbs.add_parser("runs", help="recent runs of an agent and the tool calls they wait on")
    runs.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    runs.add_argument("--limit", type=int, default=20, help="how many runs, newest first (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(runs)
    runs.set_defaults(handler=runs_verb)

    approve = verbs.add_parser("approve", help="approve tool calls a run waits on")
    approve.add_argument("run_id", metavar="RUN_ID")
    approve.add_argument("call_ids", nargs="*", metavar="CALL_ID", help="the calls to approve")
    approve.add_argument("--all", action="store_true", help="approve every pending approval of the run")
    _decision_flags(approve)
    approve.set_defaults(handler=approve_verb)

    deny = verbs.add_parser("deny", help="deny tool calls a run waits on; the model sees the reason")
    deny.add_argument("run_id", metavar="RUN_ID")
    deny.add_argument("call_ids", nargs="*", metavar="CALL_ID", help="the calls to deny")
    deny.add_argument("--all", action="store_true", help="deny every pending approval of the run")
    deny.add_argument("--reason", required=True, help="why: the model is told")
    _decision_flags(deny)
    deny.set_defaults(handler=deny_verb)

    answer = verbs.add_parser("answer", help="give the result of a call the run waits on (external input)")
    answer.add_argument("run_id", metavar="RUN_ID")
    answer.add_argument("call_id", metavar="CALL_ID")
    answer.add_argument("result", metavar="RESULT", help="the tool's result: JSON, or plain text")
    _decision_flags(answer)
    answer.set_defaults(handler=answer_verb)
