"""Rollout: a config change with a run in flight, as a new version next to the old one vs in place.

Both sides serve our agent (`durable-agents worker` processes) on a fresh task queue. The change starts
once the old and the new worker both poll and a run is 1 s into a 3 s tool on the old one (worker start-up
is the cold-start benchmark's business):

- ours (versioned): the new version is made current (`versioning.promote`); the old worker keeps serving
  its pinned run. Rollout = the change → a new run completed on the new version. Drain = the change → the
  old version has no open run (`versioning.pinned_open_runs`, from visibility).
- baseline (in place, what an unversioned rolling update does): the old worker gets SIGTERM (it finishes
  its in-flight tool, then exits); the run in flight continues on whichever worker takes its next task,
  the new code included. Rollout = the change → a new run completed; drain = the change → the old
  process exited.

Run: `.venv/bin/python -m bench.rollout [--quick]`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion

from bench._agents import prompt_for
from bench._cli import run_cli
from bench._harness import WorkerProcess, connect, dev_server, wait_for_poller, workdir
from bench._stats import Row, ratio, summarize
from bench._targets import Target, ours_target

__all__ = ["TOOL_SECONDS", "Trial", "rollout_rows", "run"]

TOOL_SECONDS = 3.0
"""The in-flight run's tool: what a drain has to wait for."""
GOAL_ROLLOUT_RATIO = 1.5
"""A versioned rollout may cost at most half again an in-place one (registration + promotion)."""


@dataclass(frozen=True)
class Trial:
    """Seconds from the change to a new run served, and to the old side being empty."""

    rollout: float
    drain: float


def _side(label: str, build_id: str | None) -> Target:
    overrides: dict[str, Any] = {"versioning": {"buildId": build_id}} if build_id else {}
    return ours_target(label=label, overrides=overrides)


async def _start(client: Client, target: Target, queue: str, prompt: str) -> Any:
    return await client.start_workflow(
        target.workflow, target.argument(prompt), id=f"bench-rollout-{uuid.uuid4()}", task_queue=queue
    )


async def _trial(client: Client, address: str, work: Path, index: int, *, versioned: bool) -> Trial:
    from durable_agents_runtime.versioning import pinned_open_runs, promote

    queue = f"bench-rollout-{'v' if versioned else 'inplace'}-{index}"
    old_side, new_side = _side("old", "b1" if versioned else None), _side("new", "b2" if versioned else None)
    deployment = queue  # no dots in the queue: the derived deployment name is the queue itself
    old: WorkerProcess = old_side.worker(address, queue, work, tag=f"-{index}")
    new: WorkerProcess | None = None
    try:
        old.start()
        await wait_for_poller(client, queue, old.pid, timeout=120, worker=old)
        if versioned:
            await promote(client, WorkerDeploymentVersion(deployment, "b1"), timeout=60)
        # Built only now: a side writes its config file (named after the queue) when its worker is built.
        new = new_side.worker(address, queue, work, tag=f"-{index}").start()
        await wait_for_poller(client, queue, new.pid, timeout=120, worker=new)
        # Worker start-up is left out (it is the cold-start benchmark's): the change starts with both
        # workers polling and a run inside its tool on the old one.
        in_flight = await _start(client, old_side, queue, prompt_for(TOOL_SECONDS))
        await asyncio.sleep(1.0)
        changed = time.monotonic()
        if versioned:
            await promote(client, WorkerDeploymentVersion(deployment, "b2"), timeout=60)
        else:
            assert old.process is not None
            old.process.terminate()
        fresh = await _start(client, new_side, queue, "hi")
        await asyncio.wait_for(fresh.result(), 60)
        rollout = time.monotonic() - changed
        if versioned:
            while await pinned_open_runs(client, WorkerDeploymentVersion(deployment, "b1")):
                await asyncio.sleep(0.05)
        else:
            assert old.process is not None
            await asyncio.to_thread(old.process.wait, 60)
        drain = time.monotonic() - changed
        await asyncio.wait_for(in_flight.result(), 60)
        return Trial(rollout=rollout, drain=drain)
    finally:
        old.stop()
        if new is not None:
            new.stop()


def rollout_rows(ours: list[Trial], baseline: list[Trial]) -> list[Row]:
    """Rows: change → new run served, and change → old side empty (ours vs in place)."""
    ours_rollout, base_rollout = summarize(t.rollout for t in ours), summarize(t.rollout for t in baseline)
    ours_drain, base_drain = summarize(t.drain for t in ours), summarize(t.drain for t in baseline)
    rollout_ratio = ratio(ours_rollout.median, base_rollout.median)
    return [
        Row(
            benchmark="rollout: change -> new run served by the new worker",
            ours=ours_rollout.format("s"),
            baseline=base_rollout.format("s"),
            ratio=rollout_ratio,
            goal=f"<= {GOAL_ROLLOUT_RATIO:g}x in place",
            met=rollout_ratio is not None and rollout_ratio <= GOAL_ROLLOUT_RATIO,
            note=f"{len(ours)} trials per side; ours includes registration and set-current",
        ),
        Row(
            benchmark=f"drain: change -> old side empty ({TOOL_SECONDS - 1:g} s of tool left)",
            ours=ours_drain.format("s"),
            baseline=base_drain.format("s"),
            ratio=ratio(ours_drain.median, base_drain.median),
            goal="the in-flight tool's rest, plus little",
            met=None,
            note="ours: no open run on the old version (visibility); baseline: the old process exited",
        ),
    ]


async def run(quick: bool = False) -> list[Row]:
    """Alternate versioned and in-place rollouts; returns the table rows."""
    repeats = 2 if quick else 5
    trials: dict[bool, list[Trial]] = {True: [], False: []}
    with workdir("bench-rollout-") as work, dev_server(work) as server:
        client = await connect(server.address)
        for index in range(repeats):
            for versioned in (True, False) if index % 2 == 0 else (False, True):
                trials[versioned].append(
                    await _trial(client, server.address, work, index, versioned=versioned)
                )
    return rollout_rows(trials[True], trials[False])


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="2 trials per side instead of 5")


if __name__ == "__main__":
    main()
