"""Arithmetic and reporting shared by the benchmarks: summaries, ratios, the Markdown table.

Pure functions on numbers so the smoke test can check them on fixed inputs without timing anything.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Row",
    "Summary",
    "machine_line",
    "markdown_table",
    "percentile",
    "ratio",
    "summarize",
]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values: measure at least one sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Median and range of one metric over repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    def format(self, unit: str = "", digits: int = 2, scale: float = 1.0) -> str:
        """`median unit (low-high)`, e.g. `5.21 runs/s (4.90-5.60)`; only the median when n == 1."""
        suffix = f" {unit}" if unit else ""
        text = f"{self.median * scale:.{digits}f}{suffix}"
        if self.n > 1:
            text += f" ({self.low * scale:.{digits}f}-{self.high * scale:.{digits}f})"
        return text


def summarize(values: Iterable[float]) -> Summary:
    """Median, min and max of repeated measurements."""
    data = list(values)
    if not data:
        raise ValueError("nothing to summarize: the benchmark produced no measurements")
    return Summary(median=percentile(data, 50), low=min(data), high=max(data), n=len(data))


def ratio(ours: float, baseline: float) -> float | None:
    """ours / baseline, or None when the baseline is zero (no meaningful ratio)."""
    if baseline == 0:
        return None
    return ours / baseline


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    ours: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None
    """None when the goal could not be judged (e.g. the benchmark did not run)."""
    note: str = ""


def _format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _format_met(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "n/a"}[value]


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table: benchmark, ours, baseline, ratio, goal, met?, note."""
    header = "| benchmark | ours | baseline | ratio | goal | met? | note |"
    rule = "|---|---|---|---|---|---|---|"
    lines = [header, rule]
    for row in rows:
        cells = [
            row.benchmark,
            row.ours,
            row.baseline,
            _format_ratio(row.ratio),
            row.goal,
            _format_met(row.met),
            row.note,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def machine_line(now: Callable[[], datetime.datetime] | None = None) -> str:
    """Date, cores, memory and load average: results on a shared machine mean little without them."""
    stamp = (now or (lambda: datetime.datetime.now(datetime.UTC)))().strftime("%Y-%m-%d %H:%M UTC")
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{stamp}; {os.cpu_count()} cores{memory}; load average (1/5/15 min) {load}; "
        f"Python {platform.python_version()}"
    )
