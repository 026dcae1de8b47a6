"""The conversation verbs: `chat` (a REPL, or one message), `sessions` (an agent's sessions) and `history`
(a session's conversation).

They name the agent as `run` and `status` do (a manifest, `-f MANIFEST AGENT`, or a bare name) and reach
Temporal the same way (`--address`, `--namespace`, `$TEMPORAL_*`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any, cast

from durable_agents_cli.targeting import connection_flags, worker_timeout_flag

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from durable_agents_api.contract import SessionReply
    from durable_agents_cli.render import Renderer

__all__ = ["VERBS", "add_parsers", "run_verb", "take_message"]

VERBS = ("chat", "sessions", "history")
EXIT_USAGE = 2
EXIT_NO_WORKER = 3
_QUIT = {"/exit", "/quit", "exit", "quit"}
_STREAM_TAIL_SECONDS = 5.0
"""How long the last events of a streamed turn may trail its reply before the reply is shown as it is."""


def add_parsers(verbs: Any) -> None:
    """Add `chat`, `sessions` and `history` to the `durable-agents` sub-parsers."""
    chat = verbs.add_parser(
        "chat",
        help="talk to an agent: a REPL, or one message with MESSAGE",
        description="Converse with an agent in a session that remembers the conversation. Without MESSAGE: "
        "a REPL (reads lines from stdin; /exit or Ctrl-D ends it). With MESSAGE: answer it, print the reply "
        "and exit. Without --session a new session starts (its id goes to stderr). Exit codes: 0 answered, "
        f"1 failed or the session has ended, 2 usage error, {EXIT_NO_WORKER} no worker polls the queue.",
    )
    chat.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    chat.add_argument("message", metavar="MESSAGE", nargs="?", help="one message to answer, then exit")
    chat.add_argument("--session", metavar="ID", help="session id (default: a new session)")
    chat.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the reply as it is written (default: on a terminal)",
    )
    chat.add_argument("--model", help="model override for these turns")
    chat.add_argument("--deps", metavar="JSON", help="deps for each turn, as a JSON value")
    chat.add_argument("--json", action="store_true", help="print each reply as JSON")
    worker_timeout_flag(chat)
    connection_flags(chat)

    sessions = verbs.add_parser("sessions", help="list an agent's sessions (id, turns, last activity, state)")
    sessions.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(sessions)

    history = verbs.add_parser("history", help="print a session's conversation")
    history.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    history.add_argument("--session", metavar="ID", required=True, help="session id")
    history.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(history)
    for parser in (chat, sessions, history):
        parser.set_defaults(handler=run_verb)


def take_message(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """`chat AGENT --session ID MESSAGE`: argparse matches AGENT and the optional MESSAGE together, so a
    MESSAGE after the options is left over; take it. Any other leftover is an error, as with `parse_args`."""
    if not extra:
        return
    one_word = len(extra) == 1 and not extra[0].startswith("-")
    if getattr(args, "verb", None) == "chat" and args.message is None and one_word:
        args.message = extra[0]
        return
    parser.error(f"unrecognized arguments: {' '.join(extra)}")


async def run_verb(args: argparse.Namespace, out: Renderer) -> int:
    """Run the conversation verb `args.verb`."""
    from durable_agents_cli.targeting import connect_client as _client
    from durable_agents_cli.targeting import resolve_target as _resolve_target
    from durable_agents_runtime.session_client import SessionNotFoundError

    target = _resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    client = await _client(args, target.task_queue)
    try:
        if args.verb == "chat":
            return await _chat(client, target, args, out)
        if args.verb == "sessions":
            return await _sessions(client, target, args, out)
        return await _history(client, target, args, out)
    except SessionNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE


# --- chat -----------------------------------------------------------------------------------------------


async def _chat(client: Client, target: Any, args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_cli.targeting import no_worker_hint as _no_worker_hint
    from durable_agents_cli.targeting import parse_deps as _parse_deps
    from durable_agents_cli.targeting import worker_polls as _worker_polls
    from durable_agents_runtime.session_client import SessionError, check_session_id

    deps = _parse_deps(args.deps)
    session_id = check_session_id(args.session) if args.session else f"chat-{uuid.uuid4().hex[:12]}"
    if not args.session:
        print(f"session {session_id} (continue it with --session {session_id})", file=sys.stderr, flush=True)
    # A message to a queue nobody polls would wait for a worker forever, in silence.
    if await _worker_polls(client, target.task_queue, timeout=args.worker_timeout) is False:
        print(
            f"error: no worker polls task queue {target.task_queue!r} (waited {args.worker_timeout:g}s)."
            f"{_no_worker_hint(target)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NO_WORKER
    stream = out.rich if args.stream is None else args.stream
    if args.message is not None:
        reply = await _turn(client, target, session_id, args.message, deps, args, out, stream=stream)
        _show(reply, args, out, streamed=stream)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        out.line(f"Chatting with {target.name} (session {session_id}); /exit or Ctrl-D ends.", style="dim")
    while True:
        line = await asyncio.to_thread(_read_line, "you> " if interactive else "")
        if line is None or line.strip() in _QUIT:
            return 0
        if not line.strip():
            continue
        try:
            reply = await _turn(client, target, session_id, line, deps, args, out, stream=stream)
        except SessionError as exc:
            out.line(f"error: {exc}", style="bold red")
            if not interactive:
                return 1
            continue
        _show(reply, args, out, streamed=stream)


def _say_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _read_line(prompt: str) -> str | None:
    """The next line (without its newline), or None at the end of input."""
    if not prompt:
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None
    try:
        return input(prompt)
    except EOFError:
        return None


def _show(reply: SessionReply, args: argparse.Namespace, out: Renderer, *, streamed: bool) -> None:
    if args.json:
        data = {
            "session": reply.session_id,
            "turn": reply.turn,
            "output": reply.output,
            "usage": {
                "requests": reply.usage.requests,
                "inputTokens": reply.usage.input_tokens,
                "outputTokens": reply.usage.output_tokens,
                "toolCalls": reply.usage.tool_calls,
            },
            "toolCalls": [{"toolName": c.tool_name, "args": c.args} for c in reply.tool_calls],
        }
        print(json.dumps(data, default=str), flush=True)
    elif not streamed:
        out.line(reply.output_text)


async def _turn(
    client: Client,
    target: Any,
    session_id: str,
    prompt: str,
    deps: Any,
    args: argparse.Namespace,
    out: Renderer,
    *,
    stream: bool,
) -> SessionReply:
    """Send one message; with `stream`, print the reply's text as it is written (and the reply itself if
    nothing was streamed)."""
    from durable_agents_api.contract import SessionMessage
    from durable_agents_cli.decisions import decider, watch_pending
    from durable_agents_runtime.session_client import SessionNotFoundError, read_info, send_message

    message = SessionMessage(prompt=prompt, deps=deps, model=args.model, stream=stream)
    common = {"agent": target.name, "task_queue": target.task_queue, "session_id": session_id}
    offset = 0
    if stream:
        with contextlib.suppress(SessionNotFoundError):
            offset = (await read_info(client, **common)).stream_offset
    watcher: asyncio.Task[bool] | None = None
    waiting: asyncio.Task[None] | None = None
    shown = _Shown()

    async def watch(handle: WorkflowHandle[Any, Any]) -> None:
        nonlocal watcher, waiting
        if stream:
            watcher = asyncio.create_task(_print_events(client, handle, offset, out, shown))
        # A turn that waits for a decision says so; on a terminal it asks for it inline.
        waiting = asyncio.create_task(
            watch_pending(
                handle,
                _say_to_stderr if args.json else (lambda line: out.line(line, style="yellow")),
                ask=sys.stdin.isatty(),
                decided_by=decider(),
                flags=f" --address {args.address}" if args.address else "",
            )
        )

    try:
        reply = await send_message(client, message=message, on_started=watch, **common)
    finally:
        if waiting is not None:
            waiting.cancel()
    if watcher is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher, _STREAM_TAIL_SECONDS)
    # What was streamed counts even when the stream's last events trail past the tail wait.
    if not shown.text and not args.json and stream:
        out.line(reply.output_text)
    out.end_text()
    return reply


class _Shown:
    """Whether any of a turn's text has been printed from its event stream yet."""

    text = False


