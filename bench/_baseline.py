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


async def _serve(address: str, task_queue: str) -> None:
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    worker = Worker(client, task_queue=task_queue, workflows=[BaselineAgentRun])
    await worker.run()


def main() -> None:
    """Entry point of the baseline worker process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
