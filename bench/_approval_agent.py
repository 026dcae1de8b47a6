"""The agent of the approvals benchmark: a scripted `FunctionModel` that calls one tool needing approval
(declared in code, `requires_approval=True`), then answers with its result."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

__all__ = ["AGENT_NAME", "agent"]

AGENT_NAME = "bench_approval"


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("ship", {"item": "x"})])
    return ModelResponse(parts=[TextPart(f"done: {returns[-1].content}")])


agent = Agent(FunctionModel(_respond), name=AGENT_NAME)


@agent.tool_plain(requires_approval=True)
def ship(item: str) -> str:
    """Ship an item (a person approves first)."""
    return f"shipped {item}"
