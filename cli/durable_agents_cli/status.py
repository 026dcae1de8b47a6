"""`durable-agents status`: the health the operator would write into the DurableAgent's status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from durable_agents_cli.targeting import (
    EXIT_FAILED,
    connect_client,
    connection_flags,
    no_worker_hint,
    resolve_target,
)

if TYPE_CHECKING:
    from durable_agents_cli.render import Renderer

__all__ = ["add_parser"]


async def status_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_operator.health_status import health_fields
    from durable_agents_runtime.health import read_health

    target = resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    client = await connect_client(args, target.task_queue)
    health = (await read_health(client, [target.task_queue]))[target.task_queue]
    if args.json:
        print(json.dumps(health_fields(health), default=str, indent=2), flush=True)
    else:
        out.line(f"Agent {target.name}", style="bold")
        out.health(health)
    if target.guessed and health.reachable and health.workers == 0:
        print(
            f"note: no worker polls task queue {target.task_queue!r}.{no_worker_hint(target)}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_FAILED if health.error else 0


def add_parser(verbs: argparse._SubParsersAction) -> None:
    status = verbs.add_parser("status", help="the health the operator would write into status")
    status.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    status.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(status)
    status.set_defaults(handler=status_verb)
