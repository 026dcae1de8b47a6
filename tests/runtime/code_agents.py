"""Code agents for the runtime tests, loaded by worker processes as `code_agents:<name>`.

The worker imports this module by entrypoint (the tests put this directory on PYTHONPATH), so the agents are
module-level objects, exactly as a user's package would define them.
"""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

plain = Agent(TestModel(), name="plain_code", instructions="Look things up.")
"""A plain agent: the worker makes it durable."""


@plain.tool_plain
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value-of-{key}"


durable = Agent(
    TestModel(),
    name="durable_code",
    instructions="Count things.",
    capabilities=[TemporalDurability()],
)
"""An agent that is durable already: the worker runs it as it is."""


@durable.tool_plain
def count(word: str) -> int:
    """Count the letters of a word."""
    return len(word)


def _legacy() -> object:
    import warnings

    from pydantic_ai.durable_exec.temporal import TemporalAgent

    # The deprecated wrapper still runs existing code; building it warns, which is the point of the test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TemporalAgent(Agent(TestModel(), name="legacy_code", tools=[count]))  # pyright: ignore[reportDeprecated]


legacy = _legacy()
"""An agent wrapped in the deprecated `TemporalAgent`: the worker runs it as it is."""


def _scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("scripted answer")])


scripted_model = FunctionModel(_scripted)
"""A model from code, for `--model python:code_agents:scripted_model`, in a module that also defines a
durable agent (imported a second time inside the sandbox, that agent's construction used to fail the run)."""
