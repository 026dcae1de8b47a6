"""Agents whose tool calls wait for a person: a declarative one (model and toolset from here, approval from
the manifest's `approvals.tools`) and code agents using pydantic-ai's own means.

Worker processes import this module (this directory on PYTHONPATH). Every model request and tool execution
appends a line to the file named by `APPROVAL_AGENTS_LOG`, so a test counts them across worker processes;
every model request also records the tool results it received, so a test sees what the model was told.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic_ai import Agent, FunctionToolset
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.exceptions import CallDeferred
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable_agents_runtime.approvals import WaitForDecisions

ENV_LOG = "APPROVAL_AGENTS_LOG"


def _record(kind: str, **data: object) -> None:
    path = os.environ.get(ENV_LOG)
    if path:
        with Path(path).open("a") as log:
            log.write(json.dumps({"kind": kind, **data}) + "\n")


def _returns(messages: list[ModelMessage]) -> list[str]:
    return [
        str(part.content)
        for message in messages
        for part in message.parts
        if isinstance(part, ToolReturnPart) or getattr(part, "part_kind", "") == "retry-prompt"
    ]


def _calls_then_answers(*calls: tuple[str, dict[str, object]]):
    """A FunctionModel function: make `calls` at once, then answer with every tool result it was given."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = _returns(messages)
        _record("model", returns=returns)
        if not returns:
            return ModelResponse(parts=[ToolCallPart(name, args) for name, args in calls])
        return ModelResponse(parts=[TextPart("model was told: " + " | ".join(returns))])

    return respond


# --- declarative: the manifest names `delete_file` (toolset `files`) as needing approval ----------------

files = FunctionToolset(id="files")


@files.tool_plain
def delete_file(path: str) -> str:
    """Delete a file."""
    _record("tool", name="delete_file", path=path)
    return f"deleted {path}"


@files.tool_plain
def list_files() -> list[str]:
    """List the files (needs no approval)."""
    _record("tool", name="list_files")
    return ["a.txt", "b.txt"]


deleting = FunctionModel(_calls_then_answers(("delete_file", {"path": "a.txt"})))
"""Model of the declarative agent: deletes a.txt, then reports."""

deleting_two = FunctionModel(
    _calls_then_answers(("delete_file", {"path": "a.txt"}), ("delete_file", {"path": "b.txt"}))
)
"""Model asking for two approvals at once."""

listing_and_deleting = FunctionModel(
    _calls_then_answers(("list_files", {}), ("delete_file", {"path": "a.txt"}))
)
"""Model calling a tool that needs no approval next to one that does."""


# --- code agents: pydantic-ai's own mechanisms -----------------------------------------------------------

code_approval = Agent(
    FunctionModel(_calls_then_answers(("wire_money", {"amount": 10}))), name="code_approval"
)


@code_approval.tool_plain(requires_approval=True)
def wire_money(amount: int) -> str:
    """Wire money (requires approval, declared in code)."""
    _record("tool", name="wire_money", amount=amount)
    return f"wired {amount}"


durable_approval = Agent(
    FunctionModel(_calls_then_answers(("wire_money", {"amount": 20}))),
    name="durable_approval",
    capabilities=[TemporalDurability(), WaitForDecisions()],
)
"""Made durable in code, with WaitForDecisions next to TemporalDurability: its calls wait the same way."""
durable_approval.tool_plain(requires_approval=True)(wire_money)

durable_without_waiting = Agent(
    FunctionModel(_calls_then_answers(("wire_money", {"amount": 30}))),
    name="durable_without_waiting",
    capabilities=[TemporalDurability()],
)
"""Made durable in code without WaitForDecisions: the worker warns that its calls cannot wait."""
durable_without_waiting.tool_plain(requires_approval=True)(wire_money)


asking = Agent(FunctionModel(_calls_then_answers(("ask_user", {"question": "which city?"}))), name="asking")


@asking.tool_plain
def ask_user(question: str) -> str:
    """Ask the user: the answer comes from outside the run (external input)."""
    _record("tool", name="ask_user")
    raise CallDeferred()
