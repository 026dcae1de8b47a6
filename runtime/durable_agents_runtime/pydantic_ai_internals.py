"""The pydantic-ai internals the runtime relies on, in one place, each with the public API it stands in for.

tests/unit/test_pydantic_ai_internals.py pins every one of them to the installed pydantic-ai, so an upgrade
that moves one fails there, loudly, instead of in a worker or a run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability
from pydantic_ai.durable_exec.temporal import TemporalDurability, WorkflowStreamTopic
from pydantic_ai.exceptions import ModelAPIError
from pydantic_ai.run import AgentRunResult

__all__ = [
    "copy_with_capabilities",
    "event_stream_topic",
    "has_capability",
    "output_tool_name",
    "public_error_class",
    "supports_adding_capabilities",
]


def has_capability(agent: Any, kind: type[AbstractCapability[Any]]) -> bool:
    """Whether a capability of `kind` is bound to `agent` (unwrapping wrapper capabilities).

    Public API: `TemporalDurability.from_agent` does the same walk for its own class only; the walk
    itself (`leaf_capabilities`) lives in `pydantic_ai.capabilities.abstract`, not re-exported."""
    from pydantic_ai.capabilities import WrapperCapability
    from pydantic_ai.capabilities.abstract import leaf_capabilities

    for capability in leaf_capabilities(agent.root_capability):
        while isinstance(capability, WrapperCapability):
            capability = capability.wrapped
        if isinstance(capability, kind):
            return True
    return False


def supports_adding_capabilities(agent: Agent[Any, Any]) -> bool:
    """Whether `copy_with_capabilities` works with this pydantic-ai version."""
    return isinstance(getattr(agent, "_root_capability", None), CombinedCapability) and isinstance(
        getattr(agent, "_dynamic_toolsets", None), list
    )


def copy_with_capabilities(
    agent: Agent[Any, Any],
    capabilities: Sequence[AbstractCapability[Any]],
    durability: TemporalDurability[Any],
) -> Agent[Any, Any]:
    """A copy of the constructed `agent` with `capabilities` and then `durability` bound, as if they had been
    passed to its constructor; `agent` is left unchanged.

    Public API: `Agent(..., capabilities=[...])` at construction. pydantic-ai offers no way to add a
    capability to an agent that exists; the runtime must, to make a user's plain agent durable. The copy
    repeats the constructor's binding step (`for_agent`, then the root `CombinedCapability`).

    Dynamic toolsets registered with `@agent.toolset` after construction count as constructed: pydantic-ai
    treats later ones as added at run time, which Temporal cannot make durable, but here durability is
    bound after the whole module ran, so each of them exists at binding and gets its activities — as with
    the `TemporalAgent` wrapper.
    """
    durable = copy.copy(agent)
    durable._constructor_dynamic_toolset_count = len(agent._dynamic_toolsets)  # pyright: ignore[reportPrivateUsage]
    durable._root_capability = CombinedCapability(  # pyright: ignore[reportPrivateUsage]
        [*agent.root_capability.capabilities, *(c.for_agent(durable) for c in capabilities)]
    )
    bound = durability.for_agent(durable)
    durable._root_capability = CombinedCapability(  # pyright: ignore[reportPrivateUsage]
        [*durable.root_capability.capabilities, bound]
    )
    return durable


def event_stream_topic(durability: TemporalDurability[Any]) -> str | None:
    """The name of the workflow stream topic `durability` publishes a run's events to, if any.

    Public API: none; `TemporalDurability(event_stream_topic=...)` takes the topic and keeps it private. The
    worker reads it once, so `durable-agents run --stream` can subscribe to the topic a code agent chose.
    """
    topic = getattr(durability, "_event_stream_topic", None)
    return topic.name if isinstance(topic, WorkflowStreamTopic) else None


def output_tool_name(result: AgentRunResult[Any]) -> str | None:
    """The name of the output tool that ended a structured-output run, or None.

    Public API: none; the run result keeps it private. The runtime leaves that call out of the tool calls it
    reports, since it is how the run ended, not a tool the agent used.
    """
    name = getattr(result, "_output_tool_name", None)
    return name if isinstance(name, str) else None


def public_error_class(error: ModelAPIError) -> str:
    """The name of the public pydantic-ai class a model error belongs to.

    Public API: the classes in `pydantic_ai.exceptions`; categorized HTTP errors are instances of private
    subclasses of them (named `_...`), whose names mean nothing to a user.
    """
    return next(cls.__name__ for cls in type(error).__mro__ if not cls.__name__.startswith("_"))
