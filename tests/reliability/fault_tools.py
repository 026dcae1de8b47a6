"""The workload of the fault matrix: a scripted model and a tool that count every execution in a file.

Workers under test are killed with SIGKILL, so executions are counted outside them: every model request and
every tool call appends one JSON line when it starts and one when it ends to the file named by
`FAULT_TOOLS_LOG`, with the Temporal activity's workflow id, activity id and attempt (from
`temporalio.activity.info()`: both run inside their activity) and the worker's pid. The test compares these
lines with the workflow histories afterwards.

A run's prompt is a JSON `Plan`. The model (`python:fault_tools:model`) answers in three steps:
1. calls `step` twice (items `<run>-a`, `<run>-b`), in parallel;
2. calls `step` once more (`<run>-c`) and, when the plan says so, the MCP server's `add(run, 1)`;
3. answers with every result: `done <run>: ...`.
Each model request and each tool call sleeps as long as the plan says, so kills land inside them.

Loaded by the worker with this directory on PYTHONPATH (toolset entrypoint `fault_tools:toolset`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic_ai import FunctionToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from temporalio import activity

__all__ = [
    "ENV_LOG",
    "TOOLSET_ID",
    "Execution",
    "Plan",
    "expected_output",
    "model",
    "read_executions",
    "toolset",
]

ENV_LOG = "FAULT_TOOLS_LOG"
TOOLSET_ID = "fault"
MCP_ADD_SUFFIX = "add"


@dataclass(frozen=True)
class Plan:
    """One run's script: its number, how long each step sleeps, and whether it calls the MCP server."""

    run: int
    model_seconds: float
    tool_seconds: tuple[float, float, float]
    mcp: bool

    def prompt(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_prompt(cls, prompt: str) -> Plan:
        data = json.loads(prompt)
        return cls(data["run"], data["model_seconds"], tuple(data["tool_seconds"]), data["mcp"])


@dataclass(frozen=True)
class Execution:
    """One line of the log: an execution of a model request or a tool call started or ended."""

    event: str  # "start" | "end"
    kind: str  # "model" | "tool"
    workflow_id: str
    activity_id: str
    attempt: int
    pid: int
    time: float  # wall clock (time.time()), comparable across processes


def _record(event: str, kind: str) -> None:
    info = activity.info()
    line = json.dumps(
        {
            "event": event,
            "kind": kind,
            "workflow_id": info.workflow_id,
            "activity_id": info.activity_id,
            "attempt": info.attempt,
            "pid": os.getpid(),
            "time": time.time(),
        }
    )
    # One short write on an O_APPEND file: lines from concurrent processes never interleave.
    fd = os.open(os.environ[ENV_LOG], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_executions(log: Path) -> list[Execution]:
    """Every complete line of the log, in file order (a line cut by a kill is ignored)."""
    if not log.exists():
        return []
    executions = []
    for line in log.read_text().splitlines():
        try:
            executions.append(Execution(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue
    return executions


toolset: FunctionToolset[None] = FunctionToolset(id=TOOLSET_ID)


@toolset.tool_plain
async def step(item: str, seconds: float) -> str:
    """Process one item of a run; takes `seconds`."""
    _record("start", "tool")
    await asyncio.sleep(seconds)
    _record("end", "tool")
    return f"step:{item}"


def _plan(messages: list[ModelMessage]) -> Plan:
    for message in messages:
        for part in message.parts:
            if part.part_kind == "user-prompt" and isinstance(part.content, str):
                return Plan.from_prompt(part.content)
    raise ValueError("the fault matrix model needs a JSON plan as its prompt")


def _results(messages: list[ModelMessage]) -> list[str]:
    return [
        str(part.content)
        for message in messages
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


def expected_output(plan: Plan) -> str:
    """The final answer of a run that executed its plan."""
    results = [f"step:{plan.run}-a", f"step:{plan.run}-b", f"step:{plan.run}-c"]
    if plan.mcp:
        results.append(str(plan.run + 1))
    return f"done {plan.run}: {' '.join(sorted(results))}"


def _mcp_add_tool(info: AgentInfo) -> str:
    names = [t.name for t in info.function_tools if t.name.endswith(MCP_ADD_SUFFIX)]
    if len(names) != 1:
        raise ValueError(f"the plan calls the MCP server's add tool, but the agent has {names}")
    return names[0]


def _next(messages: list[ModelMessage], info: AgentInfo) -> list[ToolCallPart] | str:
    plan = _plan(messages)
    results = _results(messages)
    first, second, third = plan.tool_seconds
    if not results:
        return [
            ToolCallPart("step", {"item": f"{plan.run}-a", "seconds": first}),
            ToolCallPart("step", {"item": f"{plan.run}-b", "seconds": second}),
        ]
    if len(results) == 2:
        calls = [ToolCallPart("step", {"item": f"{plan.run}-c", "seconds": third})]
        if plan.mcp:
            calls.append(ToolCallPart(_mcp_add_tool(info), {"a": plan.run, "b": 1}))
        return calls
    return f"done {plan.run}: {' '.join(sorted(results))}"


async def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    _record("start", "model")
    await asyncio.sleep(_plan(messages).model_seconds)
    step_ = _next(messages, info)
    _record("end", "model")
    return ModelResponse(parts=[TextPart(step_)] if isinstance(step_, str) else list(step_))


async def _stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    _record("start", "model")
    await asyncio.sleep(_plan(messages).model_seconds)
    step_ = _next(messages, info)
    _record("end", "model")
    if isinstance(step_, str):
        yield step_
        return
    for index, call in enumerate(step_):
        args: Any = call.args
        yield {index: DeltaToolCall(name=call.tool_name, json_args=json.dumps(args))}


model = FunctionModel(_respond, stream_function=_stream, model_name="fault-matrix")
"""The scripted model of the fault matrix (see the module docstring)."""
