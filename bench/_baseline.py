"""The baseline worker: pydantic-ai + Temporal exactly as the library documents it, with its defaults.

`Agent(..., capabilities=[TemporalDurability()])`, a plain workflow class, `PydanticAIPlugin` on the
client, and a `Worker` with default settings (sandboxed runner, default slots and sticky timeout).

Run: `python -m bench._baseline --address 127.0.0.1:7233 --task-queue q`.
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow

    from bench._agents import baseline_agent

__all__ = ["BASELINE_WORKFLOW_NAME", "BaselineAgentRun"]

BASELINE_WORKFLOW_NAME = "BaselineAgentRun"


@workflow.defn(name=BASELINE_WORKFLOW_NAME)
class BaselineAgentRun(PydanticAIWorkflow):
    """Runs the baseline agent once on a prompt and returns its text output."""

    __pydantic_ai_agents__ = [baseline_agent]

    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await baseline_agent.run(prompt)
        return result.output


async def _serve(address: str, task_queue: str, worker_heartbeat: float | None) -> None:
    from datetime import timedelta

    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client
    from temporalio.runtime import Runtime, TelemetryConfig
    from temporalio.worker import Worker

    runtime = None
    if worker_heartbeat is not None:
        # Not a library default: only bench/health_latency.py sets it, to measure worker heartbeats
        # (ListWorkers) as a liveness signal.
        heartbeat = timedelta(seconds=worker_heartbeat)
        runtime = Runtime(telemetry=TelemetryConfig(), worker_heartbeat_interval=heartbeat)
    client = await Client.connect(address, plugins=[PydanticAIPlugin()], runtime=runtime)
    worker = Worker(client, task_queue=task_queue, workflows=[BaselineAgentRun])
    await worker.run()


def main() -> None:
    """Entry point of the baseline worker process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument(
        "--worker-heartbeat", type=float, default=None, help="worker heartbeat interval in seconds"
    )
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.task_queue, args.worker_heartbeat))


if __name__ == "__main__":
    main()
