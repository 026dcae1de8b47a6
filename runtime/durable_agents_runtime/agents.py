"""Builds the durable pydantic-ai agent a worker serves, from a `RuntimeConfig`.

A declarative agent (model, instructions, output, toolsets, MCP servers) is constructed here with the
`TemporalDurability` capability. A code agent is imported from `agent.entrypoint`: a plain `Agent` is made
durable here with the manifest's activity settings (`activity_settings`); an agent that is already durable
(built with `TemporalDurability`, or wrapped in the deprecated `TemporalAgent`) runs as it is, and a
manifest that sets activity settings for it is refused; its tool calls wait for decisions only if it carries
`approvals.WaitForDecisions` (the worker warns when it does not). Models come from `models`, toolsets from
`toolsets`; the pydantic-ai internals this relies on are in `pydantic_ai_internals`.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from pydantic_ai import Agent, StructuredDict
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.capabilities import ResolveModelId
from pydantic_ai.durable_exec.temporal import TemporalAgent, TemporalDurability, TemporalRunContext
from pydantic_ai.exceptions import UserError
from temporalio import workflow

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import EVENT_TOPIC
from durable_agents_runtime import pydantic_ai_internals
from durable_agents_runtime.activity_settings import ActivityConfigs, activity_configs
from durable_agents_runtime.approvals import WaitForDecisions, requiring_approval
from durable_agents_runtime.entrypoints import import_object
from durable_agents_runtime.errors import AgentLoadError
from durable_agents_runtime.models import (
    model_streams,
    resolve_model,
    run_time_model_resolver,
    without_sdk_retries,
)
from durable_agents_runtime.sub_agents import SUB_AGENTS_TOOLSET_ID, sub_agents_toolset
from durable_agents_runtime.toolsets import mcp_toolset, python_toolset, tool_metadata_capabilities

logger = logging.getLogger(__name__)

__all__ = ["build_agent", "event_topic", "model_streams"]


def _run_context_type(config: RuntimeConfig) -> type[TemporalRunContext[Any]]:
    path = config.worker.run_context_type
    if path is None:
        return TemporalRunContext
    cls = import_object(path, what="worker.runContextType")
    if not (isinstance(cls, type) and issubclass(cls, TemporalRunContext)):
        raise AgentLoadError(f"worker.runContextType {path!r} must name a subclass of TemporalRunContext")
    return cast(type[TemporalRunContext[Any]], cls)


class _LiveEventsWhenWatched(TemporalDurability[Any]):
    """`TemporalDurability` that streams and publishes a run's events only while someone watches it.

    Publishing live events makes every model request a streamed one (a model that cannot stream, such as
    a `FunctionModel` without `stream_function`, then fails on every attempt) and costs worker CPU per
    run. A run is watched once a subscriber announces itself (`SUBSCRIBE_SIGNAL`, recorded on the
    workflow instance as `live_events`); pydantic-ai asks `has_wrap_run_event_stream` at every step, so
    the steps after the announcement stream. The answer comes from workflow state that replays
    identically, so it is deterministic.
    """

    @property
    def has_wrap_run_event_stream(self) -> bool:
        return super().has_wrap_run_event_stream and _run_is_watched()


def _run_is_watched() -> bool:
    return workflow.in_workflow() and bool(getattr(workflow.instance(), "live_events", False))


def _durability(config: RuntimeConfig, activity: ActivityConfigs) -> TemporalDurability[Any]:
    topic = EVENT_TOPIC if config.worker.event_stream.enabled else None
    return _LiveEventsWhenWatched(
        activity_config=activity.default,
        model_activity_config=activity.model,
        toolset_activity_config=activity.toolsets,
        run_context_type=_run_context_type(config),
        event_stream_topic=topic,
    )


def _declarative_agent(config: RuntimeConfig) -> AbstractAgent[Any, Any]:
    spec = config.agent
    assert spec.model is not None  # AgentSpec guarantees a model for declarative agents
    activity = activity_configs(config)
    output_type: Any = str
    if spec.output is not None and spec.output.type == "json":
        assert spec.output.json_schema is not None  # OutputSpec guarantees a schema for json output
        try:
            output_type = StructuredDict(spec.output.json_schema, spec.output.name, spec.output.description)
        except UserError as exc:
            raise AgentLoadError(f"agent.output.schema: {exc}") from None
    rules = config.approvals.tools if config.approvals is not None else []
    toolsets = [requiring_approval(python_toolset(t), t.id, rules) for t in spec.toolsets] + [
        mcp_toolset(s, approval_rules=rules) for s in spec.mcp_servers
    ]
    sub_agents = sub_agents_toolset(spec.sub_agents or [])
    if sub_agents is not None:
        toolsets.append(requiring_approval(sub_agents, SUB_AGENTS_TOOLSET_ID, rules))
    options: dict[str, Any] = {"retries": spec.retries} if spec.retries is not None else {}
    try:
        return Agent(
            resolve_model(spec.model, config.model),
            name=spec.name,
            instructions=spec.instructions,
            output_type=output_type,
            toolsets=toolsets,
            model_settings=without_sdk_retries(spec.model_settings),
            **options,
            capabilities=[
                *tool_metadata_capabilities(config, activity.tools),
                ResolveModelId(run_time_model_resolver(config.model)),
                WaitForDecisions(),
                _durability(config, activity),
            ],
        )
    except UserError as exc:
        raise AgentLoadError(f"agent {spec.name!r}: {exc}") from None


def event_topic(agent: AbstractAgent[Any, Any]) -> str | None:
    """The workflow stream topic a durable agent's runs publish events to, if any."""
    durability = TemporalDurability.from_agent(agent)
    return pydantic_ai_internals.event_stream_topic(durability) if durability is not None else None


