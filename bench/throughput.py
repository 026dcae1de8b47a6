"""Throughput and latency: agent runs with one tool call (three activities) on one dev server.

Sides: our worker with our defaults (`durable-agents worker` from a RuntimeConfig), the bare
pydantic-ai + Temporal worker with library defaults, the floor (a plain Temporal workflow running the same
three activities with no pydantic-ai, bench/_floor.py), and — as a separate, opt-in row — our worker
with the workflow sandbox off. Ours is judged against the bare worker (no durable overhead of ours) and
against the floor (how close to what Temporal allows); the bare worker's ratio to the floor is shown
beside it. Each scenario (sequential, 20 and 50 concurrent) is a closed loop: that many
clients each start a run and wait for its result, then start the next. Repetitions alternate the sides'
order; every figure is the median of the repetitions with the min-max beside it.

Run: `.venv/bin/python -m bench.throughput [--quick]`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from temporalio.client import Client

from bench._agents import prompt_for
from bench._cli import run_cli
from bench._harness import connect, cpu_seconds, dev_server, wait_for_poller, within, workdir
from bench._stats import Row, Summary, percentile, ratio, summarize
from bench._targets import Target, baseline_target, floor_target, ours_available, ours_target

__all__ = ["Trial", "floor_row", "run", "scenario_rows", "trial_from"]

THROUGHPUT_GOAL = 1.0
"""ours runs/s >= 1.0x the bare pydantic-ai + Temporal worker: our defaults cost nothing."""
LATENCY_GOAL = 1.0
"""ours p50 latency <= 1.0x the bare worker's."""
FLOOR_GOAL = 0.8
"""ours runs/s >= 0.8x the floor (a plain Temporal workflow with the same three activities)."""


@dataclass(frozen=True)
class Trial:
    """One closed-loop measurement of one side."""

    runs_per_second: float
    p50: float
    p95: float
    cpu_per_run: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """CPU seconds per run used by the worker, the dev server and the client: where the time goes."""


def trial_from(
    latencies: list[float], elapsed: float, cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> Trial:
    """Runs/s and latency percentiles of one closed loop (`elapsed` = wall time of the whole loop).

    `cpu` is the CPU seconds (worker, server, client) the loop used in total.
    """
    if elapsed <= 0:
        raise ValueError("elapsed time must be positive")
    runs = len(latencies)
    return Trial(
        runs_per_second=runs / elapsed,
        p50=percentile(latencies, 50),
        p95=percentile(latencies, 95),
        cpu_per_run=(cpu[0] / runs, cpu[1] / runs, cpu[2] / runs),
    )


async def closed_loop(
    client: Client, target: Target, task_queue: str, concurrency: int, runs: int, pids: tuple[int, int]
) -> Trial:
    """`concurrency` clients run `runs` agent runs in total, back to back; latency is start → result.

    `pids` are the worker's and the dev server's, whose CPU time is recorded alongside.
    """
    latencies: list[float] = []
    remaining = runs
    argument = target.argument(prompt_for(0))

    async def client_loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.monotonic()
            await client.execute_workflow(
                target.workflow, argument, id=f"bench-{uuid.uuid4()}", task_queue=task_queue
            )
            latencies.append(time.monotonic() - started)

    cpu_before = (cpu_seconds(pids[0]), cpu_seconds(pids[1]), time.process_time())
    began = time.monotonic()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    cpu_after = (cpu_seconds(pids[0]), cpu_seconds(pids[1]), time.process_time())
    used = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1], cpu_after[2] - cpu_before[2])
    return trial_from(latencies, elapsed, used)


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    runs: int


def scenarios(quick: bool) -> list[Scenario]:
    """Sequential, 20 and 50 concurrent; quick mode runs fewer runs per trial."""
    if quick:
        return [
            Scenario("sequential", 1, 10),
            Scenario("20 concurrent", 20, 40),
            Scenario("50 concurrent", 50, 100),
        ]
    return [
        Scenario("sequential", 1, 30),
        Scenario("20 concurrent", 20, 120),
        Scenario("50 concurrent", 50, 200),
    ]


def scenario_rows(
    scenario: str, side: str, ours: list[Trial], baseline: list[Trial], *, judged: bool
) -> list[Row]:
    """Two table rows (runs/s; p50 latency with p95 in the note) for one side against the baseline.

    `judged` is False for opt-in variants: they are shown against the baseline but have no goal.
    """
    ours_p50 = summarize(t.p50 for t in ours)
    base_p50 = summarize(t.p50 for t in baseline)
    ours_p95 = summarize(t.p95 for t in ours)
    base_p95 = summarize(t.p95 for t in baseline)
    p50_ratio = ratio(ours_p50.median, base_p50.median)
    p95_ratio = ratio(ours_p95.median, base_p95.median)
    prefix = f"throughput, {scenario}" + ("" if side == "ours" else f" [{side}]")
    p95_note = f"p95 {_ms(ours_p95)} vs {_ms(base_p95)}" + (f" ({p95_ratio:.2f}x)" if p95_ratio else "")
    return [
        _rate_row(
            f"{prefix}: runs/s",
            ours,
            baseline,
            goal=THROUGHPUT_GOAL if judged else None,
            no_goal="opt-in, no goal",
            note=f"{len(ours)} repetitions; ",
        ),
        Row(
            benchmark=f"{prefix}: p50 latency",
            ours=_ms(ours_p50),
            baseline=_ms(base_p50),
            ratio=p50_ratio,
            goal=f"<= {LATENCY_GOAL:g}x" if judged else "opt-in, no goal",
            met=(p50_ratio is not None and p50_ratio <= LATENCY_GOAL) if judged else None,
            note=p95_note,
        ),
    ]


