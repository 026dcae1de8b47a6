"""Usage budgets and sub-agent calls: how budgets combine, the errors that name a limit, child ids. No I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.usage import RunUsage, UsageLimits

from durable_agents_api.budget import UsageBudget, parse_budget, remaining, tighten
from durable_agents_api.config import AgentSpec, TemporalSpec
from durable_agents_api.contract import child_workflow_id
from durable_agents_api.resources import AgentRunSpec, DurableAgentSpec
from durable_agents_runtime.budgets import budget_exceeded, usage_limits
from durable_agents_runtime.sub_agents import SUB_AGENT_DEPTH_EXCEEDED, depth_error


def test_a_run_budget_only_tightens_the_agents_budget() -> None:
    agent = UsageBudget(total_tokens=1000, requests=5)
    run = UsageBudget(total_tokens=5000, tool_calls=2)
    assert tighten(agent, run) == UsageBudget(total_tokens=1000, requests=5, tool_calls=2)
    assert tighten(agent, None) == agent
    assert tighten(None, run) == run
    assert tighten(None, None) is None


def test_a_child_gets_what_is_left_of_its_callers_budget() -> None:
    budget = UsageBudget(total_tokens=1000, requests=5, output_tokens=100)
    left = remaining(budget, requests=2, input_tokens=700, output_tokens=150, tool_calls=1)
    assert left == UsageBudget(total_tokens=150, requests=3, output_tokens=0)
    assert remaining(None, requests=1, input_tokens=1, output_tokens=1, tool_calls=1) is None


def test_the_cli_budget_flag_parses_and_names_a_bad_part() -> None:
    assert parse_budget("totalTokens=1000, requests=3") == UsageBudget(total_tokens=1000, requests=3)
    for bad, said in [
        ("tokens=3", "KEY one of"),
        ("requests=x", "whole number"),
        ("requests=-1", "negative"),
    ]:
        with pytest.raises(ValueError, match=said):
            parse_budget(bad)


@pytest.mark.parametrize(
    ("check", "said"),
    [
        (
            lambda limits: limits.check_tokens(RunUsage(input_tokens=900, output_tokens=300)),
            "totalTokens 1200 > limit 1000",
        ),
        (
            lambda limits: limits.check_before_request(RunUsage(requests=3)),
            "requests 4 (the next request) > limit 3",
        ),
        (lambda limits: limits.check_before_tool_call(RunUsage(tool_calls=3)), "toolCalls 3 > limit 2"),
    ],
)
def test_a_run_over_budget_names_the_limit_and_the_usage(check: object, said: str) -> None:
    budget = UsageBudget(total_tokens=1000, requests=3, tool_calls=2)
    limits: UsageLimits = usage_limits(budget)
    with pytest.raises(UsageLimitExceeded) as exceeded:
        check(limits)  # type: ignore[operator]
    error = budget_exceeded(exceeded.value, budget)
    assert error.type == "UsageBudgetExceeded" and error.non_retryable
    assert error.message.startswith(f"UsageBudgetExceeded: {said} ")
    assert "requests=3, totalTokens=1000, toolCalls=2" in error.message


def test_child_ids_derive_from_the_parent_run_and_the_tool_call() -> None:
    assert child_workflow_id("agentrun-1", "call_7") == "agentrun-1/call-call_7"


def test_the_depth_error_names_the_chain_and_the_limit() -> None:
    error = depth_error(["a", "b", "a"], 1)
    assert error.type == SUB_AGENT_DEPTH_EXCEEDED and error.non_retryable
    assert (
        "a -> b -> a would be 2 calls deep, over the limit of 1 (agent.maxSubAgentDepth of 'a')"
        in error.message
    )


def test_a_manifest_derives_each_sub_agents_task_queue_from_its_namespace() -> None:
    spec = DurableAgentSpec.model_validate(
        {
            "agent": {
                "name": "lead",
                "model": "test",
                "subAgents": [
                    {"name": "ask_billing", "agentRef": "billing"},
                    {"name": "ask_legal", "agentRef": "legal", "taskQueue": "legal-q", "timeout": "5m"},
                ],
            },
            "budget": {"totalTokens": 1000},
        }
    )
    config = spec.runtime_config(temporal=TemporalSpec(task_queue="shop.lead"), namespace="shop")
    queues = [(s.name, s.task_queue) for s in config.agent.sub_agents or []]
    assert queues == [("ask_billing", "shop.billing"), ("ask_legal", "legal-q")]
    assert config.budget == UsageBudget(total_tokens=1000)
    assert config.agent.sub_agent("legal") == config.agent.sub_agent("ask_legal")
    with pytest.raises(ValidationError, match="already used"):
        AgentSpec.model_validate(
            {
                "name": "x",
                "model": "test",
                "subAgents": [{"name": "t", "agentRef": "a"}, {"name": "t", "agentRef": "b"}],
            }
        )


def test_a_session_turn_cannot_carry_a_budget_of_its_own() -> None:
    spec = {"agentRef": {"name": "a"}, "prompt": "hi", "budget": {"requests": 1}}
    assert AgentRunSpec.model_validate(spec).budget == UsageBudget(requests=1)
    with pytest.raises(ValidationError, match=r"runs within the agent's spec\.budget"):
        AgentRunSpec.model_validate({**spec, "session": "s1"})
