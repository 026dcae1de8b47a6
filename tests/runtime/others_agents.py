"""Agents written the way pydantic-ai's own tests and docs write them, and the mistakes new users make.

Worker processes import this module by entrypoint (`others_agents:<name>`, with this directory on
PYTHONPATH). Tools that must be counted across worker processes append a line to the file named by
`OTHERS_AGENTS_LOG`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic_ai import Agent, FunctionToolset, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

ENV_LOG = "OTHERS_AGENTS_LOG"
HUGE_ANSWER_BYTES = 2_500_000


def _record(line: str) -> None:
    path = os.environ.get(ENV_LOG)
    if path:
        with Path(path).open("a") as log:
            log.write(f"{line} {os.getpid()}\n")


def _tool_results(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]


def _call_once_then_answer(tool: str, args: dict[str, object]):
    """A FunctionModel function: call `tool` once, then answer with what it returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        results = _tool_results(messages)
        if not results:
            return ModelResponse(parts=[ToolCallPart(tool, args)])
        return ModelResponse(parts=[TextPart(f"{tool} said: {results[-1].content}")])

    return respond


# --- 1. a model that cannot stream -----------------------------------------------------------------------

unstreamable = Agent(
    FunctionModel(_call_once_then_answer("double", {"n": 21})), name="unstreamable", instructions="Double."
)
"""A FunctionModel without `stream_function`, as pydantic-ai's own tests write agents."""


@unstreamable.tool_plain
def double(n: int) -> int:
    """Double a number."""
    return n * 2


# --- 2. tools that raise, deps that are missing ------------------------------------------------------------

raising = Agent(TestModel(call_tools=["explode"]), name="raising")


@raising.tool_plain
def explode(reason: str) -> str:
    """A tool with a bug."""
    _record("explode")
    raise RuntimeError("the tool has a bug: boom")


@dataclass
class User:
    name: str


needs_deps = Agent(TestModel(call_tools=["greet"]), name="needs_deps", deps_type=User)


@needs_deps.tool
def greet(ctx: RunContext[User]) -> str:
    """Greet the user."""
    return f"hello {ctx.deps.name}"


text_deps = Agent(TestModel(call_tools=["shout"]), name="text_deps", deps_type=str)


@text_deps.tool
def shout(ctx: RunContext[str]) -> str:
    """Shout the deps."""
    return ctx.deps.upper()


no_deps = Agent(TestModel(call_tools=[]), name="no_deps")
"""No deps type: pydantic-ai's default."""


# --- 3. an honest tool that blocks the event loop ---------------------------------------------------------


blocking = Agent(FunctionModel(_call_once_then_answer("crunch", {"item": "x"})), name="blocking")


@blocking.tool_plain
async def crunch(item: str) -> str:
    """An async tool that blocks (no await) for longer than the default heartbeat timeout."""
    _record("crunch-start")
    time.sleep(float(os.environ.get("BLOCKING_SECONDS", "4")))
    _record("crunch-end")
    return f"crunched {item}"


# --- 4. a huge answer --------------------------------------------------------------------------------------


def _huge(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("x" * HUGE_ANSWER_BYTES)])


huge = Agent(FunctionModel(_huge), name="huge")

big_tool = Agent(
    FunctionModel(_call_once_then_answer("fetch_page", {"url": "https://example.com"})), name="big_tool"
)


@big_tool.tool_plain
def fetch_page(url: str) -> str:
    """Fetch a page: a big one."""
    return "y" * 1_200_000


# --- 6. every toolset kind ---------------------------------------------------------------------------------

kit = FunctionToolset(id="kit")


@kit.tool_plain
def kit_tool(x: int) -> int:
    """A tool of a FunctionToolset."""
    return x + 1


def _call_all(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if not _tool_results(messages):
        names = sorted(tool.name for tool in info.function_tools)
        return ModelResponse(parts=[ToolCallPart(name, {"x": 1}) for name in names])
    return ModelResponse(
        parts=[TextPart(" ".join(sorted(f"{p.tool_name}={p.content}" for p in _tool_results(messages))))]
    )


def times_ten(x: int) -> int:
    """A tool of a prefixed toolset."""
    return x * 10


toolsets = Agent(
    FunctionModel(_call_all),
    name="toolsets",
    toolsets=[kit, FunctionToolset([times_ten], id="pre").prefixed("pre")],
)
"""A decorated tool, a FunctionToolset, a prefixed toolset and a dynamic toolset on one plain agent."""


@toolsets.tool_plain
def decorated(x: int) -> int:
    """A tool registered with the agent's decorator."""
    return x + 100


@toolsets.toolset(id="dyn")
def dynamic(ctx: RunContext[None]) -> FunctionToolset[None]:
    """A dynamic toolset, resolved per run step."""
    found = FunctionToolset(id="dyn-inner")

    @found.tool_plain
    def dyn_tool(x: int) -> int:
        """A tool of a dynamic toolset."""
        return x + 1000

    return found
