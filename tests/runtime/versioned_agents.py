"""A model for versioning tests that records what it received, and configs that use it.

Workers under test are separate processes, so the model appends one JSON line per request to the file
named by `VERSIONED_MODEL_LOG`: the run's prompt, the instructions the model was given and the worker's
pid. Its first answer calls the slow tool of `slow_tools` (so a run can be caught mid tool); once the
tool returned, it answers with text.

Loaded by the worker as the model `python:versioned_agents:recording_model` (this directory on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai import FunctionToolset
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable_agents_api.config import RuntimeConfig

__all__ = [
    "ENV_LOG",
    "ENV_RELEASE",
    "MODEL",
    "gated",
    "gated_starts",
    "received",
    "recording_model",
    "versioned_config",
]

ENV_LOG = "VERSIONED_MODEL_LOG"
MODEL = "python:versioned_agents:recording_model"


def _prompt(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    with Path(os.environ[ENV_LOG]).open("a") as log:
        entry = {"prompt": _prompt(messages), "instructions": info.instructions, "pid": os.getpid()}
        log.write(json.dumps(entry) + "\n")
    returned = [
        part
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
    if not returned:
        tool = "gated_step" if any(t.name == "gated_step" for t in info.function_tools) else "slow_step"
        return ModelResponse(parts=[ToolCallPart(tool, {"item": "x"})])
    return ModelResponse(parts=[TextPart(f"done: {returned[-1].content}")])


recording_model = FunctionModel(_respond)

ENV_RELEASE = "VERSIONED_RELEASE"
"""A file path: `gated_step` returns once it exists (the test decides when a run leaves its tool)."""
gated: FunctionToolset[None] = FunctionToolset(id="gated")


@gated.tool_plain
async def gated_step(item: str) -> str:
    """Process an item once released."""
    with Path(os.environ[ENV_LOG]).open("a") as log:
        log.write(json.dumps({"tool": "gated_step", "pid": os.getpid()}) + "\n")
    release = Path(os.environ[ENV_RELEASE])
    for _ in range(2400):  # 120 s at most: a test that never releases fails instead of hanging
        if release.exists():
            return f"gated:{item}"
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{release} was not created within 120 s")


def received(log: Path) -> list[dict[str, Any]]:
    """Every request the model received, in order: `{"prompt", "instructions", "pid"}`."""
    if not log.exists():
        return []
    return [entry for line in log.read_text().splitlines() if "prompt" in (entry := json.loads(line))]


def gated_starts(log: Path) -> list[int]:
    """Pids of the workers that started `gated_step`, in order."""
    if not log.exists():
        return []
    return [entry["pid"] for line in log.read_text().splitlines() if "tool" in (entry := json.loads(line))]


def versioned_config(
    temporal: Any,
    *,
    name: str,
    task_queue: str | None,
    instructions: str,
    toolsets: bool = True,
    toolset: tuple[str, str] = ("slow", "slow_tools:toolset"),
    **versioning: Any,
) -> RuntimeConfig:
    """A versioned agent on the session's dev server using the recording model (and the slow toolset)."""
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": name,
                "model": MODEL,
                "instructions": instructions,
                "toolsets": [{"id": toolset[0], "entrypoint": toolset[1]}] if toolsets else [],
            },
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": task_queue or f"{name}-{uuid.uuid4().hex[:8]}",
            },
            "versioning": versioning,
        }
    )
