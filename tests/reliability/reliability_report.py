"""Figures of the reliability suite: each test records its own, the session prints them all at the end.

`record(name, figures)` writes `<repo>/.state/reliability/<name>.json`; `python
tests/reliability/reliability_report.py` prints every recorded file (the latest run of each test), and the
suite's conftest prints the ones written during the session in pytest's terminal summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

REPORT_DIR = Path(__file__).resolve().parents[2] / ".state" / "reliability"


def record(name: str, figures: dict[str, Any]) -> Path:
    """Store one test's figures (a flat mapping of label → value) under `name`; return the file."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.json"
    path.write_text(json.dumps({"recorded": time.time(), "figures": figures}, indent=1, default=str))
    return path


def render(name: str, figures: dict[str, Any]) -> str:
    width = max((len(str(k)) for k in figures), default=0)
    lines = [f"[{name}]"]
    lines += [f"  {str(label).ljust(width)}  {value}" for label, value in figures.items()]
    return "\n".join(lines)


def recorded(since: float = 0.0) -> list[tuple[str, dict[str, Any]]]:
    """(name, figures) of every file recorded at or after `since` (a `time.time()`), by name."""
    if not REPORT_DIR.is_dir():
        return []
    found = []
    for path in sorted(REPORT_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        if data["recorded"] >= since:
            found.append((path.stem, data["figures"]))
    return found


def main() -> int:
    entries = recorded()
    if not entries:
        print(f"no reliability figures recorded in {REPORT_DIR}: run `pytest tests/reliability` first")
        return 1
    for name, figures in entries:
        print(render(name, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
