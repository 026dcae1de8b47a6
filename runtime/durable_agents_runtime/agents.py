"""Builds the durable pydantic-ai agent a worker serves, from a `RuntimeConfig`.

A declarative agent (model, instructions, output, toolsets, MCP servers) is constructed here with the
`TemporalDurability` capability. A code agent is imported from `agent.entrypoint`: a plain `Agent` is made
durable here with the manifest's activity settings; an agent that is already durable (built with
`TemporalDurability`, or wrapped in the deprecated `TemporalAgent`) runs as it is.

Activity settings are resolved in layers, each overriding the one before: the runtime defaults
(`DEFAULT_ACTIVITY`), `activities.default`, then `activities.model` for model requests,
`activities.toolsets[id]` for a toolset or MCP server, and `activities.tools[id][tool]` for one tool.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from pydantic_ai import Agent, StructuredDict
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability, ResolveModelId, SetToolMetadata
from pydantic_ai.durable_exec.temporal import (
    TemporalAgent,
    TemporalDurability,
    TemporalRunContext,
    WorkflowStreamTopic,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model, infer_model
from pydantic_ai.settings import ModelSettings
from pydantic_ai.toolsets import AbstractToolset
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

from durable_agents_runtime.config import (
    DEFAULT_MAXIMUM_ATTEMPTS,
    ActivitySpec,
    McpServerSpec,
    ModelSpec,
    RuntimeConfig,
    ToolsetSpec,
)
from durable_agents_runtime.contract import EVENT_TOPIC, PYTHON_MODEL_PREFIX
from durable_agents_runtime.errors import AgentLoadError

if TYPE_CHECKING:
    from pydantic_ai.capabilities import ModelIdResolver
    from pydantic_ai.models import ModelResolutionContext
    from pydantic_ai.providers import Provider

__all__ = [
    "DEFAULT_ACTIVITY",
    "EVENT_TOPIC",
    "ActivityConfigs",
    "activity_configs",
    "build_agent",
    "event_topic",
    "import_object",
    "model_streams",
    "resolve_model",
]


# With a short heartbeat timeout a killed worker's in-flight activity is retried on another worker within
# seconds instead of after the start-to-close timeout (measured: 66 s with library defaults, 11 s with 2 s
# heartbeats and a 2 s sticky schedule-to-start timeout). The worker process heartbeats every running
# activity from a thread of its own (`durable_agents_runtime.heartbeats`), so a tool that blocks the event
# loop is not mistaken for a dead worker. A 1 s first retry keeps a retry prompt; 30 s caps the backoff.
# Temporal's default is to retry forever, which turns a tool with a bug into a run that never ends: five
# attempts (four retries, 1 + 2 + 4 + 8 = 15 s of backoff) end it with the last attempt's error.
DEFAULT_ACTIVITY = ActivitySpec.model_validate(
    {
        "startToCloseTimeout": "60s",
        "heartbeatTimeout": "2s",
        "retry": {
            "initialInterval": "1s",
            "backoffCoefficient": 2.0,
            "maximumInterval": "30s",
            "maximumAttempts": DEFAULT_MAXIMUM_ATTEMPTS,
        },
    }
)
"""Runtime defaults for every activity; any value in the manifest overrides the matching one here."""

_TIMEOUT_FIELDS = ("start_to_close_timeout", "schedule_to_close_timeout", "heartbeat_timeout")
_RETRY_FIELDS = (
    "initial_interval",
    "backoff_coefficient",
    "maximum_interval",
    "maximum_attempts",
    "non_retryable_error_types",
)
_OPENAI_PROVIDERS = ("openai", "openai-chat", "openai-responses")


# --- activity settings ----------------------------------------------------------------------------------


def _layer(spec: ActivitySpec | None) -> dict[str, Any]:
    """The fields `spec` sets, retry fields nested under `retry`."""
    if spec is None:
        return {}
    layer: dict[str, Any] = {f: v for f in _TIMEOUT_FIELDS if (v := getattr(spec, f)) is not None}
    if spec.retry is not None:
        layer["retry"] = {f: v for f in _RETRY_FIELDS if (v := getattr(spec.retry, f)) is not None}
    return layer


def _merge(*specs: ActivitySpec | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for spec in specs:
        layer = _layer(spec)
        retry = {**merged.get("retry", {}), **layer.pop("retry", {})}
        merged.update(layer)
        merged["retry"] = retry
    return merged


def _activity_config(merged: Mapping[str, Any]) -> ActivityConfig:
    config = ActivityConfig()
    start = merged.get("start_to_close_timeout")
    schedule = merged.get("schedule_to_close_timeout")
    if start is not None and schedule is not None and start > schedule:
        # The default start-to-close timeout must not outlive a shorter schedule-to-close the manifest set.
        start = schedule
    if start is not None:
        config["start_to_close_timeout"] = start
    if schedule is not None:
        config["schedule_to_close_timeout"] = schedule
    if (heartbeat := merged.get("heartbeat_timeout")) is not None:
        config["heartbeat_timeout"] = heartbeat
    retry = dict(merged.get("retry", {}))
    if retry:
        config["retry_policy"] = RetryPolicy(**retry)
    return config


class ActivityConfigs(NamedTuple):
    """Resolved activity settings, in the form pydantic-ai's `TemporalDurability` takes them."""

    default: ActivityConfig
    model: ActivityConfig
    toolsets: dict[str, ActivityConfig]
    """By toolset (or MCP server) id."""
    tools: dict[str, dict[str, ActivityConfig | Literal[False]]]
    """By toolset id, then tool name; False runs the tool in the workflow."""


