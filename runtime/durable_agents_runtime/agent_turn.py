"""One turn of the served agent inside a workflow: deps checked, the agent run over a message history, its
errors made final and explained, its reply summarised and size-checked.

Deterministic code only (it runs in workflow code). Any workflow that runs the served agent for a prompt
uses it: the session workflow runs one turn per message, and a turn that waits for a person is still one
call of `run_turn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, TypeAdapter, ValidationError
    from pydantic_ai.agent.abstract import AbstractAgent
    from pydantic_ai.exceptions import AgentRunError, ModelAPIError, UserError
    from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
    from pydantic_ai.run import AgentRunResult
    from pydantic_core import to_jsonable_python

    from durable_agents_api.contract import RunOutput, RunUsageSummary, ToolCallRecord
    from durable_agents_runtime import pydantic_ai_internals
    from durable_agents_runtime.payload_limits import MAX_PAYLOAD_BYTES, PAYLOAD_TOO_LARGE
    from durable_agents_runtime.workflow import explain_model_error

__all__ = ["check_deps", "check_size", "run_turn", "turn_output"]

INVALID_DEPS = "InvalidDeps"
"""Error type of a turn whose deps do not fit the agent's deps type."""


def _accepts_none(deps_type: Any) -> bool:
    try:
        TypeAdapter(deps_type).validate_python(None)
    except (ValidationError, TypeError):
        return False
    return True


def _type_name(deps_type: Any) -> str:
    return getattr(deps_type, "__name__", None) or repr(deps_type)


def check_deps(agent: AbstractAgent[Any, Any], deps: Any, *, how: str) -> Any:
    """`deps` (a JSON value, or None) validated into `agent`'s deps type; `how` says how a caller passes
    deps, for the error message."""
    deps_type = agent.deps_type
    # pydantic-ai's Agent defaults to NoneType; some wrappers report `object`: neither declares deps.
    declared = deps_type not in (type(None), object)
    if deps is None:
        if declared and not _accepts_none(deps_type):
            raise ApplicationError(
                f"agent {agent.name!r} needs deps of type {_type_name(deps_type)}, but none were passed: "
                f"pass them ({how})",
                type=INVALID_DEPS,
                non_retryable=True,
            )
        return None
    if not declared:
        raise ApplicationError(
            f"agent {agent.name!r} declares no deps type, but deps were passed: leave deps out, or declare "
            "deps_type= on the Agent so the deps can cross into its activities",
            type=INVALID_DEPS,
            non_retryable=True,
        )
    try:
        return TypeAdapter(deps_type).validate_python(deps)
    except ValidationError as exc:
        raise ApplicationError(
            f"deps do not match agent {agent.name!r}'s deps type {_type_name(deps_type)}: {exc}",
            type=INVALID_DEPS,
            non_retryable=True,
        ) from None


async def run_turn(
    agent: AbstractAgent[Any, Any],
    prompt: str,
    *,
    deps: Any,
    model: str | None,
    message_history: Sequence[ModelMessage],
) -> AgentRunResult[Any]:
    """Run `agent` on `prompt` after `message_history`.

    Every failure comes out as a non-retryable `ApplicationError` (or the activity failure that caused
    it) saying what to change, so a failed turn fails its caller (an Update) rather than the workflow task.
    """
    try:
        return await agent.run(prompt, deps=deps, model=model, message_history=list(message_history))
    except ModelAPIError as error:
        raise ApplicationError(
            explain_model_error(error),
            type=pydantic_ai_internals.public_error_class(error),
            non_retryable=True,
        ) from error
    except (UserError, AgentRunError) as error:
        raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error


def turn_output(result: AgentRunResult[Any]) -> RunOutput:
    """The output, usage and tool calls of the turn `result` ran (its new messages only)."""
    output = to_jsonable_python(result.output)
    # The output tool (structured output) is how the turn ended, not a tool the agent used.
    output_tool = pydantic_ai_internals.output_tool_name(result)
    tool_calls = [
        ToolCallRecord(tool_name=part.tool_name, args=part.args_as_dict())
        for message in result.new_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart) and part.tool_name != output_tool
    ]
    usage = result.usage
    return RunOutput(
        output=output,
        output_text=output if isinstance(output, str) else TypeAdapter(Any).dump_json(output).decode(),
        usage=RunUsageSummary(
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tool_calls=usage.tool_calls,
        ),
        tool_calls=tool_calls,
    )


def check_size(value: BaseModel, what: str) -> None:
    """Refuse `value` (a result about to leave the workflow) when it is over Temporal's payload limit."""
    size = len(value.model_dump_json())
    if size > MAX_PAYLOAD_BYTES:
        raise ApplicationError(
            f"{what} is {size} bytes, over Temporal's payload size limit ({MAX_PAYLOAD_BYTES} bytes): ask "
            "the agent for a shorter answer, or have a tool store the result and return a reference to it",
            type=PAYLOAD_TOO_LARGE,
            non_retryable=True,
        )
