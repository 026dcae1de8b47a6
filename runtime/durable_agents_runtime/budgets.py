"""A run's usage budget as pydantic-ai `UsageLimits`, the error of a run over it, and the run's cost.

Deterministic code only (used by workflow code). pydantic-ai checks the limits before each model request
and tool call and after each response, against the run's usage, which includes the usage of the agents
the run called (`sub_agents` adds it in), so one budget bounds the whole call tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from temporalio.exceptions import ApplicationError, FailureError

from durable_agents_api.budget import BUDGET_EXCEEDED, UsageBudget

__all__ = ["budget_exceeded", "over_budget", "response_cost", "usage_limits"]

_LIMIT_ERROR = "UsageLimitExceeded"
"""pydantic-ai's error class name: the type of the failure when a limit is hit inside an activity."""

_API_NAMES = {
    "request": "requests",
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "total_tokens": "totalTokens",
    "tool_calls": "toolCalls",
}
_LIMIT_RE = re.compile(r"(request|input_tokens|output_tokens|total_tokens|tool_calls)_limit of (\d+)")
_USED_RE = re.compile(r"\((\w+)=(\d+)\)")


def usage_limits(budget: UsageBudget | None) -> Any:
    """pydantic-ai `UsageLimits` for `budget` (None: no limits)."""
    if budget is None:
        return None
    from pydantic_ai.usage import UsageLimits

    return UsageLimits(
        request_limit=budget.requests,
        input_tokens_limit=budget.input_tokens,
        output_tokens_limit=budget.output_tokens,
        total_tokens_limit=budget.total_tokens,
        tool_calls_limit=budget.tool_calls,
    )


def over_budget(error: BaseException) -> BaseException | None:
    """The usage-limit error `error` is or carries (a limit hit in an activity comes back as its cause),
    or None."""
    from pydantic_ai.exceptions import UsageLimitExceeded

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, UsageLimitExceeded):
            return cause
        if isinstance(cause, ApplicationError) and cause.type == _LIMIT_ERROR:
            return cause
        cause = cause.__cause__ if isinstance(cause, FailureError) else None
    return None


def budget_exceeded(error: BaseException, budget: UsageBudget | None) -> ApplicationError:
    """The run's final error for pydantic-ai's `UsageLimitExceeded`: names the limit and the usage, e.g.
    `UsageBudgetExceeded: totalTokens 1200 > limit 1000`, and where the budget comes from."""
    text = error.message if isinstance(error, ApplicationError) else str(error)
    limit = _LIMIT_RE.search(text)
    if limit is None:
        said = text
    else:
        name, value = _API_NAMES[limit.group(1)], int(limit.group(2))
        used = _USED_RE.search(text)
        if used is not None:
            said = f"{name} {used.group(2)} > limit {value}"
        else:
            # The request limit is checked before a request: the next one would be over it.
            said = f"{name} {value + 1} (the next request) > limit {value}"
    limits = ", ".join(f"{k}={v}" for k, v in budget.limits().items()) if budget is not None else "none"
    return ApplicationError(
        f"{BUDGET_EXCEEDED}: {said} (the run's budget: {limits}; from the agent's spec.budget, tightened "
        "by the run's budget, and shared with the agents it calls): raise the limit or ask for less",
        type=BUDGET_EXCEEDED,
        non_retryable=True,
    )


def response_cost(responses: Iterable[Any]) -> float | None:
    """The estimated cost in US dollars of the model responses, or None when any one's price is unknown."""
    total = 0.0
    for response in responses:
        try:
            total += float(response.cost().total_price)
        except (AssertionError, LookupError, ValueError):
            return None
    return total
