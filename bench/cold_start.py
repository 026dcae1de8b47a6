"""Cold start: worker process spawn → first poll on Temporal (and, for ours, readiness 200).

Sides: `durable-agents worker` from a RuntimeConfig vs the bare-library baseline worker
(`python -m bench._baseline`: import pydantic_ai and temporalio, build the agent, connect, run a default
`Worker`). First poll = the worker's identity (`<pid>@host`) appears among the task queue's pollers
(checked every 20 ms). Trials alternate sides, each on a fresh task queue.

Run: `.venv/bin/python -m bench.cold_start [--quick]`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client

from bench._cli import run_cli
from bench._harness import WorkerProcess, connect, dev_server, wait_for_poller, workdir
from bench._stats import Row, ratio, summarize
from bench._targets import Target, baseline_target, ours_available, ours_target

__all__ = ["GOAL_SECONDS", "Trial", "cold_start_rows", "run"]

GOAL_SECONDS = 1.0


@dataclass(frozen=True)
class Trial:
    """Seconds from spawn to the first poll, and to readiness 200 (None for the baseline)."""

    first_poll: float
    ready: float | None


async def _wait_ready(port: int, worker: WorkerProcess, timeout: float) -> float:
    from durable_agents_api.contract import READINESS_PATH

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=0.5) as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(f"http://127.0.0.1:{port}{READINESS_PATH}")
                if response.status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            worker.check_alive()
            await asyncio.sleep(0.02)
    raise TimeoutError(f"readiness on port {port} not 200 within {timeout:.0f}s")


async def trial(client: Client, target: Target, address: str, work: Path, index: int) -> Trial:
    """Spawn one worker on a fresh task queue and time its first poll (and readiness)."""
    queue = f"bench-cold-{target.label.replace(' ', '-')}-{index}"
    worker = target.worker(address, queue, work, tag=f"-{index}")
    try:
        worker.start()
        port = target.health_port.get(queue)
        ready_task = asyncio.create_task(_wait_ready(port, worker, 60)) if port else None
        first_poll = await wait_for_poller(client, queue, worker.pid, timeout=60, worker=worker)
        ready = (await ready_task) - worker.started if ready_task else None
        return Trial(first_poll=first_poll - worker.started, ready=ready)
    finally:
        worker.stop()


def cold_start_rows(ours: list[Trial], baseline: list[Trial]) -> list[Row]:
    """Rows: spawn → first poll (ours vs baseline) and spawn → readiness 200 (ours vs baseline's poll)."""
    base = summarize(t.first_poll for t in baseline)
    polled = summarize(t.first_poll for t in ours)
    rows = [
        Row(
            benchmark="cold start: spawn -> first poll",
            ours=polled.format("s"),
            baseline=base.format("s"),
            ratio=ratio(polled.median, base.median),
            goal=f"<= {GOAL_SECONDS:g} s",
            met=polled.median <= GOAL_SECONDS,
            note=f"{len(ours)} trials per side",
        )
    ]
    readies = [t.ready for t in ours if t.ready is not None]
    if readies:
        ready = summarize(readies)
        rows.append(
            Row(
                benchmark="cold start: spawn -> readiness 200",
                ours=ready.format("s"),
                baseline=base.format("s"),
                ratio=ratio(ready.median, base.median),
                goal=f"<= {GOAL_SECONDS:g} s",
                met=ready.median <= GOAL_SECONDS,
                note="baseline has no readiness endpoint: its first poll",
            )
        )
    return rows


async def run(quick: bool = False) -> list[Row]:
    """Alternate cold starts of both sides; returns the table rows."""
    repeats = 3 if quick else 7
    unavailable = ours_available()
    sides = [baseline_target()] + ([ours_target()] if unavailable is None else [])
    trials: dict[str, list[Trial]] = {}
    with workdir("bench-cold-") as work, dev_server(work) as server:
        client = await connect(server.address)
        for index in range(repeats):
            for target in sides if index % 2 == 0 else list(reversed(sides)):
                result = await trial(client, target, server.address, work, index)
                trials.setdefault(target.label, []).append(result)
    base = trials["baseline"]
    if unavailable is not None:
        return [
            Row(
                "cold start: spawn -> first poll",
                "not measured",
                summarize(t.first_poll for t in base).format("s"),
                None,
                f"<= {GOAL_SECONDS:g} s",
                None,
                unavailable,
            )
        ]
    return cold_start_rows(trials["ours"], base)


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="3 trials per side instead of 7")


if __name__ == "__main__":
    main()
