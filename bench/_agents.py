"""The agent every benchmark runs: a scripted `FunctionModel` that calls one tool, then answers.

One run is three activities (model request, tool call, model request), the shape the notes measured.
The prompt `work <seconds>` makes the tool sleep that long (the recovery benchmark's slow tool);
any other prompt makes it return at once.

`agent` is a plain pydantic-ai Agent that our runtime makes durable from a code-agent entrypoint
(`bench._agents:agent`). `baseline_agent` is the same agent made durable with library defaults
(`TemporalDurability()` and nothing else). Both are module-level so the worker processes import them once.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

__all__ = ["BASELINE_AGENT_NAME", "OURS_AGENT_NAME", "TOOLSET_ID", "agent", "baseline_agent", "prompt_for"]

OURS_AGENT_NAME = "bench_ours"
BASELINE_AGENT_NAME = "bench_baseline"
TOOLSET_ID = "bench"
TOOL_NAME = "work"

_WORK_RE = re.compile(r"^work (\d+(?:\.\d+)?)$")


def prompt_for(tool_seconds: float) -> str:
    """The prompt that makes the tool take `tool_seconds`."""
    return f"work {tool_seconds:g}"


def _decide(messages: list[ModelMessage]) -> tuple[str | None, float]:
    """(answer text, or None to call the tool) and the tool's seconds, from the conversation so far."""
    last = messages[-1]
    if isinstance(last, ModelRequest):
        for part in last.parts:
            if isinstance(part, ToolReturnPart):
                return f"done: {part.content}", 0.0
    prompt = ""
    first = messages[0]
    if isinstance(first, ModelRequest):
        prompt = " ".join(str(p.content) for p in first.parts if p.part_kind == "user-prompt")
    match = _WORK_RE.match(prompt.strip())
    return None, float(match.group(1)) if match else 0.0


def _script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    answer, seconds = _decide(messages)
    if answer is not None:
        return ModelResponse(parts=[TextPart(answer)])
    return ModelResponse(parts=[ToolCallPart(TOOL_NAME, {"seconds": seconds})])


async def _stream_script(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    # The same script, streamed: a worker that publishes run events requests streamed responses.
    answer, seconds = _decide(messages)
    if answer is not None:
        yield answer
    else:
        yield {0: DeltaToolCall(name=TOOL_NAME, json_args=json.dumps({"seconds": seconds}))}


def _toolset() -> FunctionToolset:
    toolset = FunctionToolset(id=TOOLSET_ID)

    @toolset.tool_plain(name=TOOL_NAME)
    async def work(seconds: float = 0.0) -> str:
        """Do `seconds` of (simulated) slow I/O."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        return f"worked {seconds:g}s"

    return toolset


def _build(name: str, *, durable: bool) -> Agent[None, str]:
    return Agent(
        FunctionModel(_script, stream_function=_stream_script, model_name="bench-script"),
        name=name,
        toolsets=[_toolset()],
        capabilities=[TemporalDurability()] if durable else None,
    )


agent = _build(OURS_AGENT_NAME, durable=False)
baseline_agent = _build(BASELINE_AGENT_NAME, durable=True)