def activity_configs(config: RuntimeConfig) -> ActivityConfigs:
    """The activity settings of `config`, each level merged over the runtime defaults and the levels above."""
    activities = config.activities
    base = (DEFAULT_ACTIVITY, activities.default)
    toolset_ids = set(activities.toolsets) | set(activities.tools)
    toolsets = {ts: _activity_config(_merge(*base, activities.toolsets.get(ts))) for ts in toolset_ids}
    tools: dict[str, dict[str, ActivityConfig | Literal[False]]] = {
        ts: {
            name: False
            if spec is False
            else _activity_config(_merge(*base, activities.toolsets.get(ts), spec))
            for name, spec in by_tool.items()
        }
        for ts, by_tool in activities.tools.items()
    }
    return ActivityConfigs(
        default=_activity_config(_merge(*base)),
        model=_activity_config(_merge(*base, activities.model)),
        toolsets=toolsets,
        tools=tools,
    )


# --- models ---------------------------------------------------------------------------------------------


def _provider(name: str, *, base_url: str | None) -> Provider[Any]:
    """Providers with the SDK's own retries off: Temporal's retry policy owns retries."""
    if name in _OPENAI_PROVIDERS:
        from openai import AsyncOpenAI
        from pydantic_ai.providers.openai import OpenAIProvider

        # An OpenAI-compatible server given by base URL often needs no key; the SDK insists on one.
        api_key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        return OpenAIProvider(openai_client=client)
    if name == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicProvider(anthropic_client=AsyncAnthropic(max_retries=0))
    from pydantic_ai.providers import infer_provider

    try:
        return infer_provider(name)
    except ValueError:
        raise UserError(f"unknown model provider {name!r}") from None


def _infer(name: str, model: ModelSpec) -> Model:
    """Build the model named `name`; raises `UserError` (which fails a run at once) if that is impossible."""
    if name.startswith(PYTHON_MODEL_PREFIX):
        return _python_model(name.removeprefix(PYTHON_MODEL_PREFIX))
    try:
        return infer_model(name, provider_factory=partial(_provider, base_url=model.base_url))
    except UserError as exc:
        raise UserError(
            f"cannot use model {name!r}: {str(exc).rstrip('.')}. Name a model as pydantic-ai does, e.g. "
            "'openai-chat:gpt-4.1-mini', 'anthropic:claude-sonnet-4-5' or 'test'"
        ) from None
    except Exception as exc:
        # Provider SDKs raise their own errors for missing credentials (e.g. openai.OpenAIError).
        raise UserError(
            f"cannot use model {name!r}: {str(exc).rstrip('.')}. Set the provider's API key in the "
            "environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)"
        ) from None


def _python_model(path: str) -> Model:
    """`python:pkg.mod:attr`: a pydantic-ai `Model` instance from code (scripted or self-hosted models)."""
    try:
        found = import_object(path, what="model")
    except AgentLoadError as exc:
        raise UserError(str(exc)) from None
    if not isinstance(found, Model):
        raise UserError(
            f"model 'python:{path}' is a {type(found).__name__}, not a pydantic-ai Model: point it at a "
            "Model instance (e.g. a FunctionModel)"
        )
    return found


def resolve_model(name: str, model: ModelSpec) -> Model:
    """The model a worker uses for `name`, with provider SDK retries off and `model.baseUrl` applied."""
    try:
        return _infer(name, model)
    except UserError as exc:
        raise AgentLoadError(str(exc)) from None


def _without_sdk_retries(settings: Mapping[str, Any] | None) -> ModelSettings:
    """Model settings with the provider SDK's own retries off (unless set explicitly): Temporal retries."""
    return cast(ModelSettings, {"max_retries": 0, **(settings or {})})


