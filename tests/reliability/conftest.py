"""Fixtures of the reliability suite and the figures it prints at the end of the session."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The MCP test server of the runtime tier (tests/runtime/mcp_server.py) is reused here.
RUNTIME_TESTS = HERE.parent / "runtime"
if str(RUNTIME_TESTS) not in sys.path:
    sys.path.append(str(RUNTIME_TESTS))

import reliability_report  # noqa: E402  (after the path set-up above)
from mcp_server import McpServerProcess, start_mcp_server  # noqa: E402

_session_started = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    entries = reliability_report.recorded(since=_session_started)
    if entries:
        terminalreporter.section("reliability figures")
        for name, figures in entries:
            terminalreporter.write_line(reliability_report.render(name, figures))


@pytest.fixture
def mcp_calc(tmp_path: Path) -> Iterator[McpServerProcess]:
    """The runtime tier's MCP test server (streamable HTTP), logging each tool call with its arguments."""
    with start_mcp_server(tmp_path) as server:
        yield server