def _make_durable(agent: Agent[Any, Any], config: RuntimeConfig) -> Agent[Any, Any]:
    """A copy of the plain `agent` with `TemporalDurability` (and per-tool settings) bound to it, and the
    provider SDK's own retries off."""
    if not pydantic_ai_internals.supports_adding_capabilities(agent):
        raise AgentLoadError(
            f"agent {agent.name!r}: this pydantic-ai version cannot add durability to a constructed Agent; "
            "construct it with capabilities=[TemporalDurability()] in code"
        )
    activity = activity_configs(config)
    extra = [
        *tool_metadata_capabilities(config, activity.tools),
        ResolveModelId(run_time_model_resolver(config.model)),
        WaitForDecisions(),
    ]
    durable = pydantic_ai_internals.copy_with_capabilities(agent, extra, _durability(config, activity))
    if isinstance(agent.model_settings, dict) or agent.model_settings is None:
        durable.model_settings = without_sdk_retries(cast(dict[str, Any] | None, agent.model_settings))
    return durable


def _code_agent(config: RuntimeConfig) -> AbstractAgent[Any, Any]:
    spec = config.agent
    assert spec.entrypoint is not None
    agent = import_object(spec.entrypoint, what="agent.entrypoint")
    if not isinstance(agent, AbstractAgent):
        raise AgentLoadError(
            f"agent.entrypoint {spec.entrypoint!r} is a {type(agent).__name__}, not a pydantic-ai Agent"
        )
    agent = cast(AbstractAgent[Any, Any], agent)
    if agent.name != spec.name:
        raise AgentLoadError(
            f"agent.entrypoint {spec.entrypoint!r} is named {agent.name!r} but agent.name is {spec.name!r}; "
            "the name is part of every activity name, so they must match: set `name=` on the Agent or change "
            "agent.name in the manifest"
        )
    if config.approvals is not None and config.approvals.tools:
        raise AgentLoadError(
            f"approvals.tools applies to declarative agents; agent.entrypoint {spec.entrypoint!r} is code: "
            "declare approval in code (requires_approval=True on the tool, or raise ApprovalRequired) and "
            "keep approvals.timeout/onTimeout in the manifest"
        )
    if isinstance(agent, TemporalAgent) or TemporalDurability.from_agent(agent) is not None:  # pyright: ignore[reportDeprecated]
        _refuse_manifest_activities(config)
        if not isinstance(agent, TemporalAgent) and not pydantic_ai_internals.has_capability(  # pyright: ignore[reportDeprecated]
            agent, WaitForDecisions
        ):
            logger.warning(
                "agent %r is durable in code without WaitForDecisions: its tool calls that need approval "
                "or outside input will not wait for a decision (the run fails, or ends with "
                "DeferredToolRequests output). Add durable_agents_runtime.approvals.WaitForDecisions() to "
                "its capabilities, next to TemporalDurability()",
                spec.name,
            )
        return agent
    if not isinstance(agent, Agent):
        raise AgentLoadError(
            f"agent.entrypoint {spec.entrypoint!r} is a {type(agent).__name__}; only an Agent can be made "
            "durable here: add capabilities=[TemporalDurability()] to it in code"
        )
    try:
        return _make_durable(agent, config)
    except UserError as exc:
        raise AgentLoadError(f"agent {spec.name!r}: {exc}") from None


def _refuse_manifest_activities(config: RuntimeConfig) -> None:
    """An agent made durable in code takes its activity settings from code: manifest ones cannot apply."""
    activities = config.activities
    set_levels = [
        level
        for level, value in (
            ("default", activities.default),
            ("model", activities.model),
            ("toolsets", activities.toolsets),
            ("tools", activities.tools),
        )
        if value
    ]
    if set_levels:
        names = ", ".join(f"activities.{level}" for level in set_levels)
        raise AgentLoadError(
            f"agent.entrypoint {config.agent.entrypoint!r} is already durable in code (TemporalDurability or "
            f"TemporalAgent), so its activity settings come from that code and {names} cannot apply: remove "
            "them from the manifest and set them on TemporalDurability, or export the plain Agent (without "
            "TemporalDurability) so the runtime makes it durable with the manifest's settings"
        )


def build_agent(config: RuntimeConfig) -> AbstractAgent[Any, Any]:
    """The durable agent `config` describes.

    Raises `AgentLoadError` with a message naming the cause and the fix when the agent cannot be built.
    """
    return _code_agent(config) if config.agent.is_code else _declarative_agent(config)
