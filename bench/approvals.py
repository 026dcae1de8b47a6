"""Runs waiting for approval: what they cost a worker, and how fast a decision finishes a run.

Measured on one worker (our defaults) and one dev server:
- worker RSS with N runs waiting for a decision, against the same worker idle before they started;
- decision → run completed (the Update is sent, then the result arrives), p50 and p95 over a sample of
  the waiting runs, against a run of the same agent's remaining work measured the same way: start → result
  of a run that is approved at once (a run whose decision arrives as soon as it asks).

Run: `.venv/bin/python -m bench.approvals [--quick]` (N = 1,000; 200 with --quick).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench._approval_agent import AGENT_NAME
from bench._harness import (
    VENV_BIN,
    WorkerProcess,
    connect,
    dev_server,
    free_port,
    subprocess_env,
    wait_for_poller,
)
from bench._harness import workdir as make_workdir
from bench._stats import Row, percentile, ratio

__all__ = ["run"]

GOAL_DECISION_SECONDS = 1.0
"""The issue's promise: a decision resumes a waiting run within a second."""
CONCURRENCY = 50
"""Starts, queries and decisions in flight at once."""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _worker(address: str, queue: str, work: Path) -> WorkerProcess:
    from durable_agents_api.config import RuntimeConfig
    from durable_agents_api.contract import ENV_BIND_HOST, ENV_CONFIG, ENV_HEALTH_PORT, ENV_METRICS_PORT

    config = RuntimeConfig.model_validate(
        {
            "agent": {"name": AGENT_NAME, "entrypoint": "bench._approval_agent:agent"},
            "temporal": {"address": address, "taskQueue": queue},
        }
    )
    path = work / "runtime.json"
    path.write_text(config.to_json())
    env = subprocess_env(
        {
            ENV_CONFIG: str(path),
            ENV_BIND_HOST: "127.0.0.1",
            ENV_HEALTH_PORT: str(free_port()),
            ENV_METRICS_PORT: str(free_port()),
        }
    )
    return WorkerProcess([str(VENV_BIN / "durable-agents"), "worker"], env, work / "worker.log")


async def _bounded(calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Any) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _pending_id(handle: WorkflowHandle[Any, Any], deadline: float) -> str:
    from temporalio.service import RPCError

    from durable_agents_api.contract import APPROVALS_QUERY, PendingCall

    while True:
        try:
            calls = await handle.query(APPROVALS_QUERY, result_type=list[PendingCall])
        except RPCError:
            calls = []  # the worker has not taken the run's first task yet (a queue of starts)
        if calls:
            return calls[0].tool_call_id
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {handle.id} never waited for a decision")
        await asyncio.sleep(0.2)


async def _decide_and_wait(handle: WorkflowHandle[Any, Any], call_id: str) -> float:
    from durable_agents_api.contract import DECIDE_UPDATE, Decision, DecisionOutcome, Decisions

    began = time.monotonic()
    await handle.execute_update(
        DECIDE_UPDATE,
        Decisions(decisions=[Decision(tool_call_id=call_id, approve=True)], decided_by="bench"),
        result_type=DecisionOutcome,
    )
    await handle.result()
    return time.monotonic() - began


async def _start(client: Client, queue: str) -> WorkflowHandle[Any, Any]:
    from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput

    return await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="ship it"),
        id=f"bench-approval-{uuid.uuid4()}",
        task_queue=queue,
        result_type=RunOutput,
    )


async def run(quick: bool = False) -> list[Row]:
    waiting_runs = 200 if quick else 1000
    sample = 50 if quick else 200
    with make_workdir("bench-approvals-") as work, dev_server(work) as server:
        client = await connect(server.address)
        queue = f"bench-approvals-{uuid.uuid4().hex[:6]}"
        worker = _worker(server.address, queue, work).start()
        try:
            await wait_for_poller(client, queue, worker.pid, timeout=120, worker=worker)
            await asyncio.sleep(3)
            idle = _rss_mb(worker.pid)

            # The comparison: runs decided as soon as they ask (start → result), one at a time.
            direct: list[float] = []
            for _ in range(10):
                began = time.monotonic()
                handle = await _start(client, queue)
                call_id = await _pending_id(handle, time.monotonic() + 60)
                await _decide_and_wait(handle, call_id)
                direct.append(time.monotonic() - began)

            handles = await _bounded([lambda: _start(client, queue) for _ in range(waiting_runs)])
            deadline = time.monotonic() + 600
            call_ids = await _bounded([lambda h=h: _pending_id(h, deadline) for h in handles])
            await asyncio.sleep(3)
            loaded = _rss_mb(worker.pid)

            latencies: list[float] = []
            for handle, call_id in list(zip(handles, call_ids, strict=True))[:sample]:
                latencies.append(await _decide_and_wait(handle, call_id))
            rest = list(zip(handles, call_ids, strict=True))[sample:]
            await _bounded([lambda h=h, c=c: _decide_and_wait(h, c) for h, c in rest])
        finally:
            worker.stop()
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    direct_p50 = percentile(direct, 50)
    return [
        Row(
            f"approvals: worker RSS, {waiting_runs} runs waiting vs idle",
            f"{loaded:.0f} MB",
            f"{idle:.0f} MB",
            ratio(loaded, idle),
            "report",
            None,
            f"{(loaded - idle) * 1024 / waiting_runs:.0f} KB per waiting run",
        ),
        Row(
            "approvals: decision -> run completed (p50)",
            f"{p50:.2f} s (p95 {p95:.2f} s)",
            f"{direct_p50:.2f} s",
            ratio(p50, direct_p50),
            f"p95 <= {GOAL_DECISION_SECONDS:g} s",
            p95 <= GOAL_DECISION_SECONDS,
            f"sample of {len(latencies)} decided one at a time; baseline: start -> result of a run decided "
            "as soon as it asks",
        ),
    ]


def main() -> None:
    import argparse

    from bench._stats import machine_line, markdown_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(run(args.quick))
    print(markdown_table(rows))
    print(machine_line())


if __name__ == "__main__":
    main()
