"""Which settings move throughput: our worker with one setting changed at a time, against the baseline.

Not part of run_all's table; it backs the tuning proposals in bench/README.md. Each variant runs the
20-concurrent closed loop of bench/throughput.py; variants that need a different dev server (dynamic
config) get their own server with the baseline measured again on it. CPU time per run of the worker and
the dev server is the figure to read on a shared machine: it does not depend on what else is running.

Run: `.venv/bin/python -m bench.variants [--quick] [--only label,label]`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench._harness import connect, dev_server, stop_on_sigterm, wait_for_poller, within, workdir
from bench._stats import Row, machine_line, markdown_table, ratio, summarize
from bench._targets import Target, baseline_target, ours_target
from bench.throughput import Trial, closed_loop

__all__ = ["VARIANTS", "Variant", "run"]

_NO_EVENTS = {"worker": {"eventStream": {"enabled": False}}}
_NO_LOGFIRE = {"observability": {"logfire": {"enabled": False}}}
_NO_SANDBOX = {"worker": {"sandbox": False}}
# The benchmark's tool does no I/O, so it may run inside the workflow: one activity (and two workflow
# tasks) fewer per run. Only valid for such tools; shown for what fewer round trips are worth.
_TOOL_IN_WORKFLOW = {"activities": {"tools": {"bench": {"work": False}}}}
EAGER_ACTIVITIES = ("--dynamic-config-value", "system.enableActivityEagerExecution=true")


@dataclass(frozen=True)
class Variant:
    """Our worker with `overrides` merged into its RuntimeConfig, on a server started with `server_args`."""

    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    server_args: tuple[str, ...] = ()


def _both(*parts: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            merged[key] = {**merged.get(key, {}), **value}
    return merged


VARIANTS = (
    Variant("ours (defaults)"),
    Variant("event stream off", _NO_EVENTS),
    Variant("logfire off", _NO_LOGFIRE),
    Variant("event stream + logfire off", _both(_NO_EVENTS, _NO_LOGFIRE)),
    Variant("sandbox off", _NO_SANDBOX),
    Variant("event stream + logfire + sandbox off", _both(_NO_EVENTS, _NO_LOGFIRE, _NO_SANDBOX)),
    Variant(
        "event stream + logfire off, tool in workflow", _both(_NO_EVENTS, _NO_LOGFIRE, _TOOL_IN_WORKFLOW)
    ),
    Variant("ours (defaults), server: eager activities", server_args=EAGER_ACTIVITIES),
    Variant(
        "event stream + logfire off, server: eager activities",
        _both(_NO_EVENTS, _NO_LOGFIRE),
        server_args=EAGER_ACTIVITIES,
    ),
)


def _row(label: str, ours: list[Trial], base: list[Trial]) -> Row:
    rate, base_rate = (summarize(t.runs_per_second for t in trials) for trials in (ours, base))
    cpu = [summarize(t.cpu_per_run[i] for t in ours).median * 1000 for i in range(2)]
    base_cpu = [summarize(t.cpu_per_run[i] for t in base).median * 1000 for i in range(2)]
    p50, base_p50 = (summarize(t.p50 for t in trials).median for trials in (ours, base))
    return Row(
        benchmark=f"20 concurrent: {label}",
        ours=f"{rate.format('runs/s')}; CPU ms/run {cpu[0]:.0f} worker, {cpu[1]:.0f} server",
        baseline=f"{base_rate.format('runs/s')}; "
        f"CPU ms/run {base_cpu[0]:.0f} worker, {base_cpu[1]:.0f} server",
        ratio=ratio(rate.median, base_rate.median),
        goal="",
        met=None,
        note=f"p50 {p50 * 1000:.0f} ms vs {base_p50 * 1000:.0f} ms",
    )


async def _measure_group(
    server_args: Sequence[str], variants: list[Variant], repeats: int, runs: int
) -> list[Row]:
    sides: list[tuple[str, Target]] = [("baseline", baseline_target())]
    sides += [(v.label, ours_target(label=f"v{i}", overrides=v.overrides)) for i, v in enumerate(variants)]
    trials: dict[str, list[Trial]] = {}
    with workdir("bench-variants-") as work, dev_server(work, server_args) as server:
        client = await connect(server.address)
        workers = {}
        try:
            for label, target in sides:
                queue = f"bench-{target.label}"
                worker = target.worker(server.address, queue, work).start()
                workers[label] = (worker, queue, target)
                await wait_for_poller(client, queue, worker.pid, timeout=120, worker=worker)
            for label, (worker, queue, target) in workers.items():
                pids = (worker.pid, server.process.pid)
                await within(
                    closed_loop(client, target, queue, 10, 30, pids), 180, worker, f"{label} warm-up"
                )
            for repetition in range(repeats):
                order = list(workers.items())
                for label, (worker, queue, target) in order if repetition % 2 == 0 else reversed(order):
                    pids = (worker.pid, server.process.pid)
                    loop = closed_loop(client, target, queue, 20, runs, pids)
                    trials.setdefault(label, []).append(await within(loop, 60 + 2 * runs, worker, label))
        finally:
            for worker, _, _ in workers.values():
                worker.stop()
    return [_row(v.label, trials[v.label], trials["baseline"]) for v in variants]


async def run(quick: bool = False, only: Sequence[str] = ()) -> list[Row]:
    """Measure every variant (grouped by server configuration) against a baseline on the same server."""
    chosen = [v for v in VARIANTS if not only or v.label in only]
    groups: dict[tuple[str, ...], list[Variant]] = {}
    for variant in chosen:
        groups.setdefault(variant.server_args, []).append(variant)
    rows: list[Row] = []
    for server_args, variants in groups.items():
        rows += await _measure_group(
            server_args, variants, repeats=2 if quick else 4, runs=60 if quick else 100
        )
    return rows


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repetitions of 60 runs instead of 4 of 100")
    parser.add_argument("--only", default="", help="comma-separated variant labels")
    args = parser.parse_args()
    stop_on_sigterm()
    only = [label.strip() for label in args.only.split(",") if label.strip()]
    start = machine_line()
    rows = asyncio.run(run(args.quick, only))
    print(markdown_table(rows))
    print(f"\nstart: {start}\nend:   {machine_line()}")


if __name__ == "__main__":
    main()
