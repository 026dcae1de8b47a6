"""The pydantic-ai internals `pydantic_ai_internals` relies on behave as it expects in the installed version.

If a test here fails after a pydantic-ai upgrade, `durable_agents_runtime.pydantic_ai_internals` needs the
new spelling; the failure names which internal moved.
"""

from __future__ import annotations

from importlib.metadata import version

from pydantic import BaseModel
from pydantic_ai import Agent, FunctionToolset, RunContext
from pydantic_ai.capabilities import SetToolMetadata
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.exceptions import ModelHTTPError, ModelRateLimitError
from pydantic_ai.models.test import TestModel

from durable_agents_runtime import pydantic_ai_internals

PINNED = "2.68"
"""The pydantic-ai release these internals were read from (see pyproject.toml's lower bound)."""


def test_the_installed_pydantic_ai_is_the_release_the_internals_were_read_from() -> None:
    assert version("pydantic-ai-slim").startswith(PINNED), (
        "pydantic-ai changed: re-read pydantic_ai_internals against it, then update PINNED"
    )


def _plain_agent() -> Agent[None, str]:
    agent = Agent(TestModel(), name="plain_internals")

    @agent.toolset(id="late")
    def late(ctx: RunContext[None]) -> FunctionToolset[None]:
        return FunctionToolset(id="late-inner")

    return agent


def test_a_constructed_agent_can_be_copied_with_durability_bound_leaving_the_original_plain() -> None:
    agent = _plain_agent()
    assert pydantic_ai_internals.supports_adding_capabilities(agent)

    durable = pydantic_ai_internals.copy_with_capabilities(
        agent, [SetToolMetadata(tools=["x"], temporal=False)], TemporalDurability()
    )

    assert TemporalDurability.from_agent(durable) is not None
    assert TemporalDurability.from_agent(agent) is None
    names = {type(c).__name__ for c in durable.root_capability.capabilities}
    assert "SetToolMetadata" in names


def test_dynamic_toolsets_registered_after_construction_count_as_constructed_on_the_copy() -> None:
    agent = _plain_agent()

    durable = pydantic_ai_internals.copy_with_capabilities(agent, [], TemporalDurability())

    assert len(durable._construction_toolsets) == len(durable.toolsets)  # pyright: ignore[reportPrivateUsage]
    assert len(agent._construction_toolsets) < len(agent.toolsets)  # pyright: ignore[reportPrivateUsage]


def test_the_event_stream_topic_of_a_durability_is_read_by_name() -> None:
    assert pydantic_ai_internals.event_stream_topic(TemporalDurability(event_stream_topic="t")) == "t"
    assert pydantic_ai_internals.event_stream_topic(TemporalDurability()) is None


class Forecast(BaseModel):
    city: str


def test_the_output_tool_of_a_structured_run_is_named() -> None:
    result = Agent(TestModel(), output_type=Forecast, name="forecaster").run_sync("Oslo")

    name = pydantic_ai_internals.output_tool_name(result)

    assert name is not None
    assert any(
        getattr(part, "tool_name", None) == name
        for message in result.all_messages()
        for part in message.parts
    )


def test_a_categorized_model_error_is_named_by_its_public_class() -> None:
    error = ModelHTTPError.for_category(ModelRateLimitError, status_code=429, model_name="m")

    assert isinstance(error, ModelRateLimitError)
    assert pydantic_ai_internals.public_error_class(error) == "ModelRateLimitError"


def test_a_capability_bound_at_construction_is_found_on_the_agent() -> None:
    from durable_agents_runtime.approvals import WaitForDecisions

    with_it = Agent(TestModel(), name="with_it", capabilities=[TemporalDurability(), WaitForDecisions()])
    without = Agent(TestModel(), name="without", capabilities=[TemporalDurability()])

    assert pydantic_ai_internals.has_capability(with_it, WaitForDecisions)
    assert not pydantic_ai_internals.has_capability(without, WaitForDecisions)
    assert pydantic_ai_internals.has_capability(without, TemporalDurability)
