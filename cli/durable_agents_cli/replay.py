"""`durable-agents replay`: replay an agent's recent runs against a new manifest (the replay gate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from durable_agents_cli.targeting import (
    DEFAULT_ADDRESS,
    EXIT_FAILED,
    connect_client,
    connection_flags,
    resolve_target,
)

if TYPE_CHECKING:
    from durable_agents_cli.render import Renderer

__all__ = ["add_parser"]

DEFAULT_REPLAY_HISTORIES = 20
"""Recent runs `replay` replays (replay_gate.DEFAULT_HISTORIES; not imported so `--help` stays instant)."""


async def replay_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.errors import ConfigError
    from durable_agents_api.manifest import load_manifests, runtime_config
    from durable_agents_runtime.replay_gate import check

    if args.histories < 1:
        raise ConfigError(f"--histories {args.histories}: replay at least 1 run")
    target = resolve_target(args.agent, manifest=args.file, task_queue=args.task_queue)
    source = args.manifest or args.file or (args.agent if Path(args.agent).is_file() else None)
    if source is None:
        raise ConfigError(
            f"replay needs the config to check: pass --manifest NEW.yaml for agent {args.agent!r}"
        )
    new = [m for m in load_manifests([source]) if target.name in (m.name, m.agent.metadata.name)]
    if not new:
        raise ConfigError(
            f"{source} has no DurableAgent {target.name!r} (by metadata.name or spec.agent.name)"
        )
    config = runtime_config(new[0], address=DEFAULT_ADDRESS)
    # The runs to replay are the target's, whatever queue the new manifest names.
    config = config.model_copy(
        update={"temporal": config.temporal.model_copy(update={"task_queue": target.task_queue})}
    )
    report = await check(await connect_client(args, target.task_queue), config, histories=args.histories)
    out.line(report.summary(), style="bold green" if report.ok else "bold red")
    for mismatch in report.mismatches:
        out.line(f"  {mismatch.describe()}")
    return 0 if report.ok else EXIT_FAILED


def add_parser(verbs: argparse._SubParsersAction) -> None:
    replay = verbs.add_parser(
        "replay",
        help="replay an agent's recent runs against a new manifest (the rollout's replay gate)",
        description="Replay the most recent running and completed runs of AGENT with the workflow a worker "
        "for the new manifest would run, and refuse a change those runs cannot survive (a removed tool, a "
        "renamed toolset or agent), naming the workflow id and the first mismatching command. Exit codes: "
        "0 every run replays, 1 refused (or the check could not run), 2 usage error.",
    )
    replay.add_argument("agent", metavar="AGENT", help="manifest path or agent name")
    replay.add_argument(
        "--manifest", metavar="NEW.yaml", help="the changed manifest to check (default: AGENT's manifest)"
    )
    replay.add_argument(
        "--histories",
        type=int,
        default=DEFAULT_REPLAY_HISTORIES,
        metavar="N",
        help=f"how many recent runs to replay (default {DEFAULT_REPLAY_HISTORIES})",
    )
    connection_flags(replay)
    replay.set_defaults(handler=replay_verb)
