"""Code agents for the sub-agent and budget tests, loaded by worker processes as entrypoints.

`looper` delegates every task to the sub-agent its manifest names `ask_helper` through `call_agent` (from a
tool that runs in the workflow); pointed at itself, it calls itself until the depth limit stops it.
`priced` answers at once from a model named like a priced one, so its runs have an estimated cost.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable_agents_runtime import call_agent

__all__ = ["looper", "priced"]


def _delegate_then_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returned = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart(f"helper said: {returned[0].content}")])
    return ModelResponse(parts=[ToolCallPart("delegate", {"task": "the same task"})])


looper: Agent[None, str] = Agent(FunctionModel(_delegate_then_answer), name="looper")


@looper.tool(metadata={"temporal": False})
async def delegate(ctx: RunContext[None], task: str) -> str:
    """Hand the task to the helper agent."""
    return (await call_agent(ctx, "ask_helper", task)).output_text


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("done")])


priced: Agent[None, Any] = Agent(FunctionModel(_answer, model_name="gpt-4o"), name="priced")
