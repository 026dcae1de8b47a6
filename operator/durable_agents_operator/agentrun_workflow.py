"""Pure pieces of an AgentRun's life: its workflow input, and its status before, during and after it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from durable_agents_api.contract import RunInput, RunOutput, SessionMessage, SessionReply
from durable_agents_api.resources import AgentRun, RunUsage
from durable_agents_runtime.timestamps import timestamp

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_OUTPUT_BYTES",
    "failed_status",
    "finished_message",
    "pending_status",
    "run_input",
    "running_status",
    "session_message",
    "succeeded_status",
    "turn_succeeded_status",
]

MAX_OUTPUT_BYTES = 4096
"""Status keeps at most this much output: objects live in etcd, whose values should stay small."""
MAX_MESSAGE_BYTES = 1024
MAX_CHILD_IDS = 20
"""Child workflow ids kept in an AgentRun's status (`children` counts them all)."""


def run_input(run: AgentRun) -> RunInput:
    """The workflow input for `run`."""
    return RunInput(prompt=run.spec.prompt, deps=run.spec.deps, model=run.spec.model, budget=run.spec.budget)


def session_message(run: AgentRun) -> SessionMessage:
    """The session message for a run with `spec.session`: its next turn."""
    return SessionMessage(prompt=run.spec.prompt, deps=run.spec.deps, model=run.spec.model)


def _truncate(text: str, limit: int) -> tuple[str, int, bool]:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text, len(encoded), False
    # Cut on a character boundary: drop a partial trailing UTF-8 sequence.
    return encoded[:limit].decode(errors="ignore"), len(encoded), True


def pending_status(message: str) -> dict[str, Any]:
    """Status of a run whose workflow could not be started yet; `message` says why."""
    return {"phase": "Pending", "message": message}


def running_status(
    *, workflow_id: str, task_queue: str, started: datetime, generation: int | None
) -> dict[str, Any]:
    """Status of a run whose workflow started (or was found started): the poll timer follows it."""
    return {
        "phase": "Running",
        "workflowId": workflow_id,
        "taskQueue": task_queue,
        "startTime": timestamp(started),
        "observedGeneration": generation,
        "message": None,
    }


def finished_message(workflow_id: str, status: dict[str, Any]) -> str:
    """The Event text for a run that ended with `status`, e.g. `workflow agentrun-1 failed: boom`."""
    text = f"workflow {workflow_id} {status['phase'].lower()}"
    return f"{text}: {status['message']}" if status.get("message") else text


def succeeded_status(output: RunOutput, *, completed: datetime) -> dict[str, Any]:
    """Status of a run whose workflow completed: output (truncated, with its full size) and usage."""
    text, size, truncated = _truncate(output.output_text, MAX_OUTPUT_BYTES)
    return {
        "phase": "Succeeded",
        "output": text,
        "outputSize": size,
        "outputTruncated": truncated,
        "usage": RunUsage.of(output.usage).model_dump(by_alias=True),
        "costUsd": output.cost_usd,
        "children": len(output.children),
        "childWorkflowIds": [child.workflow_id for child in output.children[:MAX_CHILD_IDS]],
        "completionTime": timestamp(completed),
        "message": None,
    }


def turn_succeeded_status(reply: SessionReply, *, completed: datetime) -> dict[str, Any]:
    """Status of a session turn that was answered: as a succeeded run, with the turn's number."""
    return {**succeeded_status(reply, completed=completed), "turn": reply.turn}


def failed_status(message: str, *, completed: datetime | None) -> dict[str, Any]:
    """Status of a run that failed, timed out, was cancelled or terminated, or cannot start."""
    status: dict[str, Any] = {"phase": "Failed", "message": _truncate(message, MAX_MESSAGE_BYTES)[0]}
    if completed is not None:
        status["completionTime"] = timestamp(completed)
    return status
