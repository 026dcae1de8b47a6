"""`record` of the reliability suite's figures (tests/reliability/reliability_report.py), for e2e tests."""

from __future__ import annotations

import importlib.util
from typing import Any

from .support import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "reliability_report", REPO_ROOT / "tests" / "reliability" / "reliability_report.py"
)
assert _spec is not None and _spec.loader is not None
_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_report)


def record(name: str, figures: dict[str, Any]) -> None:
    """Store one test's figures; the suite prints them at the end of the session."""
    _report.record(name, figures)
