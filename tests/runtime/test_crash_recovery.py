"""A worker killed with SIGKILL in the middle of a tool call: a new worker finishes the run.

Completed activities come from the workflow history and are not executed again; only the activity that
was in flight runs a second time (at-least-once). Executions are counted in a file written by the tools
(`slow_tools.py`), because the process that ran them is gone.

The recovery time (kill → completion, minus the slow tool's own duration) is printed, not asserted: timing
claims belong in bench/. The bound below only keeps the test from hanging.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from slow_tools import agent_config, executions, start_run_into_the_slow_tool, worker_env
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

SLOW_SECONDS = 4.0
COMPLETION_BOUND = 60.0


async def completed_activities(handle: WorkflowHandle[Any, Any]) -> int:
    events = [event async for event in handle.fetch_history_events()]
    return sum(1 for event in events if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)


async def test_worker_killed_mid_tool_run_completes_once(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    config = agent_config(temporal_dev_server, "crash_agent")
    log = tmp_path / "tools.log"
    first = start_worker(config, **worker_env(log, SLOW_SECONDS))

    handle = await start_run_into_the_slow_tool(
        temporal_client, config, log, worker_pid=first.pid, id_prefix="crash"
    )
    # The first model request and the fast tool have completed in the history; the slow tool has not.
    with anyio.fail_after(10):
        while await completed_activities(handle) < 2:
            await anyio.sleep(0.05)

    first.kill()
    killed_at = time.monotonic()
    second = start_worker(config, **worker_env(log, SLOW_SECONDS))
    with anyio.fail_after(COMPLETION_BOUND):
        result = await handle.result()
    recovery = time.monotonic() - killed_at - SLOW_SECONDS
    startup = second.ready_at - second.started_at if second.ready_at is not None else float("nan")
    print(
        f"\nkill -9 recovery: {recovery:.2f}s (kill → completion minus the {SLOW_SECONDS:.0f}s tool; "
        f"the new worker took {startup:.2f}s to become ready)"
    )

    assert "fast:" in result.output_text and "slow:" in result.output_text
    starts = Counter(tool for event, tool, _ in executions(log) if event == "start")
    assert starts["fast_step"] == 1, "a tool whose activity had completed ran again after the crash"
    assert starts["slow_step"] == 2, "the in-flight tool runs again on the new worker, once"
    ends = [(tool, pid) for event, tool, pid in executions(log) if event == "end"]
    assert ("slow_step", first.pid) not in ends
    assert ("slow_step", second.pid) in ends
