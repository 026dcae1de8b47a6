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
    from pydantic_ai.exceptions import (
        AgentRunError,
        ModelAPIError,
        ModelAuthenticationError,
        ModelConnectionError,
        ModelContextWindowExceededError,
        ModelHTTPError,
        ModelNotFoundError,
        ModelQuotaExceededError,
        ModelRateLimitError,
        ModelRequestRejectedError,
        UsageLimitExceeded,
        UserError,
    )
    from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
    from pydantic_ai.run import AgentRunResult
    from pydantic_core import to_jsonable_python

    from durable_agents_api.budget import UsageBudget
    from durable_agents_api.contract import RunOutput, RunUsageSummary, ToolCallRecord
    from durable_agents_runtime import pydantic_ai_internals
    from durable_agents_runtime.budgets import budget_exceeded, usage_limits
    from durable_agents_runtime.payload_limits import MAX_PAYLOAD_BYTES, PAYLOAD_TOO_LARGE

__all__ = ["check_deps", "check_size", "explain_model_error", "run_turn", "turn_output"]

INVALID_DEPS = "InvalidDeps"
"""Error type of a turn whose deps do not fit the agent's deps type."""


def _provider_message(error: ModelAPIError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(body) if body else error.message


def explain_model_error(error: ModelAPIError) -> str:
    """What a model request failure means and what to change, for the run's final error."""
    status = f"HTTP {error.status_code}, " if isinstance(error, ModelHTTPError) else ""
    said = f"{status}model {error.model_name}: {_provider_message(error)}"
    if isinstance(error, ModelRateLimitError):
        return (
            f"the model provider rate-limited every attempt ({said}); the retry policy gave up. Raise "
            "activities.model.retry (maximumAttempts, maximumInterval) or lower the request rate"
        )
    if isinstance(error, ModelQuotaExceededError):
        return f"the model provider's quota is exhausted ({said}): raise the quota or wait for it to reset"
    if isinstance(error, ModelAuthenticationError):
        return f"the model provider refused the credentials ({said}): set a valid API key for the provider"
    if isinstance(error, ModelNotFoundError):
        return f"the model provider does not know this model ({said}): fix agent.model or the run's model"
    if isinstance(error, ModelContextWindowExceededError):
        return f"the conversation no longer fits the model's context window ({said}): shorten the prompt"
    if isinstance(error, ModelRequestRejectedError) or (
        isinstance(error, ModelHTTPError) and 400 <= error.status_code < 500
    ):
        return (
            f"the model provider rejected the request ({said}); retrying cannot help. Fix what it names, "
            "e.g. agent.modelSettings or the prompt"
        )
    if isinstance(error, ModelConnectionError):
        return (
            f"could not reach the model provider ({said}) within the retry policy: check model.baseUrl and "
            "the network, or raise activities.model.retry"
        )
    return (
        f"the model request kept failing ({said}) until the retry policy gave up: check the provider's "
        "status, or raise activities.model.retry"
    )


def _accepts_none(deps_type: Any) -> bool:
    try:
        TypeAdapter(deps_type).validate_python(None)
    except (ValidationError, TypeError):
        return False
    return True


def _type_name(deps_type: Any) -> str:
    return getattr(deps_type, "__name__", None) or repr(deps_type)


def check_deps(agent: AbstractAgent[Any, Any], deps: Any, *, how: str, passed_by: str | None = None) -> Any:
    """`deps` (a JSON value, or None) validated into `agent`'s deps type; `how` says how a caller passes
    deps, and `passed_by` who passed them (e.g. "the run"), for the error messages."""
    deps_type = agent.deps_type
    # pydantic-ai's Agent defaults to NoneType; some wrappers report `object`: neither declares deps.
    declared = deps_type not in (type(None), object)
    if deps is None:
        if declared and not _accepts_none(deps_type):
            raise ApplicationError(
                f"agent {agent.name!r} needs deps of type {_type_name(deps_type)}, but "
                f"{f'{passed_by} passed none' if passed_by else 'none were passed'}: pass them ({how})",
                type=INVALID_DEPS,
                non_retryable=True,
            )
        return None
    if not declared:
        raise ApplicationError(
            f"agent {agent.name!r} declares no deps type, but "
            f"{f'{passed_by} passed deps' if passed_by else 'deps were passed'}: leave deps out, or declare "
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
    budget: UsageBudget | None = None,
) -> AgentRunResult[Any]:
    """Run `agent` on `prompt` after `message_history`, within `budget`.

    Every failure comes out as a non-retryable `ApplicationError` (or the activity failure that caused
    it) saying what to change, so a failed turn fails its caller (an Update) rather than the workflow task.
    """
    try:
        return await agent.run(
            prompt,
            deps=deps,
            model=model,
            message_history=list(message_history),
            usage_limits=usage_limits(budget),
        )
    except UsageLimitExceeded as error:
        raise budget_exceeded(error, budget) from None
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
