"""Health latency: how fast a liveness signal notices a worker start and a worker death (SIGKILL).

One worker process per trial (the baseline worker: the signal, not the worker, is under test; it polls
exactly as ours does), watched by three signals at once, each polled every 250 ms:
- ours: `durable_agents_runtime.health.read_health` with its default `live_within` (pollers whose last
  poll is recent): what `durable-agents status` shows and the operator writes into status;
- baseline: the raw poller list of `DescribeTaskQueue`, with no last-access filtering;
- candidate: SDK worker heartbeats (`Runtime(worker_heartbeat_interval=3s)` in the worker) read with
  `ListWorkers`, a worker counting as live while its last heartbeat is under 3 intervals old. Not in
  the product: measured to show what would meet the goal.
Start = process spawn → the signal shows the worker (includes the worker's cold start); death = SIGKILL →
the signal no longer shows it. The first trial follows the raw list until the dead worker disappears or a
bound passes; later trials stop timing it. The worker idles for a different time before each kill, so
kills land at different points of its long polls.

Run: `.venv/bin/python -m bench.health_latency [--quick]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.workflowservice.v1 import ListWorkersRequest
from temporalio.client import Client

from bench._cli import run_cli
from bench._harness import connect, dev_server, poller_identities, workdir
from bench._stats import Row, bounded_median, bounded_ratio, format_bounded
from bench._targets import baseline_target

__all__ = ["GOAL_SECONDS", "HEARTBEAT_SECONDS", "Trial", "health_rows", "run"]

GOAL_SECONDS = 15.0
POLL_INTERVAL = 0.25
BOUND = 120.0
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_MISSES = 3
"""A worker whose last heartbeat is older than this many intervals counts as gone."""

Seen = Callable[[], Awaitable[bool]]
"""Does the signal currently show the worker under test?"""


@dataclass(frozen=True)
class Trial:
    """Seconds to see the start and the death, per signal; None = not within the bound."""

    ours_start: float | None
    ours_death: float | None
    raw_start: float | None
    raw_death: float | None
    heartbeat_start: float | None
    heartbeat_death: float | None


def health_available() -> str | None:
    """None when `durable_agents_runtime.health.read_health` exists, else why not."""
    try:
        from durable_agents_runtime.health import read_health  # noqa: F401
    except ImportError as exc:
        return f"durable_agents_runtime.health not importable yet ({exc})"
    return None


def _signals(client: Client, queue: str, pid: int) -> tuple[Seen, Seen, Seen]:
    from durable_agents_runtime.health import read_health

    identity = f"{pid}@"

    async def ours() -> bool:
        return (await read_health(client, [queue]))[queue].workers > 0

    async def raw() -> bool:
        return any(i.startswith(identity) for i in await poller_identities(client, queue))

    async def heartbeat() -> bool:
        response = await client.workflow_service.list_workers(
            ListWorkersRequest(namespace=client.namespace, query=f"TaskQueue='{queue}'")
        )
        now = datetime.now(UTC)
        for info in response.workers_info:
            beat = info.worker_heartbeat
            if beat.worker_identity.startswith(identity):
                age = (now - beat.heartbeat_time.ToDatetime(tzinfo=UTC)).total_seconds()
                return age < HEARTBEAT_MISSES * HEARTBEAT_SECONDS
        return False

    return ours, raw, heartbeat


async def _until(seen: Seen, want: bool, since: float, bound: float) -> float | None:
    """Seconds from `since` until `seen()` equals `want`; None after `bound` seconds (0: not timed)."""
    while time.monotonic() - since < bound:
        if await seen() == want:
            return time.monotonic() - since
        await asyncio.sleep(POLL_INTERVAL)
    return None


async def trial(
    client: Client, address: str, work: Path, index: int, *, idle: float, raw_bound: float
) -> Trial:
    """Spawn a worker, time every signal seeing it, idle, SIGKILL it, time every signal losing it."""
    queue = f"bench-health-{index}"
    target = baseline_target(worker_heartbeat=HEARTBEAT_SECONDS)
    worker = target.worker(address, queue, work, tag=f"-health-{index}").start()
    ours, raw, heartbeat = _signals(client, queue, worker.pid)
    try:
        starts = await asyncio.gather(
            *(_until(seen, True, worker.started, BOUND) for seen in (ours, raw, heartbeat))
        )
        worker.check_alive()
        await asyncio.sleep(idle)
        killed = worker.kill9()
        ours_death, raw_death, heartbeat_death = await asyncio.gather(
            _until(ours, False, killed, BOUND),
            _until(raw, False, killed, raw_bound),
            _until(heartbeat, False, killed, BOUND),
        )
        return Trial(starts[0], ours_death, starts[1], raw_death, starts[2], heartbeat_death)
    finally:
        worker.stop()


def health_rows(trials: list[Trial], raw_bound: float) -> list[Row]:
    """Rows for start and death: ours vs the raw poller list, then the heartbeat candidate vs the same."""
    rows = []
    for event, attr, raw_trials in (
        ("start -> worker shown", "start", trials),
        ("SIGKILL -> worker gone", "death", trials[:1]),
    ):
        raw_values = [getattr(t, f"raw_{attr}") for t in raw_trials]
        raw_median = bounded_median(raw_values)
        for side, label, note in (
            ("ours", "read_health", "read_health (default live_within) vs raw DescribeTaskQueue pollers"),
            (
                "heartbeat",
                "candidate: worker heartbeats",
                f"ListWorkers, heartbeat every {HEARTBEAT_SECONDS:g} s, gone after {HEARTBEAT_MISSES} missed "
                "(not in the product)",
            ),
        ):
            values = [getattr(t, f"{side}_{attr}") for t in trials]
            median = bounded_median(values)
            value, prefix = bounded_ratio(median, raw_median, raw_bound)
            rows.append(
                Row(
                    benchmark=f"health, {label}: {event}",
                    ours=format_bounded(values, bound=BOUND),
                    baseline=format_bounded(raw_values, bound=raw_bound),
                    ratio=value,
                    ratio_prefix=prefix,
                    goal=f"<= {GOAL_SECONDS:g} s" if side == "ours" else "",
                    met=median <= GOAL_SECONDS if side == "ours" else None,
                    note=note + ("; includes the worker's cold start" if attr == "start" else ""),
                )
            )
    return rows


async def run(quick: bool = False) -> list[Row]:
    """Start/kill trials; returns the table rows."""
    if (unavailable := health_available()) is not None:
        return [Row("health latency", "not measured", "not measured", None, "", None, unavailable)]
    # Idle times before the kill, spread over a long poll (the server holds polls up to about a minute).
    idles = [5.0, 25.0] if quick else [5.0, 20.0, 35.0, 50.0]
    raw_bound = 30.0 if quick else 400.0
    trials = []
    with workdir("bench-health-") as work, dev_server(work) as server:
        client = await connect(server.address)
        for index, idle in enumerate(idles):
            bound = raw_bound if index == 0 else 0.0
            trials.append(await trial(client, server.address, work, index, idle=idle, raw_bound=bound))
    return health_rows(trials, raw_bound)


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="2 trials, the raw poller list followed for 30 s at most")


if __name__ == "__main__":
    main()