def floor_row(scenario: str, side: str, trials: list[Trial], floor: list[Trial], *, judged: bool) -> Row:
    """One row: `side`'s runs/s against the floor's, judged on `FLOOR_GOAL` for ours only."""
    benchmark = f"throughput, {scenario} [{side} / floor]: runs/s"
    return _rate_row(benchmark, trials, floor, goal=FLOOR_GOAL if judged else None, no_goal="shown, no goal")


def _rate_row(
    benchmark: str,
    trials: list[Trial],
    against: list[Trial],
    *,
    goal: float | None,
    no_goal: str,
    note: str = "",
) -> Row:
    """Median runs/s of `trials` against `against`'s, met when the ratio reaches `goal` (None: not judged)."""
    rate = summarize(t.runs_per_second for t in trials)
    other = summarize(t.runs_per_second for t in against)
    rate_ratio = ratio(rate.median, other.median)
    return Row(
        benchmark=benchmark,
        ours=rate.format("runs/s"),
        baseline=other.format("runs/s"),
        ratio=rate_ratio,
        goal=f">= {goal:g}x" if goal is not None else no_goal,
        met=(rate_ratio is not None and rate_ratio >= goal) if goal is not None else None,
        note=f"{note}CPU ms/run (worker, server, client): {_cpu(trials)} vs {_cpu(against)}",
    )


def _cpu(trials: list[Trial]) -> str:
    medians = [summarize(t.cpu_per_run[i] for t in trials).median * 1000 for i in range(3)]
    return "/".join(f"{m:.0f}" for m in medians)


def _ms(summary: Summary) -> str:
    return summary.format("ms", digits=0, scale=1000)


async def run(quick: bool = False, *, repeats: int | None = None) -> list[Row]:
    """Measure every scenario for every side and return the table rows."""
    repeats = repeats or (3 if quick else 5)
    baseline, floor = baseline_target(), floor_target()
    sides: list[tuple[Target, bool]] = [(baseline, False), (floor, False)]
    unavailable = ours_available()
    if unavailable is None:
        sides += [
            (ours_target(), True),
            (ours_target(label="ours, sandbox off", overrides={"worker": {"sandbox": False}}), False),
        ]
    results: dict[tuple[str, str], list[Trial]] = {}
    with workdir("bench-throughput-") as work, dev_server(work) as server:
        client = await connect(server.address)
        workers = []
        try:
            queues: dict[str, str] = {}
            for target, _ in sides:
                queue = f"bench-{target.label.replace(' ', '-').replace(',', '')}"
                worker = target.worker(server.address, queue, work).start()
                workers.append(worker)
                queues[target.label] = queue
                await wait_for_poller(client, queue, worker.pid, timeout=120, worker=worker)
            # Warm-up: imports inside the sandbox, sticky caches, connection pools.
            by_label = dict(zip((t.label for t, _ in sides), workers, strict=True))
            for target, _ in sides:
                pids = (by_label[target.label].pid, server.process.pid)
                warm_up = closed_loop(client, target, queues[target.label], 10, 30, pids)
                await within(warm_up, 180, by_label[target.label], f"{target.label} warm-up")
            for scenario in scenarios(quick):
                for repetition in range(repeats):
                    order = sides if repetition % 2 == 0 else list(reversed(sides))
                    for target, _ in order:
                        pids = (by_label[target.label].pid, server.process.pid)
                        queue = queues[target.label]
                        loop = closed_loop(client, target, queue, scenario.concurrency, scenario.runs, pids)
                        what = f"{target.label}, {scenario.name}"
                        trial = await within(loop, 60 + 2 * scenario.runs, by_label[target.label], what)
                        results.setdefault((scenario.name, target.label), []).append(trial)
            for worker in workers:
                worker.check_alive()
        finally:
            for worker in workers:
                worker.stop()
    rows: list[Row] = []
    for scenario in scenarios(quick):
        base_trials = results[(scenario.name, baseline.label)]
        if unavailable is not None:
            rows.append(
                Row(
                    f"throughput, {scenario.name}",
                    "not measured",
                    summarize(t.runs_per_second for t in base_trials).format("runs/s"),
                    None,
                    f">= {THROUGHPUT_GOAL:g}x runs/s, <= {LATENCY_GOAL:g}x p50",
                    None,
                    unavailable,
                )
            )
            continue
        floor_trials = results[(scenario.name, floor.label)]
        for target, judged in sides[2:]:
            trials = results[(scenario.name, target.label)]
            rows += scenario_rows(scenario.name, target.label, trials, base_trials, judged=judged)
            if judged:
                rows.append(floor_row(scenario.name, target.label, trials, floor_trials, judged=True))
        rows.append(floor_row(scenario.name, baseline.label, base_trials, floor_trials, judged=False))
    return rows


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="fewer runs per trial and 3 repetitions instead of 5")


if __name__ == "__main__":
    main()
