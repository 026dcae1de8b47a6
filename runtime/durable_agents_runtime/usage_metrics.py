"""Per-agent token and cost counters, exported with the worker's Temporal metrics (Prometheus).

Deterministic code only: recorded from workflow code through `workflow.metric_meter()`, which records
nothing while a workflow replays, so a run's usage is counted once. Each run counts its own model
responses; a child agent's responses are counted by the child's run, under the child's agent.

Temporal's meter has integer counters only, so the cost is counted in millionths of a US dollar.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from temporalio import workflow

__all__ = ["COST_COUNTER", "TOKENS_COUNTER", "record_usage"]

TOKENS_COUNTER = "durable_agents_tokens"
"""Tokens the agent's model responses used, by `agent`, `model` and `kind` (`input` or `output`)."""
COST_COUNTER = "durable_agents_cost_microdollars"
"""Estimated cost of the agent's model responses in millionths of a US dollar, by `agent` and `model`
(only responses whose model's price is known)."""


def _per_model(responses: Iterable[Any]) -> dict[str, tuple[int, int, float | None]]:
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0.0])
    for response in responses:
        model = response.model_name or "unknown"
        entry = totals[model]
        entry[0] += response.usage.input_tokens
        entry[1] += response.usage.output_tokens
        try:
            entry[2] = None if entry[2] is None else entry[2] + float(response.cost().total_price)
        except (AssertionError, LookupError, ValueError):
            entry[2] = None
    return {model: (i, o, c) for model, (i, o, c) in totals.items()}


def record_usage(agent: str, responses: Iterable[Any]) -> None:
    """Add the usage of a run's model `responses` to the agent's counters."""
    meter = workflow.metric_meter()
    tokens = meter.create_counter(TOKENS_COUNTER, "Tokens used by the agent's model requests.")
    cost = meter.create_counter(COST_COUNTER, "Estimated cost of the agent's model requests, in 1e-6 USD.")
    for model, (input_tokens, output_tokens, usd) in _per_model(responses).items():
        tokens.add(input_tokens, {"agent": agent, "model": model, "kind": "input"})
        tokens.add(output_tokens, {"agent": agent, "model": model, "kind": "output"})
        if usd is not None:
            cost.add(round(usd * 1_000_000), {"agent": agent, "model": model})
