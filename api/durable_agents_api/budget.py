"""Usage budgets: what a run may spend (requests, tokens, tool calls), and how budgets combine.

An agent's budget (`spec.budget`) bounds every run of it; a run's own budget (AgentRun `spec.budget`,
`durable-agents run --budget`) can only tighten it (`tighten`). A child agent called by a run gets what
is left of the caller's budget when it is called (`remaining`), so a tree of agents shares one budget.
Pure functions: the runtime turns a budget into pydantic-ai `UsageLimits` and enforces it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["BUDGET_EXCEEDED", "BUDGET_KEYS", "UsageBudget", "parse_budget", "remaining", "tighten"]

BUDGET_EXCEEDED = "UsageBudgetExceeded"
"""Error type of a run that went over its budget."""

BUDGET_KEYS = ("requests", "inputTokens", "outputTokens", "totalTokens", "toolCalls")
"""The budget's limits, by API name (as `--budget KEY=VALUE` spells them)."""


class UsageBudget(BaseModel):
    """Limits on what one run (with the agents it calls) may use; an unset limit is no limit."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    requests: int | None = Field(default=None, ge=0, description="Model requests.")
    input_tokens: int | None = Field(default=None, ge=0, description="Input tokens.")
    output_tokens: int | None = Field(default=None, ge=0, description="Output tokens.")
    total_tokens: int | None = Field(default=None, ge=0, description="Input plus output tokens.")
    tool_calls: int | None = Field(default=None, ge=0, description="Successful tool calls.")

    def limits(self) -> dict[str, int]:
        """The set limits by API name, e.g. `{"totalTokens": 1000}`."""
        return {key: value for key, value in self.model_dump(by_alias=True).items() if value is not None}


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def tighten(agent: UsageBudget | None, run: UsageBudget | None) -> UsageBudget | None:
    """The budget a run has: each limit the lower of the agent's and the run's (a run cannot loosen its
    agent's budget); None when neither sets one."""
    if agent is None or run is None:
        return agent or run
    return UsageBudget(
        requests=_min(agent.requests, run.requests),
        input_tokens=_min(agent.input_tokens, run.input_tokens),
        output_tokens=_min(agent.output_tokens, run.output_tokens),
        total_tokens=_min(agent.total_tokens, run.total_tokens),
        tool_calls=_min(agent.tool_calls, run.tool_calls),
    )


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(limit - used, 0)


def remaining(
    budget: UsageBudget | None, *, requests: int, input_tokens: int, output_tokens: int, tool_calls: int
) -> UsageBudget | None:
    """What is left of `budget` after the given usage: the budget of a child agent called now."""
    if budget is None:
        return None
    return UsageBudget(
        requests=_left(budget.requests, requests),
        input_tokens=_left(budget.input_tokens, input_tokens),
        output_tokens=_left(budget.output_tokens, output_tokens),
        total_tokens=_left(budget.total_tokens, input_tokens + output_tokens),
        tool_calls=_left(budget.tool_calls, tool_calls),
    )


def parse_budget(text: str) -> UsageBudget:
    """`KEY=VALUE,...` (e.g. `totalTokens=1000,requests=5`) as a budget; `ValueError` names a bad part."""
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in BUDGET_KEYS:
            raise ValueError(f"{part!r} is not KEY=VALUE with KEY one of {', '.join(BUDGET_KEYS)}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{key}={value!r}: the limit must be a whole number") from None
        if number < 0:
            raise ValueError(f"{key}={number}: the limit cannot be negative")
        values[key] = number
    if not values:
        raise ValueError(f"no limits given: write KEY=VALUE,... with KEY one of {', '.join(BUDGET_KEYS)}")
    return UsageBudget.model_validate(values)
