"""`schedules AGENT` (an agent's Temporal Schedules) and `trigger AGENT SCHEDULE` (run one now), and the
`durable-agents dev` half: a manifest's `spec.schedules` synced onto the embedded server at start and
again whenever the manifest file changes (`durable_agents_runtime.schedules`, as the operator does).

The agent is named as elsewhere (a manifest path, `-f MANIFEST AGENT`, or a bare name); schedules are
found by the agent's `metadata.name` and Kubernetes namespace (`--agent-namespace`, default the
manifest's, else `default`), which make up their ids `schedule:<namespace>/<agent>/<schedule>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from durable_agents_cli.targeting import EXIT_FAILED, EXIT_USAGE, connection_flags

if TYPE_CHECKING:
    from temporalio.client import Client

    from durable_agents_cli.render import Renderer

__all__ = ["add_parsers", "dev_sync", "dev_watch"]

DEV_WATCH_INTERVAL = 1.0
"""Seconds between checks of the manifest files for schedule changes under `dev`."""
OVERLAPS = ("skip", "bufferOne", "bufferAll", "allowAll", "cancelOther", "terminateOther")


def add_parsers(verbs: Any) -> None:
    """Add `schedules` and `trigger` to the `durable-agents` sub-parsers."""
    listing = verbs.add_parser(
        "schedules",
        help="list an agent's schedules (next run, paused, last run and how it went)",
        description="List the Temporal Schedules of an agent's spec.schedules, as the operator or `dev` "
        "created them.",
    )
    listing.add_argument("agent", metavar="AGENT", help="manifest path or agent name (metadata.name)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    trigger = verbs.add_parser(
        "trigger",
        help="run one of an agent's schedules now",
        description="Start a run of the schedule now, with its prompt, and print the run's workflow id "
        "(`durable-agents result ID` waits for it). The schedule's overlap policy applies: with `skip`, "
        f"no run starts while the previous one runs (exit {EXIT_FAILED}). Exit {EXIT_USAGE}: no such "
        "schedule.",
    )
    trigger.add_argument("agent", metavar="AGENT", help="manifest path or agent name (metadata.name)")
    trigger.add_argument("schedule", metavar="SCHEDULE", help="the schedule's name")
    trigger.add_argument(
        "--overlap", choices=OVERLAPS, help="overlap policy for this run (default: the schedule's)"
    )
    trigger.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the run to start (default 10)",
    )
    for parser in (listing, trigger):
        parser.add_argument(
            "--agent-namespace",
            metavar="NAMESPACE",
            help="the agent's Kubernetes namespace (default: the manifest's, else `default`)",
        )
        parser.add_argument(
            "-f",
            "--file",
            metavar="MANIFEST",
            help="manifest holding AGENT (by metadata.name or spec.agent.name)",
        )
        connection_flags(parser, agent=False)
        parser.set_defaults(handler=run_verb)


@dataclass(frozen=True)
class _Agent:
    namespace: str
    name: str


def _agent(args: argparse.Namespace) -> _Agent:
    from durable_agents_api.errors import ConfigError
    from durable_agents_api.manifest import load_manifests

    path = args.file
    if path is None and (Path(args.agent).is_file() or args.agent.endswith((".yaml", ".yml"))):
        path = args.agent
    if path is None:
        return _Agent(args.agent_namespace or "default", args.agent)
    loaded = load_manifests([path])
    if args.file is not None:
        loaded = [m for m in loaded if args.agent in (m.name, m.agent.metadata.name)]
        if not loaded:
            raise ConfigError(
                f"{path} has no DurableAgent with metadata.name or spec.agent.name {args.agent!r}"
            )
    meta = loaded[0].agent.metadata
    return _Agent(args.agent_namespace or meta.namespace or "default", meta.name or loaded[0].name)


async def run_verb(args: argparse.Namespace, out: Renderer) -> int:
    """Run `schedules` or `trigger`."""
    from durable_agents_cli.targeting import connect_client
    from durable_agents_runtime.errors import ScheduleNotFoundError

    agent = _agent(args)
    client = await connect_client(args)
    try:
        if args.verb == "schedules":
            return await _list(client, agent, args, out)
        return await _trigger(client, agent, args, out)
    except ScheduleNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE


def _time(value: Any) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else "-"


async def _list(client: Client, agent: _Agent, args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.schedules import list_schedules

    found = await list_schedules(client, agent.namespace, agent.name)
    if args.json:
        rows = [{**s.to_status(), "overlap": s.overlap, "runs": s.runs, "skipped": s.skipped} for s in found]
        print(json.dumps(rows, indent=2), flush=True)
        return 0
    if not found:
        out.line(f"Agent {agent.namespace}/{agent.name} has no schedules in Temporal.")
        return 0
    header = ("SCHEDULE", "NEXT RUN", "PAUSED", "OVERLAP", "RUNS", "LAST RUN", "PHASE")
    rows_text = [
        (s.name, _time(s.next_run_time), "yes" if s.paused else "no", s.overlap, str(s.runs),
         s.last_run_id or "-", s.last_run_phase or "-")
        for s in found
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows_text]) for i in range(len(header))]
    for row in [header, *rows_text]:
        out.line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _trigger(client: Client, agent: _Agent, args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_runtime.schedules import trigger_schedule

    run = await trigger_schedule(
        client, agent.namespace, agent.name, args.schedule, overlap=args.overlap, wait=args.wait
    )
    if run is None:
        print(
            f"error: schedule {args.schedule!r} started no run within {args.wait:g}s: its overlap policy "
            "skipped it while the previous run still runs (see `durable-agents schedules`); pass "
            "--overlap allowAll to start one anyway",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    out.line(run)
    return 0


# --- durable-agents dev ---------------------------------------------------------------------------------


async def dev_sync(client: Client, manifests: Sequence[Any], say: Callable[[str], None]) -> None:
    """Make the embedded server's schedules match `manifests` (each a `LoadedManifest`) and say what
    each schedule does next; an error names the manifest and goes on with the others."""
    from durable_agents_api.errors import DurableAgentsError
    from durable_agents_runtime.schedules import ScheduleOwner, sync_schedules

    for manifest in manifests:
        meta = manifest.agent.metadata
        spec = manifest.agent.spec
        owner = ScheduleOwner(
            meta.namespace or "default", meta.name or manifest.name, manifest.task_queue, spec.paused
        )
        try:
            result = await sync_schedules(client, owner, spec.schedules or [])
        except DurableAgentsError as exc:
            say(f"warning: {manifest.source}: schedules not synced: {exc}")
            continue
        for sid in result.plan.delete:
            say(f"Schedule {sid} deleted (no longer in {manifest.source})")
        for seen in result.schedules:
            state = "paused" if seen.paused else f"next run {_time(seen.next_run_time)}"
            hint = f"durable-agents trigger {owner.agent} {seen.name}"
            say(f"Schedule {seen.name} of agent {owner.agent}: {state} (`{hint}` runs it now)")


async def dev_watch(
    client: Client, paths: Sequence[str], stopping: asyncio.Event, say: Callable[[str], None]
) -> None:
    """Until `stopping`: whenever a manifest file changes, sync the schedules of all of them again."""
    from durable_agents_api.errors import ConfigError
    from durable_agents_api.manifest import load_manifests

    def stamps() -> list[float | None]:
        return [p.stat().st_mtime if p.exists() else None for p in map(Path, paths)]

    seen = stamps()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), DEV_WATCH_INTERVAL)
        now = stamps()
        if now == seen or stopping.is_set():
            continue
        seen = now
        try:
            manifests = load_manifests(paths)
        except ConfigError as exc:
            say(f"warning: schedules unchanged: {exc}")
            continue
        await dev_sync(client, manifests, say)
