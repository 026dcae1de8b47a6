"""Code agents for the schedule tests, loaded by workers as `schedule_agents:<name>` (this directory on
PYTHONPATH)."""

from __future__ import annotations

import asyncio
import re

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

__all__ = ["echo_agent"]


async def _echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answer `echo: <prompt>`; a prompt containing `sleep N` first waits N seconds (a long run)."""
    prompt = next(
        str(part.content)
        for message in reversed(messages)
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    )
    if (match := re.search(r"sleep ([0-9.]+)", prompt)) is not None:
        await asyncio.sleep(float(match.group(1)))
    return ModelResponse(parts=[TextPart(f"echo: {prompt}")])


echo_agent = Agent(FunctionModel(_echo), name="echo")
"""Echoes its prompt, so a run's output shows which schedule started it."""