async def _print_events(
    client: Client, handle: WorkflowHandle[Any, Any], offset: int, out: Renderer, shown: _Shown
) -> bool:
    """Print this turn's events from `offset` to its final event (marking `shown` at the first text);
    whether any text was printed."""
    from datetime import timedelta

    from pydantic_ai.durable_exec.temporal import stream_agent_events
    from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from durable_agents_api.contract import EVENT_TOPIC_QUERY

    try:
        topic = await handle.query(
            EVENT_TOPIC_QUERY, result_type=cast(type, str | None), rpc_timeout=timedelta(seconds=20)
        )
    except (RPCError, WorkflowQueryFailedError):
        return False
    if topic is None:
        return False
    printed = False
    try:
        async for event in stream_agent_events(client, handle, topic, from_offset=offset):
            out.event(event)
            started_text = isinstance(event, PartStartEvent) and isinstance(event.part, TextPart)
            delta_text = isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta)
            printed = printed or started_text or delta_text
            shown.text = printed
    except RPCError:
        return printed
    return printed


# --- sessions and history -------------------------------------------------------------------------------


async def _sessions(client: Client, target: Any, args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.session_client import list_sessions

    sessions = await list_sessions(client, task_queue=target.task_queue)
    if args.json:
        print(json.dumps([s.to_dict() for s in sessions], indent=2), flush=True)
        return 0
    if not sessions:
        out.line(f"Agent {target.name} has no sessions (task queue {target.task_queue}).")
        return 0
    rows = [
        (
            s.session_id,
            str(s.turns),
            s.last_activity.isoformat(timespec="seconds") if s.last_activity else "-",
            s.state,
        )
        for s in sessions
    ]
    header = ("SESSION", "TURNS", "LAST ACTIVITY", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _history(client: Client, target: Any, args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.session_client import check_session_id, read_history, read_info

    session_id = check_session_id(args.session)
    common = {"agent": target.name, "task_queue": target.task_queue, "session_id": session_id}
    entries = await read_history(client, **common)
    info = await read_info(client, **common)
    if args.json:
        data = {
            "session": session_id,
            "turns": info.turns,
            "state": info.state,
            "trimmedTurns": info.trimmed_turns,
            "entries": [e.model_dump() for e in entries],
        }
        print(json.dumps(data, indent=2), flush=True)
        return 0
    out.line(f"Session {session_id} of {target.name}: {info.turns} turns, {info.state}", style="bold")
    if info.trimmed_turns:
        dropped = f"({info.trimmed_turns} older turns were dropped or summarised: sessions.history)"
        out.line(dropped, style="dim")
    styles = {"user": "bold", "agent": None, "tool": "cyan", "summary": "dim"}
    for entry in entries:
        out.line(f"{entry.role}: {entry.text}", style=styles[entry.role])
    return 0
