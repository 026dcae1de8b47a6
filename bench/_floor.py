"""The floor: a plain Temporal workflow that does what one benchmark run does, with no pydantic-ai.

One run is the same three activities as the agent's (model request → tool call → model request), each
carrying a payload of about the same shape: the request activities get the conversation so far and
return a response (a tool call, then the text answer), the tool activity gets the call's arguments and
returns the tool's text. No agent graph, no message serialisation beyond JSON, default data converter,
`Worker` with default settings (sandboxed runner). What Temporal itself costs per run on this machine is
the most any worker can reach; `throughput` reports ours / floor and bare / floor.

Run: `python -m bench._floor --address 127.0.0.1:7233 --task-queue q`.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

__all__ = ["FLOOR_WORKFLOW_NAME", "FloorRun"]

FLOOR_WORKFLOW_NAME = "FloorRun"
_TIMEOUT = timedelta(seconds=60)


@activity.defn(name="floor__model_request")
async def model_request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The scripted model: call the tool first, then answer with what it returned."""
    last = messages[-1]
    if last.get("kind") == "tool-return":
        return {"kind": "response", "parts": [{"part_kind": "text", "content": f"done: {last['content']}"}]}
    call = {"part_kind": "tool-call", "tool_name": "work", "args": {"seconds": 0.0}, "tool_call_id": "c1"}
    return {"kind": "response", "parts": [call]}


@activity.defn(name="floor__tool_call")
async def tool_call(args: dict[str, Any]) -> str:
    seconds = float(args.get("seconds", 0.0))
    if seconds > 0:
        await asyncio.sleep(seconds)
    return f"worked {seconds:g}s"


@workflow.defn(name=FLOOR_WORKFLOW_NAME)
class FloorRun:
    """Three activities in a row, as one agent run with one tool call."""

    @workflow.run
    async def run(self, prompt: str) -> str:
        messages: list[dict[str, Any]] = [
            {"kind": "request", "parts": [{"part_kind": "user-prompt", "content": prompt}]}
        ]
        first = await workflow.execute_activity(model_request, messages, start_to_close_timeout=_TIMEOUT)
        messages.append(first)
        call = first["parts"][0]
        result = await workflow.execute_activity(tool_call, call["args"], start_to_close_timeout=_TIMEOUT)
        messages.append({"kind": "tool-return", "content": result, "tool_call_id": call["tool_call_id"]})
        answer = await workflow.execute_activity(model_request, messages, start_to_close_timeout=_TIMEOUT)
        return str(answer["parts"][0]["content"])


async def _serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    worker = Worker(
        client, task_queue=task_queue, workflows=[FloorRun], activities=[model_request, tool_call]
    )
    await worker.run()


def main() -> None:
    """Entry point of the floor worker process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