def _run_time_model_resolver(model: ModelSpec) -> ModelIdResolver[Any]:
    """Resolves a run's model override (`RunInput.model`) the same way as the agent's own model."""

    def resolve(ctx: ModelResolutionContext[Any], model_id: str) -> Model | None:
        if workflow.in_workflow():
            # pydantic-ai resolves the run's model in the workflow too (for its profile; requests still
            # run in the activity, where this resolver builds the model again). Built inside the
            # workflow, a provider SDK is imported into the sandbox, which fails (openai → aiohttp), and
            # a `python:` model's module runs in workflow context, where the durable agents it defines
            # cannot be constructed. Build it on a thread of the worker process, as the activity does.
            with (
                workflow.unsafe.sandbox_unrestricted(),
                workflow.unsafe.imports_passed_through(),
                ThreadPoolExecutor(max_workers=1) as outside,
            ):
                return outside.submit(_infer, model_id, model).result()
        return _infer(model_id, model)

    return resolve


# --- imports --------------------------------------------------------------------------------------------


def import_object(path: str, *, what: str) -> Any:
    """Import `package.module:attribute` (the attribute may be dotted)."""
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentLoadError(
            f"{what} {path!r}: cannot import module {module_name!r} ({exc}); install the package or add its "
            "directory to PYTHONPATH"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(
                f"{what} {path!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return obj


def _run_context_type(config: RuntimeConfig) -> type[TemporalRunContext[Any]]:
    path = config.worker.run_context_type
    if path is None:
        return TemporalRunContext
    cls = import_object(path, what="worker.runContextType")
    if not (isinstance(cls, type) and issubclass(cls, TemporalRunContext)):
        raise AgentLoadError(f"worker.runContextType {path!r} must name a subclass of TemporalRunContext")
    return cast(type[TemporalRunContext[Any]], cls)


# --- toolsets -------------------------------------------------------------------------------------------


def _python_toolset(spec: ToolsetSpec) -> AbstractToolset[Any]:
    toolset = import_object(spec.entrypoint, what=f"toolset {spec.id!r}")
    if not isinstance(toolset, AbstractToolset):
        raise AgentLoadError(
            f"toolset {spec.id!r}: {spec.entrypoint!r} is a {type(toolset).__name__}, not a pydantic-ai "
            "toolset (e.g. a FunctionToolset)"
        )
    toolset = cast(AbstractToolset[Any], toolset)
    if toolset.id != spec.id:
        raise AgentLoadError(
            f"toolset {spec.id!r}: {spec.entrypoint!r} has id {toolset.id!r}; the id is part of activity "
            f"names, so it must match: construct it with id={spec.id!r} or set `id: {toolset.id}` in the "
            "manifest"
        )
    return toolset


def _mcp_toolset(spec: McpServerSpec) -> AbstractToolset[Any]:
    from fastmcp.mcp_config import infer_transport_type_from_url
    from pydantic_ai.mcp import MCPToolset

    headers: dict[str, str] = {}
    for header, env in spec.headers_from_env.items():
        value = os.environ.get(env)
        if value is None:
            raise AgentLoadError(
                f"mcpServers[{spec.id}]: header {header!r} is read from environment variable {env}, which is "
                "not set; set it (in a cluster, from a Secret)"
            )
        headers[header] = value
    timeout = spec.timeout.total_seconds() if spec.timeout is not None else None
    options: dict[str, Any] = {"id": spec.id}
    if timeout is not None:
        options.update(init_timeout=timeout, read_timeout=timeout)
    if infer_transport_type_from_url(spec.url) == spec.transport:
        toolset: AbstractToolset[Any] = MCPToolset(spec.url, headers=headers or None, **options)
    else:
        # The URL alone would pick the other transport: build the one the manifest asks for.
        from fastmcp import Client
        from fastmcp.client.transports import SSETransport, StreamableHttpTransport

        transport_type = SSETransport if spec.transport == "sse" else StreamableHttpTransport
        transport = transport_type(spec.url, headers=headers or None)
        client_options = {"timeout": timeout, "init_timeout": timeout} if timeout is not None else {}
        toolset = MCPToolset(Client(transport, **client_options), id=spec.id)
    if spec.tool_filter is not None:
        include = set(spec.tool_filter.include) if spec.tool_filter.include is not None else None
        exclude = set(spec.tool_filter.exclude)
        toolset = toolset.filtered(
            lambda ctx, tool: (include is None or tool.name in include) and tool.name not in exclude
        )
    if spec.tool_prefix:
        toolset = toolset.prefixed(spec.tool_prefix)
    return toolset


def _tool_metadata_capabilities(
    config: RuntimeConfig, tools: Mapping[str, Mapping[str, ActivityConfig | Literal[False]]]
) -> list[AbstractCapability[Any]]:
    """Per-tool activity settings, as the `temporal` tool metadata pydantic-ai reads."""
    prefixes = {s.id: s.tool_prefix for s in config.agent.mcp_servers if s.tool_prefix}
    capabilities: list[AbstractCapability[Any]] = []
    for toolset_id, by_tool in tools.items():
        for tool, activity in by_tool.items():
            # Manifests name MCP tools as the server does; the agent sees them with the server's prefix.
            prefix = prefixes.get(toolset_id)
            name = f"{prefix}_{tool}" if prefix else tool
            capabilities.append(SetToolMetadata(tools=[name], temporal=activity))
    return capabilities


# --- agents ---------------------------------------------------------------------------------------------


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


def model_streams(model: object) -> bool:
    """Whether `model` can answer a streamed request (a `FunctionModel` needs a `stream_function`)."""
    from pydantic_ai.models.function import FunctionModel

    return not (isinstance(model, FunctionModel) and model.stream_function is None)


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
    toolsets = [_python_toolset(t) for t in spec.toolsets] + [_mcp_toolset(s) for s in spec.mcp_servers]
    options: dict[str, Any] = {"retries": spec.retries} if spec.retries is not None else {}
    try:
        return Agent(
            resolve_model(spec.model, config.model),
            name=spec.name,
            instructions=spec.instructions,
            output_type=output_type,
            toolsets=toolsets,
            model_settings=_without_sdk_retries(spec.model_settings),
            **options,
            capabilities=[
                *_tool_metadata_capabilities(config, activity.tools),
                ResolveModelId(_run_time_model_resolver(config.model)),
                _durability(config, activity),
            ],
        )
    except UserError as exc:
        raise AgentLoadError(f"agent {spec.name!r}: {exc}") from None


def event_topic(agent: AbstractAgent[Any, Any]) -> str | None:
    """The workflow stream topic a durable agent's runs publish events to, if any."""
    durability = TemporalDurability.from_agent(agent)
    # pydantic-ai keeps the topic private; it is read once here so `run --stream` can subscribe to it.
    topic = getattr(durability, "_event_stream_topic", None)
    return topic.name if isinstance(topic, WorkflowStreamTopic) else None


def _make_durable(agent: Agent[Any, Any], config: RuntimeConfig) -> Agent[Any, Any]:
    """A copy of the plain `agent` with `TemporalDurability` (and per-tool settings) bound to it, and the
    provider SDK's own retries off.

    pydantic-ai binds capabilities when an `Agent` is constructed and offers no public way to add one
    later; the copy repeats that binding step for the capabilities added here, leaving `agent` unchanged.
    """
    activity = activity_configs(config)
    durable = copy.copy(agent)
    # pydantic-ai treats dynamic toolsets registered with `@agent.toolset` after construction as added at
    # run time, which Temporal cannot make durable. Here durability is bound after the whole module ran,
    # so every one of them exists at binding and gets its activities, as with the `TemporalAgent` wrapper.
    durable._constructor_dynamic_toolset_count = len(agent._dynamic_toolsets)  # pyright: ignore[reportPrivateUsage]
    if isinstance(agent.model_settings, Mapping) or agent.model_settings is None:
        durable.model_settings = _without_sdk_retries(cast(Mapping[str, Any] | None, agent.model_settings))
    if not isinstance(getattr(durable, "_root_capability", None), CombinedCapability):
        raise AgentLoadError(
            f"agent {agent.name!r}: this pydantic-ai version cannot add durability to a constructed Agent; "
            "construct it with capabilities=[TemporalDurability()] in code"
        )
    extra = [
        *_tool_metadata_capabilities(config, activity.tools),
        ResolveModelId(_run_time_model_resolver(config.model)),
    ]
    durable._root_capability = CombinedCapability(  # pyright: ignore[reportPrivateUsage]
        [*agent.root_capability.capabilities, *(c.for_agent(durable) for c in extra)]
    )
    bound = _durability(config, activity).for_agent(durable)
    durable._root_capability = CombinedCapability(  # pyright: ignore[reportPrivateUsage]
        [*durable.root_capability.capabilities, bound]
    )
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
    if isinstance(agent, TemporalAgent) or TemporalDurability.from_agent(agent) is not None:  # pyright: ignore[reportDeprecated]
        _refuse_manifest_activities(config)
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
