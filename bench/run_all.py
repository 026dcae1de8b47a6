"""Run every benchmark and print one Markdown table: benchmark, ours, baseline, ratio, goal, met?

Run: `.venv/bin/python -m bench.run_all [--quick] [--only throughput,recovery,...]`
(or `.venv/bin/python bench/run_all.py`). Each benchmark starts its own dev server; a benchmark that
fails or cannot run yet gets a row saying why instead of stopping the others. The machine's load average
is printed for each benchmark, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

if __package__ in (None, ""):
    # Run as a script (`python bench/run_all.py`): make `bench` importable from the repo root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import stop_on_sigterm
from bench._stats import Row, machine_line, markdown_table

__all__ = ["BENCHMARKS", "main", "run_benchmarks"]

BENCHMARKS = (
    "throughput",
    "recovery",
    "health_latency",
    "cold_start",
    "operator_scale",
    "approvals",
    "rollout",
    "session_length",
)
"""Module names under bench/, in the order they run."""


async def run_benchmarks(names: list[str], quick: bool) -> tuple[list[Row], list[str]]:
    """Run the named benchmarks one after another; returns the rows and one load line per benchmark."""
    rows: list[Row] = []
    loads: list[str] = []
    for name in names:
        began = time.monotonic()
        start = machine_line()
        try:
            module = importlib.import_module(f"bench.{name}")
            run = cast(Callable[[bool], Awaitable[list[Row]]], module.run)
            rows += await run(quick)
        except Exception as exc:
            traceback.print_exc()
            rows.append(Row(name, "failed", "failed", None, "", None, f"{type(exc).__name__}: {exc}"[:300]))
        loads.append(f"- {name} ({time.monotonic() - began:.0f} s): start {start}; end {machine_line()}")
    return rows, loads


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, the slow baselines capped")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}: choose from {', '.join(BENCHMARKS)}")
    stop_on_sigterm()
    rows, loads = asyncio.run(run_benchmarks(names, args.quick))
    print(markdown_table(rows))
    print("\nMachine and load per benchmark:")
    print("\n".join(loads))


if __name__ == "__main__":
    main()
