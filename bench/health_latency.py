"""Health latency: how fast `read_health` notices a worker start and a worker death (SIGKILL).

Measured on one real worker process per trial (ours when available, else the baseline worker: the
signal, not the worker, is under test):
- start: process spawn → `read_health` reports 1 live worker (includes the worker's own cold start);
- death: SIGKILL → `read_health` reports 0 live workers.
`read_health` runs with its default `live_within` (DEFAULT_LIVE_WITHIN in durable_agents_runtime.health).

Baseline: the raw poller list of `DescribeTaskQueue` (no last-access filtering) on the same worker —
when the worker's identity first appears, and how long the dead worker stays listed (minutes). The first
trial follows the raw list until the dead worker disappears or a bound passes; later trials only time ours.
The worker idles for a different time before each kill so kills land at different points of its
long polls.

Run: `.venv/bin/python -m bench.health_latency [--quick]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from bench._cli import run_cli
from bench._harness import WorkerProcess, connect, dev_server, poller_identities, workdir
from bench._stats import Row, bounded_median, bounded_ratio, format_bounded
from bench._targets import Target, baseline_target, ours_available, ours_target

__all__ = ["GOAL_SECONDS", "Trial", "health_rows", "run"]

GOAL_SECONDS = 15.0
POLL_INTERVAL = 0.25
OURS_BOUND = 120.0


@dataclass(frozen=True)
class Trial:
    """Seconds to see the start and the death; None = not within the bound."""

    ours_start: float | None
    ours_death: float | None
    raw_start: float | None
    raw_death: float | None


def health_available() -> str | None:
    """None when `durable_agents_runtime.health.read_health` exists, else why not."""
    try:
        from durable_agents_runtime.health import read_health  # noqa: F401
    except ImportError as exc:
        return f"durable_agents_runtime.health not importable yet ({exc})"
    return None


def _ours_workers(client: Client, queue: str) -> Callable[[], Awaitable[int]]:
    from durable_agents_runtime.health import read_health

    async def workers() -> int:
        health = await read_health(client, [queue])
        return health[queue].workers

    return workers


async def _until(predicate: Callable[[], Awaitable[bool]], since: float, bound: float) -> float | None:
    """Seconds from `since` until `predicate` holds, polled every 250 ms; None after `bound` seconds."""
    while time.monotonic() - since < bound:
        if await predicate():
            return time.monotonic() - since
        await asyncio.sleep(POLL_INTERVAL)
    return None


async def trial(
    client: Client, target: Target, address: str, work: Path, index: int, *, idle: float, raw_bound: float
) -> Trial:
    """Spawn a worker, time both signals seeing it, idle, SIGKILL it, time both signals losing it."""
    queue = f"bench-health-{index}"
    worker: WorkerProcess = target.worker(address, queue, work, tag=f"-health-{index}").start()
    ours_workers = _ours_workers(client, queue)
    prefix = f"{worker.pid}@"

    async def listed() -> bool:
        return any(identity.startswith(prefix) for identity in await poller_identities(client, queue))

    async def not_listed() -> bool:
        return not await listed()

    async def ours_sees_one() -> bool:
        worker.check_alive()
        return await ours_workers() == 1

    async def ours_sees_none() -> bool:
        return await ours_workers() == 0

    try:
        ours_start, raw_start = await asyncio.gather(
            _until(ours_sees_one, worker.started, OURS_BOUND), _until(listed, worker.started, OURS_BOUND)
        )
        await asyncio.sleep(idle)
        killed = worker.kill9()
        ours_death, raw_death = await asyncio.gather(
            _until(ours_sees_none, killed, OURS_BOUND),
            _until(not_listed, killed, raw_bound) if raw_bound > 0 else asyncio.sleep(0, None),
        )
        return Trial(ours_start, ours_death, raw_start, raw_death)
    finally:
        worker.stop()


def health_rows(trials: list[Trial], raw_bound: float) -> list[Row]:
    """Two rows (start, death): ours via read_health vs the raw poller list."""
    rows = []
    for event, ours_values, raw_values in (
        ("start -> 1 live worker", [t.ours_start for t in trials], [t.raw_start for t in trials]),
        ("SIGKILL -> 0 live workers", [t.ours_death for t in trials], [t.raw_death for t in trials[:1]]),
    ):
        ours_median = bounded_median(ours_values)
        value, prefix = bounded_ratio(ours_median, bounded_median(raw_values), raw_bound)
        rows.append(
            Row(
                benchmark=f"health: {event}",
                ours=format_bounded(ours_values, bound=OURS_BOUND),
                baseline=format_bounded(raw_values, bound=raw_bound),
                ratio=value,
                ratio_prefix=prefix,
                goal=f"<= {GOAL_SECONDS:g} s",
                met=ours_median <= GOAL_SECONDS,
                note="read_health (default live_within) vs raw DescribeTaskQueue pollers"
                + ("; start includes the worker's cold start" if event.startswith("start") else ""),
            )
        )
    return rows


async def run(quick: bool = False) -> list[Row]:
    """Start/kill trials; returns the two table rows."""
    if (unavailable := health_available()) is not None:
        return [Row("health latency", "not measured", "not measured", None, "", None, unavailable)]
    target = ours_target() if ours_available() is None else baseline_target()
    # Idle times before the kill: spread over a long poll (the server holds polls up to about a minute).
    idles = [5.0, 25.0] if quick else [5.0, 20.0, 35.0, 50.0]
    raw_bound = 30.0 if quick else 400.0
    trials = []
    with workdir("bench-health-") as work, dev_server(work) as server:
        client = await connect(server.address)
        for index, idle in enumerate(idles):
            bound = raw_bound if index == 0 else 0.0
            trials.append(
                await trial(client, target, server.address, work, index, idle=idle, raw_bound=bound)
            )
    return health_rows(trials, raw_bound)


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="2 trials, the raw poller list followed for 30 s at most")


if __name__ == "__main__":
    main()
