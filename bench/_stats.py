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
    "bounded_median",
    "bounded_ratio",
    "format_bounded",
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


def bounded_median(values: Sequence[float | None]) -> float:
    """Median where None means "exceeded the bound" (counted as infinite); inf if that is the median."""
    if not values:
        raise ValueError("median of no values: measure at least one sample")
    ordered = sorted(math.inf if v is None else v for v in values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    low, high = ordered[middle - 1], ordered[middle]
    return math.inf if math.isinf(high) else (low + high) / 2


def format_bounded(values: Sequence[float | None], bound: float, unit: str = "s", digits: int = 1) -> str:
    """Like `Summary.format`, for measurements capped at `bound` (None = did not finish within it)."""
    measured = [v for v in values if v is not None]
    exceeded = len(values) - len(measured)
    if math.isinf(bounded_median(values)):
        return f"> {bound:g} {unit}" + (f" ({exceeded} of {len(values)})" if len(values) > 1 else "")
    text = summarize(measured).format(unit, digits)
    if exceeded:
        text += f", {exceeded} of {len(values)} > {bound:g} {unit}"
    return text


def bounded_ratio(ours: float, baseline: float, bound: float) -> tuple[float | None, str]:
    """ours / baseline, where an infinite baseline (it exceeded `bound`) gives an upper bound `< ours/bound`.

    Returns the ratio and the prefix to print before it ("" or "<").
    """
    if math.isinf(baseline):
        return (None, "") if math.isinf(ours) else (ours / bound, "<")
    return ratio(ours, baseline), ""


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
    ratio_prefix: str = ""
    """"<" when the baseline was capped, so the ratio is an upper bound."""


def _format_ratio(value: float | None, prefix: str = "") -> str:
    return "n/a" if value is None else f"{prefix}{value:.2f}x"


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
            _format_ratio(row.ratio, row.ratio_prefix),
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
