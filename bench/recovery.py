"""Crash recovery: SIGKILL the worker in the middle of a slow tool, start a replacement at once.

Measured: time from the kill to the run's completion, minus the tool's own duration (the tool runs
again, in full, on the replacement: activities are at-least-once). What remains is what the crash cost:
the replacement's start-up, the time until Temporal notices the lost activity (heartbeat or
start-to-close timeout) and hands the workflow task to the new worker (sticky schedule-to-start
timeout). Each trial uses a fresh task queue.

Sides: our worker with our defaults vs the library defaults. The library's tool activities have no
heartbeat timeout, so the loss is only seen at the 60 s start-to-close timeout; the baseline is capped
at a bound (reported as "> bound") except in the full run, whose bound is long enough to measure it.

Run: `.venv/bin/python -m bench.recovery [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle

from bench._agents import TOOLSET_ID, prompt_for
from bench._cli import run_cli
from bench._harness import connect, dev_server, wait_for_poller, within, workdir
from bench._stats import (
    Row,
    bounded_median,
    bounded_ratio,
    format_bounded,
    summarize,
)
from bench._targets import Target, baseline_target, ours_available, ours_target

__all__ = ["GOAL_SECONDS", "TOOL_SECONDS", "Trial", "recovery_row", "run"]

TOOL_SECONDS = 3.0
KILL_AFTER = 1.0
"""Seconds into the tool at which the worker is killed."""
GOAL_SECONDS = 10.0


@dataclass(frozen=True)
class Trial:
    """One kill-and-replace: `recovery` is None when the run did not finish within the bound."""

    recovery: float | None
    replacement_start: float
    """Spawn of the replacement → its first poll (part of `recovery`)."""


async def _tool_started(handle: WorkflowHandle) -> None:
    while True:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            # Tool activities are named `agent__<agent>__toolset__<toolset id>__call_tool`.
            is_tool = f"__toolset__{TOOLSET_ID}__" in pending.activity_type.name
            if is_tool and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                return
        await asyncio.sleep(0.02)


async def trial(client: Client, target: Target, address: str, work: Path, index: int, bound: float) -> Trial:
    """One kill-and-replace of `target`'s worker during the slow tool."""
    queue = f"bench-recovery-{target.label.replace(' ', '-')}-{index}"
    first = target.worker(address, queue, work, tag=f"-{index}a").start()
    replacement = target.worker(address, queue, work, tag=f"-{index}b")
    try:
        await wait_for_poller(client, queue, first.pid, timeout=120, worker=first)
        handle = await client.start_workflow(
            target.workflow,
            target.argument(prompt_for(TOOL_SECONDS)),
            id=f"bench-recovery-{uuid.uuid4()}",
            task_queue=queue,
        )
        await within(_tool_started(handle), 60, first, "the tool activity's start")
        await asyncio.sleep(KILL_AFTER)
        killed = first.kill9()
        replacement.start()
        polled = asyncio.create_task(wait_for_poller(client, queue, replacement.pid, timeout=bound))
        try:
            await asyncio.wait_for(handle.result(), timeout=bound + TOOL_SECONDS)
            recovery: float | None = time.monotonic() - killed - TOOL_SECONDS
        except TimeoutError:
            recovery = None
            with contextlib.suppress(Exception):
                await handle.terminate("benchmark bound reached")
        first_poll = await polled
        return Trial(recovery=recovery, replacement_start=first_poll - replacement.started)
    finally:
        first.stop()
        replacement.stop()


def recovery_row(ours: list[Trial], baseline: list[Trial], baseline_bound: float) -> Row:
    """The table row: median recovery of each side, ours/baseline, goal <= 10 s for ours."""
    ours_values = [t.recovery for t in ours]
    base_values = [t.recovery for t in baseline]
    ours_median = bounded_median(ours_values)
    value, prefix = bounded_ratio(ours_median, bounded_median(base_values), baseline_bound)
    starts = summarize(t.replacement_start for t in ours).format("s", 1)
    return Row(
        benchmark=f"recovery after SIGKILL mid-tool ({TOOL_SECONDS:g} s tool)",
        ours=format_bounded(ours_values, bound=baseline_bound),
        baseline=format_bounded(base_values, bound=baseline_bound),
        ratio=value,
        ratio_prefix=prefix,
        goal=f"<= {GOAL_SECONDS:g} s",
        met=ours_median <= GOAL_SECONDS,
        note=f"kill -> done - tool time; includes the replacement's start-up ({starts} for ours)",
    )


async def run(quick: bool = False) -> list[Row]:
    """Kill-and-replace trials for both sides; returns the table row."""
    if (unavailable := ours_available()) is not None:
        ours_targets: list[Target] = []
    else:
        ours_targets = [ours_target()]
    ours_repeats = 2 if quick else 3
    # Full runs measure the library default once, completely (notes: 66 s); quick runs cap it.
    baseline_repeats, baseline_bound = (1, 20.0) if quick else (1, 150.0)
    ours_trials: list[Trial] = []
    base_trials: list[Trial] = []
    with workdir("bench-recovery-") as work, dev_server(work) as server:
        client = await connect(server.address)
        for index in range(max(ours_repeats, baseline_repeats)):
            if index < baseline_repeats:
                base_trials.append(
                    await trial(client, baseline_target(), server.address, work, index, baseline_bound)
                )
            for target in ours_targets if index < ours_repeats else []:
                ours_trials.append(await trial(client, target, server.address, work, index, baseline_bound))
    if not ours_trials:
        return [
            Row(
                f"recovery after SIGKILL mid-tool ({TOOL_SECONDS:g} s tool)",
                "not measured",
                format_bounded([t.recovery for t in base_trials], bound=baseline_bound),
                None,
                f"<= {GOAL_SECONDS:g} s",
                None,
                unavailable or "",
            )
        ]
    return [recovery_row(ours_trials, base_trials, baseline_bound)]


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="fewer trials; the baseline capped at 20 s")


if __name__ == "__main__":
    main()
