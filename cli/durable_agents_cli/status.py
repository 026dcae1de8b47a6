"""`durable-agents status`: the health the operator would write into the DurableAgent's status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from durable_agents_api.contract import SESSION_WORKFLOW_NAME, WORKFLOW_NAME
from durable_agents_cli.targeting import (
    EXIT_FAILED,
    connect_client,
    connection_flags,
    no_worker_hint,
    resolve_target,
)

if TYPE_CHECKING:
    from durable_agents_cli.render import Renderer

__all__ = ["AWAITING_SAMPLE", "add_parser"]

AWAITING_SAMPLE = 100
"""`status` counts the runs (and the sessions) awaiting a decision among this many newest ones (one query
per running workflow)."""


async def status_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_operator.health_status import health_fields
    from durable_agents_runtime.health import read_health

    target = resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    client = await connect_client(args, target.task_queue)
    health = (await read_health(client, [target.task_queue]))[target.task_queue]
    waiting = await _awaiting(client, target.task_queue, WORKFLOW_NAME) if health.running else 0
    sessions = await _awaiting(client, target.task_queue, SESSION_WORKFLOW_NAME)
    if args.json:
        fields = {**health_fields(health), "awaitingDecision": waiting, "sessionsAwaitingDecision": sessions}
        print(json.dumps(fields, default=str, indent=2), flush=True)
    else:
        out.line(f"Agent {target.name}", style="bold")
        out.health(health)
        if waiting:
            out.line(f"Awaiting a decision: {waiting} run(s) (`durable-agents runs {args.agent}` lists them)")
        if sessions:
            chat = f"durable-agents chat {args.agent} --session ID"
            out.line(f"Awaiting a decision: {sessions} session(s) (`{chat}` shows the waiting call)")
    if target.guessed and health.reachable and health.workers == 0:
        print(
            f"note: no worker polls task queue {target.task_queue!r}.{no_worker_hint(target)}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_FAILED if health.error else 0


async def _awaiting(client: Any, task_queue: str, workflow_type: str) -> int | None:
    """Workflows of `workflow_type` (runs or sessions) among the newest `AWAITING_SAMPLE` that wait on a
    decision; None when Temporal would not say."""
    from temporalio.service import RPCError

    from durable_agents_runtime.decisions import awaiting, list_runs

    try:
        return awaiting(
            await list_runs(client, task_queue, limit=AWAITING_SAMPLE, workflow_type=workflow_type)
        )
    except RPCError:
        return None


def add_parser(verbs: argparse._SubParsersAction) -> None:
    status = verbs.add_parser("status", help="the health the operator would write into status")
    status.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    status.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(status)
    status.set_defaults(handler=status_verb)
