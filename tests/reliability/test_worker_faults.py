"""Fault matrix, workers: SIGKILL at seeded random points of a batch of runs, each worker replaced at once.

Real processes throughout: a Temporal dev server of the test's own, `durable-agents worker` processes, the
runtime tier's MCP server. Every run calls tools and a share of them the MCP server. Afterwards every run
must have completed with the output its plan implies, no completed activity may have executed again
(executions are logged outside the workers, by `fault_tools.py`, and compared with the histories; the MCP
server's own log is compared with the MCP activities' attempts), and no run may exceed the stuck bound
derived from the runtime's activity defaults (`faultmatrix.RUN_BOUND`).

CI variant: 40 runs, 10 kills, 2 workers. `DA_RELIABILITY_LONG=1`: 200 runs, 50 kills, 3 workers.
`DA_RELIABILITY_SEED` replays one seed. The figures are printed and recorded (see README.md), not asserted
as timings.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from faultmatrix import (
    STARTS_PER_RUN,
    FaultInjector,
    Fleet,
    analyse,
    long_variant,
    make_plans,
    run_batch,
    runtime_config,
    worker_killer,
)
from mcp_server import McpServerProcess, read_log
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from reliability_report import record, render
from temporalio.client import Client

from durable_agents_runtime.devserver import DevServer

pytestmark = [pytest.mark.runtime, pytest.mark.reliability, pytest.mark.anyio]

LONG = long_variant()
RUNS, KILLS, WORKERS, CONCURRENCY = (200, 50, 3, 12) if LONG else (40, 10, 2, 8)
MCP_SHARE = 0.3
SEED = int(os.environ.get("DA_RELIABILITY_SEED", "1301"))


async def test_workers_killed_at_random_points_every_run_completes_once(
    tmp_path: Path, mcp_calc: McpServerProcess
) -> None:
    rng = random.Random(SEED)
    plans = make_plans(rng, RUNS, MCP_SHARE)
    # Kill points over the starts the batch logs without faults, away from the very end so every kill
    # still has runs around it.
    points = rng.sample(range(STARTS_PER_RUN, STARTS_PER_RUN * (RUNS - 2)), KILLS)
    log = tmp_path / "executions.jsonl"

    with DevServer(tmp_path / "temporal") as server:
        config = runtime_config(server.address, server.namespace, mcp_calc.url)
        client = await Client.connect(
            server.address, namespace=server.namespace, plugins=[PydanticAIPlugin()]
        )
        fleet = Fleet(config, tmp_path, log, WORKERS)
        try:
            fleet.start()
            injector = FaultInjector(log, points, worker_killer(fleet, rng))
            started = time.monotonic()
            records = await run_batch(client, config, plans, injector, concurrency=CONCURRENCY)
            wall = time.monotonic() - started
            mcp_calls = Counter(e["args"][0] for e in read_log(mcp_calc.log) if e.get("tool") == "add")
            figures = await analyse(
                "worker-kills", SEED, client, records, injector.faults, log, wall, mcp_calls=mcp_calls
            )
        finally:
            fleet.close()

    summary = figures.as_dict() | {
        "runs with an MCP call": sum(1 for p in plans if p.mcp),
        "workers started (incl. replacements)": len(fleet.started),
    }
    record("worker-kills" + ("-long" if LONG else ""), summary)
    print("\n" + render("worker-kills", summary))

    assert not injector.errors, injector.errors
    assert figures.faults == KILLS, f"{figures.faults} kills injected, {KILLS} planned"
    assert not figures.problems(), "\n".join(figures.problems())
