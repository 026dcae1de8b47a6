"""The runtime contract: what a worker reads and what the operator renders.

`RuntimeConfig` is the one model both sides share. The operator writes it (as JSON) into the ConfigMap a
worker pod mounts; `durable-agents dev` builds it from a `DurableAgent` manifest; `durable-agents worker`
reads it from a file and/or the environment. The spec sections (`AgentSpec`, `ActivitiesSpec`,
`WorkerSpec`, `ObservabilitySpec`, `ModelSpec`) are also the building blocks of the `DurableAgent` CRD, so
the cluster API and the runtime can never disagree about a field.

Field names are camelCase because they are Kubernetes API fields; Python code reads the snake_case
attributes.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from durable_agents_api.budget import UsageBudget

__all__ = [
    "AGENT_NAME_PATTERN",
    "DEFAULT_HEALTH_PORT",
    "DEFAULT_MAXIMUM_ATTEMPTS",
    "DEFAULT_MAX_SUB_AGENT_DEPTH",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_REPLAY_HISTORIES",
    "DEFAULT_SUB_AGENT_TIMEOUT",
    "DURATION_PATTERN",
    "ActivitiesSpec",
    "ActivitySpec",
    "AgentSpec",
    "Duration",
    "Entrypoint",
    "EventStreamSpec",
    "LogfireSpec",
    "McpServerSpec",
    "ModelSpec",
    "ObservabilitySpec",
    "OutputSpec",
    "RetrySpec",
    "RuntimeConfig",
    "SessionHistorySpec",
    "SessionsSpec",
    "SubAgentSpec",
    "TemporalSpec",
    "TemporalTLSSpec",
    "ToolFilterSpec",
    "ToolsetSpec",
    "VersioningSpec",
    "WorkerSpec",
    "check_toolset_ids",
    "field_error",
    "format_duration",
    "parse_duration",
]

DEFAULT_HEALTH_PORT = 8080
DEFAULT_MAXIMUM_ATTEMPTS = 5
"""Attempts an activity gets unless the manifest says otherwise (Temporal's own default is unlimited)."""
DEFAULT_METRICS_PORT = 9464

# One or more `<number><unit>` groups, as in Go's time.ParseDuration and Kubernetes' metav1.Duration.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Agent names end up in Temporal activity names (`agent__{name}__model_request`): keep them identifiers.
AGENT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$"
# Toolset and MCP server ids end up in activity names too.
TOOLSET_ID_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_-]{0,62}$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENTRYPOINT_EXAMPLE = "my_agents.support:agent"

_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Go's time.Duration (and so the apiserver's CEL `duration()`) stops at 2^63 - 1 ns, about 292 years.
MAX_DURATION_SECONDS = 2562047 * 3600


def parse_duration(value: Any) -> timedelta:
    """Parse `"30s"`, `"5m"`, `"1h30m"`, `"250ms"` (or a timedelta / number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value <= MAX_DURATION_SECONDS:
            raise ValueError(f"duration of {value} seconds is too long: at most 2562047h (about 292 years)")
        return timedelta(seconds=value)
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        raise ValueError(
            f"invalid duration {value!r}: write a number with a unit, e.g. '500ms', '30s', '5m' or '1h30m'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART_RE.findall(value))
    if not seconds <= MAX_DURATION_SECONDS:  # also catches inf
        shown = value if len(value) <= 24 else value[:20] + "..."
        raise ValueError(f"duration {shown!r} is too long: at most 2562047h (about 292 years)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Inverse of `parse_duration`, choosing the shortest exact spelling (`90s` → `1m30s`)."""
    millis = round(value.total_seconds() * 1000)
    if millis % 1000:
        return f"{millis}ms"
    seconds = millis // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def field_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field validation error located at `field` (a camelCase path relative to the model).

    A model validator's errors are otherwise reported at the model itself; `format_validation` appends
    `field` to the location so the error line names the field to change.
    """
    return PydanticCustomError("invalid_field", "{message}", {"message": message, "field_path": field})


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than zero")
    return value


_ENTRYPOINT_RE = re.compile(ENTRYPOINT_PATTERN)


def _entrypoint(value: str) -> str:
    if not _ENTRYPOINT_RE.match(value):
        raise ValueError(
            f"{value!r} is not an import path: write `package.module:attribute` (a dotted module path, a "
            f"colon, then the name of an object in that module), e.g. {ENTRYPOINT_EXAMPLE!r}"
        )
    return value


Entrypoint = Annotated[
    str, AfterValidator(_entrypoint), WithJsonSchema({"type": "string", "pattern": ENTRYPOINT_PATTERN})
]
"""An import path `package.module:attribute`; a value of another shape is refused with an example."""


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A positive duration written as a string such as `30s`, `5m` or `1h30m`."""


class Spec(BaseModel):
    """Base for every contract model: camelCase API names, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    def to_api(self) -> dict[str, Any]:
        """The JSON form used in manifests and ConfigMaps (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- approvals ------------------------------------------------------------------------------------------

DEFAULT_APPROVAL_TIMEOUT = timedelta(hours=24)
"""How long a run waits for a decision unless `approvals.timeout` says otherwise: every wait ends."""


class ApprovalRuleSpec(Spec):
    """Tool calls that need a person's approval before they run."""

    tool: str = Field(
        min_length=1,
        description="Tool name, or a shell-style pattern (`delete_*`, `*`). MCP tools are named as the "
        "server names them (without the toolPrefix).",
    )
    toolset: str | None = Field(
        default=None,
        description="Toolset id or MCP server id (a pattern too); unset: the tool in any toolset.",
    )


class ApprovalsSpec(Spec):
    """Human approval of tool calls, and how long a run waits for it."""

    tools: list[ApprovalRuleSpec] = Field(
        default_factory=list,
        description="Calls to these tools wait for a decision (durable-agents approve/deny, or a "
        "ToolApproval). Tools of code agents declare it in code instead (requires_approval=True, "
        "ApprovalRequired).",
    )
    timeout: Duration = Field(
        default=DEFAULT_APPROVAL_TIMEOUT,
        description="How long a run waits for a decision (and for external input) before onTimeout applies.",
    )
    on_timeout: Literal["deny", "fail"] = Field(
        default="deny",
        description="deny: the model is told the call was not approved in time and goes on without it; "
        "fail: the run fails, naming the call.",
    )


# --- activities -----------------------------------------------------------------------------------------


class RetrySpec(Spec):
    """Temporal retry policy for an activity. Unset fields take Temporal's defaults."""

    initial_interval: Duration | None = Field(
        default=None, description="Delay before the first retry, e.g. `1s` (runtime default `1s`)."
    )
    backoff_coefficient: float | None = Field(
        default=None,
        ge=1.0,
        description="Multiplier applied to the interval after each retry (>= 1; runtime default 2).",
    )
    maximum_interval: Duration | None = Field(
        default=None, description="Upper bound for the delay between retries (runtime default `30s`)."
    )
    maximum_attempts: int | None = Field(
        default=None,
        ge=0,
        description="Attempts in total, the first included; 0 means unlimited. The runtime's default is "
        f"{DEFAULT_MAXIMUM_ATTEMPTS}, so a failing tool or model request ends the run with its error instead "
        "of retrying forever.",
    )
    non_retryable_error_types: list[str] | None = Field(
        default=None,
        description="Exception class names that fail the activity at once instead of being retried.",
    )


class ActivitySpec(Spec):
    """Timeouts and retries of one kind of activity (model request, tool call, MCP call)."""

    start_to_close_timeout: Duration | None = Field(
        default=None, description="Longest one attempt may run (runtime default `60s`)."
    )
    schedule_to_close_timeout: Duration | None = Field(
        default=None, description="Longest the activity may take over all its attempts."
    )
    heartbeat_timeout: Duration | None = Field(
        default=None,
        description="A worker that stops heartbeating for this long is presumed dead and the attempt is "
        "retried elsewhere (runtime default `2s`). The worker process heartbeats every running activity "
        "from its own thread, so a slow or blocking tool is not killed; only a dead or frozen worker "
        "stops heartbeating.",
    )
    retry: RetrySpec | None = Field(default=None, description="Retry policy.")

    @model_validator(mode="after")
    def _start_to_close_within_schedule_to_close(self) -> Self:
        if (
            self.start_to_close_timeout is not None
            and self.schedule_to_close_timeout is not None
            and self.start_to_close_timeout > self.schedule_to_close_timeout
        ):
            raise field_error(
                "startToCloseTimeout",
                "must not exceed scheduleToCloseTimeout: raise scheduleToCloseTimeout or lower "
                "startToCloseTimeout",
            )
        return self


class ActivitiesSpec(Spec):
    """Activity settings at every level pydantic-ai supports; later levels override earlier ones."""

    default: ActivitySpec | None = Field(default=None, description="Applies to every activity of the agent.")
    model: ActivitySpec | None = Field(default=None, description="Model requests (merged over `default`).")
    toolsets: dict[str, ActivitySpec] = Field(
        default_factory=dict, description="Per toolset or MCP server id (merged over `default`)."
    )
    tools: dict[str, dict[str, ActivitySpec | Literal[False]]] = Field(
        default_factory=dict,
        description="Per tool, keyed by toolset id then tool name. `false` runs the tool inside the "
        "workflow instead of as an activity (only for async tools that do no I/O).",
    )


# --- agent ----------------------------------------------------------------------------------------------


class ToolFilterSpec(Spec):
    """Which tools of an MCP server the agent may see."""

    include: list[str] | None = Field(default=None, description="Only these tool names (default: all).")
    exclude: list[str] = Field(default_factory=list, description="Tool names to hide.")


class McpServerSpec(Spec):
    """A remote MCP server whose tools the agent uses as a durable toolset."""

    id: Annotated[str, Field(pattern=TOOLSET_ID_PATTERN)] = Field(
        description="Stable toolset id; part of activity names, so changing it breaks in-flight runs."
    )
    url: Annotated[str, Field(pattern=r"^https?://")] = Field(description="Server URL (http or https).")
    transport: Literal["streamable-http", "sse"] = Field(
        default="streamable-http", description="MCP transport: `streamable-http` or `sse`."
    )
    headers_from_env: dict[str, Annotated[str, Field(pattern=ENV_NAME_PATTERN)]] = Field(
        default_factory=dict,
        description="HTTP headers whose values are read from environment variables: header name → env "
        "var name. Values never appear in config or logs.",
    )
    tool_prefix: str | None = Field(default=None, description="Prefix added to this server's tool names.")
    tool_filter: ToolFilterSpec | None = Field(default=None, description="Tool filter.")
    timeout: Duration | None = Field(default=None, description="Timeout for connecting and for each request.")


class ToolsetSpec(Spec):
    """A toolset from Python code, imported by path (for declarative agents that need function tools)."""

    id: Annotated[str, Field(pattern=TOOLSET_ID_PATTERN)] = Field(
        description="Stable toolset id; part of activity names."
    )
    entrypoint: Entrypoint = Field(
        description="`package.module:attribute` naming a pydantic-ai toolset (e.g. a FunctionToolset)."
    )


DEFAULT_SUB_AGENT_TIMEOUT = timedelta(hours=1)
"""How long a call of a sub-agent may take unless `subAgents[].timeout` says otherwise."""
DEFAULT_MAX_SUB_AGENT_DEPTH = 4
"""How deep agents may call agents unless `agent.maxSubAgentDepth` says otherwise."""
SUB_AGENT_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$"
"""A tool name the model providers accept."""


class SubAgentSpec(Spec):
    """Another DurableAgent this agent uses as a tool: each call runs it as a child workflow on the
    callee's task queue (its own workers, activity settings, approvals and versions apply)."""

    name: Annotated[str, Field(pattern=SUB_AGENT_NAME_PATTERN)] = Field(
        description="The tool's name, as the model sees it (code agents: the name `call_agent` takes)."
    )
    agent_ref: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="The DurableAgent called (its metadata.name, same namespace)."
    )
    description: str | None = Field(
        default=None, description="What the tool does, for the model (default: names the agent)."
    )
    task_queue: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The callee's task queue; default `<namespace>.<agentRef>`, the callee's default. Set "
        "it when the callee sets spec.temporal.taskQueue.",
    )
    timeout: Duration = Field(
        default=DEFAULT_SUB_AGENT_TIMEOUT, description="How long one call may take (the child's timeout)."
    )


class OutputSpec(Spec):
    """What the agent returns: plain text, or JSON matching a schema (structured output)."""

    type: Literal["text", "json"] = Field(default="text", description="`text` or `json`.")
    json_schema: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="JSON schema of the output object (required when type is `json`).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    name: str | None = Field(default=None, description="Name of the output tool shown to the model.")
    description: str | None = Field(default=None, description="Description of the output shown to the model.")

    @model_validator(mode="after")
    def _schema_iff_json(self) -> Self:
        if self.type == "json" and not self.json_schema:
            raise field_error("schema", "required when output.type is 'json': add a JSON schema object")
        if self.type == "text" and self.json_schema:
            raise field_error("schema", "only used when output.type is 'json': set type: json")
        return self


class AgentSpec(Spec):
    """The agent: declarative (model, instructions, tools from MCP servers) or code (`entrypoint`)."""

    name: Annotated[str, Field(pattern=AGENT_NAME_PATTERN)] = Field(
        description="Stable pydantic-ai agent name. It is part of every activity name, so it cannot "
        "change after creation."
    )
    model: str | None = Field(
        default=None,
        description="Model, as pydantic-ai names it: `openai-chat:gpt-4.1`, `anthropic:claude-sonnet-4-5`, "
        "`test` (offline).",
    )
    instructions: str | None = Field(default=None, description="System instructions.")
    model_settings: dict[str, Any] | None = Field(
        default=None,
        description="pydantic-ai model settings (temperature, max_tokens, ...).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    output: OutputSpec | None = Field(default=None, description="Output type; plain text when unset.")
    mcp_servers: list[McpServerSpec] = Field(default_factory=list, description="MCP servers used as tools.")
    toolsets: list[ToolsetSpec] = Field(default_factory=list, description="Python toolsets, by import path.")
    retries: int | None = Field(
        default=None, ge=0, description="How often the model may retry a tool call or output."
    )
    image: str | None = Field(default=None, description="Code agents: the image holding the agent's code.")
    entrypoint: Entrypoint | None = Field(
        default=None,
        description="Code agents: `package.module:attribute` naming a pydantic-ai Agent (made durable "
        "here) or an already durable one.",
    )
    sub_agents: list[SubAgentSpec] | None = Field(
        default=None,
        description="Other DurableAgents this agent calls as tools, each call a child workflow. Code "
        "agents call them with `durable_agents_runtime.call_agent` from a tool.",
    )
    max_sub_agent_depth: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description=f"How deep a call tree started by this agent may go (default "
        f"{DEFAULT_MAX_SUB_AGENT_DEPTH}); bounds cycles of agents calling each other.",
    )

    @property
    def is_code(self) -> bool:
        return self.entrypoint is not None

    @model_validator(mode="after")
    def _declarative_xor_code(self) -> Self:
        declarative = [
            f for f in ("model", "instructions", "model_settings", "output") if getattr(self, f) is not None
        ] + [f for f in ("mcp_servers", "toolsets") if getattr(self, f)]
        if self.entrypoint is None and self.model is None:
            raise field_error(
                "model",
                "agent needs either `model` (a declarative agent) or `entrypoint` (a code agent): set one",
            )
        if self.entrypoint is not None and declarative:
            names = ", ".join(to_camel(f) for f in declarative)
            raise field_error(
                "entrypoint",
                f"a code agent cannot also set {names} (declarative fields): a code agent defines these in "
                "code, so remove them or remove `entrypoint`",
            )
        if self.image is not None and self.entrypoint is None:
            raise field_error("image", "only used with agent.entrypoint (code agents): add an entrypoint")
        seen: set[str] = set()
        paths = [(f"mcpServers[{i}].id", s.id) for i, s in enumerate(self.mcp_servers)] + [
            (f"toolsets[{i}].id", t.id) for i, t in enumerate(self.toolsets)
        ]
        for path, toolset_id in paths:
            if toolset_id in seen:
                raise field_error(
                    path,
                    f"toolset id {toolset_id!r} is already used: ids must be unique across mcpServers and "
                    "toolsets, so rename one",
                )
            seen.add(toolset_id)
        names = [s.name for s in self.sub_agents or []]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise field_error(f"subAgents[{index}].name", f"{name!r} is already used: rename one")
        return self

    def sub_agent(self, name_or_ref: str) -> SubAgentSpec | None:
        """The sub-agent named `name_or_ref` (its `name`, else its `agentRef`), or None."""
        entries = self.sub_agents or []
        by_name = [s for s in entries if s.name == name_or_ref]
        return (by_name or [s for s in entries if s.agent_ref == name_or_ref] or [None])[0]


# --- model provider -------------------------------------------------------------------------------------


class ModelSpec(Spec):
    """Provider settings that are not secrets. Credentials come from the environment only."""

    base_url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server "
        "(sets OPENAI_BASE_URL for `openai-chat:` models).",
    )


# --- worker ---------------------------------------------------------------------------------------------


class EventStreamSpec(Spec):
    """Live run events (tool calls, text) published on the workflow for `durable-agents run --stream`."""

    enabled: bool = Field(default=True, description="Publish run events to a workflow stream topic.")


# --- sessions -------------------------------------------------------------------------------------------

DEFAULT_SESSION_IDLE_TIMEOUT = timedelta(hours=24)
DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS = 2000
DEFAULT_HISTORY_MAX_BYTES = 400_000
DEFAULT_HISTORY_KEEP_LAST = 40


class SessionHistorySpec(Spec):
    """How a conversation's message history stays under Temporal's 2 MB payload limit."""

    max_bytes: int = Field(
        default=DEFAULT_HISTORY_MAX_BYTES,
        ge=10_000,
        le=1_800_000,
        description="Size of the message history (JSON bytes) at which `policy` applies, checked before "
        "every turn. Every model request carries the whole history as its activity input, so a turn takes "
        "longer the more history it carries; keep it well under Temporal's 2 MB payload limit (the SDK "
        f"warns above 512 KiB; default {DEFAULT_HISTORY_MAX_BYTES}).",
    )
    policy: Literal["keepLast", "summarize"] = Field(
        default="keepLast",
        description="`keepLast`: drop the oldest turns, keeping the last `keepLast` messages. `summarize`: "
        "replace the older turns with a summary written by the agent's model (one model request, run as "
        "an activity), keeping the last `keepLast` messages as they are.",
    )
    keep_last: int = Field(
        default=DEFAULT_HISTORY_KEEP_LAST,
        ge=1,
        description="Messages kept verbatim when the policy applies (rounded to whole turns: a turn is "
        f"never split, and the latest turn is always kept; default {DEFAULT_HISTORY_KEEP_LAST}).",
    )


class SessionsSpec(Spec):
    """Conversations (`durable-agents chat`, AgentRun `spec.session`): one workflow per session id."""

    idle_timeout: Duration = Field(
        default=DEFAULT_SESSION_IDLE_TIMEOUT,
        description="A session with no message for this long ends; messaging it afterwards is refused "
        f"with a message saying so (default {format_duration(DEFAULT_SESSION_IDLE_TIMEOUT)}).",
    )
    continue_as_new_after_events: int = Field(
        default=DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS,
        ge=1,
        le=40_000,
        description="The session continues as a new workflow run (carrying its messages) once its "
        "Temporal history has this many events, or earlier when Temporal suggests it; this keeps a "
        "long conversation's history, and so its replays, short (default "
        f"{DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS}).",
    )
    history: SessionHistorySpec = Field(
        default_factory=SessionHistorySpec, description="Bounding the carried message history."
    )


class WorkerSpec(Spec):
    """How the worker process polls and shuts down."""

    max_concurrent_activities: int | None = Field(
        default=None, ge=1, description="Activity slots per worker."
    )
    max_concurrent_workflow_tasks: int | None = Field(
        default=None, ge=1, description="Workflow task slots per worker."
    )
    graceful_shutdown_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM, how long in-flight activities may finish before they are cancelled. Keep it "
        "below the pod's terminationGracePeriodSeconds.",
    )
    sticky_schedule_to_start_timeout: Duration = Field(
        default=timedelta(seconds=2),
        description="How long a workflow task waits for the worker that has the run cached before any "
        "worker takes it. Short values make a dead worker cost seconds.",
    )
    run_context_type: Entrypoint | None = Field(
        default=None,
        description="`module:Class`, a TemporalRunContext subclass carrying extra fields into activities.",
    )
    passthrough_modules: list[str] = Field(
        default_factory=list,
        description="Modules the workflow sandbox imports once and shares (e.g. `pandas`).",
    )
    sandbox: bool = Field(
        default=True,
        description="Run workflow code in Temporal's sandbox. Turning it off is faster and less safe.",
    )
    event_stream: EventStreamSpec = Field(default_factory=EventStreamSpec, description="Run event stream.")
    health_port: int = Field(
        default=DEFAULT_HEALTH_PORT, ge=0, le=65535, description="Liveness/readiness HTTP port."
    )


# --- observability --------------------------------------------------------------------------------------


class LogfireSpec(Spec):
    """Logfire tracing. Off the network unless a token is present and `send` is true."""

    enabled: bool = Field(default=True, description="Instrument the agent and Temporal with Logfire spans.")
    send: bool = Field(
        default=True, description="Send to Logfire when a token (LOGFIRE_TOKEN) is in the environment."
    )
    metrics: bool = Field(default=False, description="Also export Temporal SDK metrics through Logfire.")
    service_name: str | None = Field(
        default=None, description="Service name on spans (default: the agent name)."
    )
    environment: str | None = Field(default=None, description="Deployment environment label.")


class ObservabilitySpec(Spec):
    """Tracing and metrics."""

    logfire: LogfireSpec = Field(default_factory=LogfireSpec, description="Logfire settings.")
    otlp_endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None, description="OTLP/HTTP endpoint for traces (e.g. an OpenTelemetry collector)."
    )
    include_content: bool = Field(
        default=False,
        description=(
            "Put prompts, instructions, model responses, tool arguments and tool results in span "
            "attributes. Off: spans carry names, ids, timings and token counts only."
        ),
    )
    # 0, not null, is "off": a merge or apply patch with null deletes the field and brings the default back.
    prometheus_port: int = Field(
        default=DEFAULT_METRICS_PORT,
        ge=0,
        le=65535,
        description="Prometheus metrics port; 0 turns metrics off.",
    )


# --- temporal connection (runtime side) -----------------------------------------------------------------


class TemporalTLSSpec(Spec):
    """TLS to the Temporal frontend; file paths as mounted in the worker pod."""

    server_name: str | None = Field(default=None, description="Expected server name (SNI).")
    ca_file: str | None = Field(default=None, description="CA bundle file.")
    client_cert_file: str | None = Field(default=None, description="mTLS client certificate file.")
    client_key_file: str | None = Field(default=None, description="mTLS client key file.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            missing = "clientKeyFile" if self.client_key_file is None else "clientCertFile"
            raise field_error(missing, "tls.clientCertFile and tls.clientKeyFile must be set together")
        return self


class TemporalSpec(Spec):
    """Where the worker connects. The API key, if any, is read from an environment variable."""

    address: str = Field(default="127.0.0.1:7233", description="Temporal frontend `host:port`.")
    namespace: str = Field(default="default", description="Temporal namespace.")
    task_queue: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="Task queue the agent's workflows and activities run on."
    )
    tls: TemporalTLSSpec | None = Field(default=None, description="TLS settings; plain TCP when unset.")
    api_key_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = Field(
        default=None, description="Name of the environment variable holding a Temporal Cloud API key."
    )

    @model_validator(mode="after")
    def _mtls_xor_api_key(self) -> Self:
        if self.api_key_env and self.tls and self.tls.client_cert_file:
            raise field_error(
                "apiKeyEnv",
                "use either an API key (apiKeyEnv) or an mTLS client certificate (tls.clientCertFile), not "
                "both: remove one",
            )
        return self


# --- worker versioning ----------------------------------------------------------------------------------

VERSIONING_BEHAVIORS = ("Pinned", "AutoUpgrade")
DEFAULT_REPLAY_HISTORIES = 20
"""Recent runs the replay gate replays when no count is given."""
BUILD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


_BUILD_ID_RE = re.compile(BUILD_ID_PATTERN)


def _deployment_name(value: str) -> str:
    if not value or "." in value or len(value) > 200:
        raise ValueError(
            f"{value!r} cannot name a Temporal Worker Deployment: use 1-200 characters without `.` (Temporal "
            "reads a dot as the separator of deployment name and build id), e.g. 'shop/support'"
        )
    return value


def _build_id(value: str) -> str:
    if not _BUILD_ID_RE.match(value):
        raise ValueError(
            f"{value!r} is not a build id: use letters, digits, `-` and `_` (at most 63, starting with a "
            "letter or digit), e.g. 'release-42'"
        )
    return value


class VersioningSpec(Spec):
    """Temporal Worker Deployment Versioning: which version this worker is, and how its runs move.

    Logic (the build id derived from the config, promotion, draining) lives in `versioning.py`.
    """

    behavior: Literal["Pinned", "AutoUpgrade"] = Field(
        default="Pinned",
        description="`Pinned` (default): a run finishes on the version it started on, so a change never "
        "reaches runs already in flight. `AutoUpgrade`: running workflows move to the new current version "
        "at their next step; only for changes known to be replay-safe.",
    )
    deployment_name: (
        Annotated[
            str,
            AfterValidator(_deployment_name),
            WithJsonSchema({"type": "string", "pattern": r"^[^.]+$", "maxLength": 200}),
        ]
        | None
    ) = Field(
        default=None,
        description="Temporal Worker Deployment name, without dots (default: the task queue with each `.` "
        "written as `/`).",
    )
    build_id: (
        Annotated[
            str, AfterValidator(_build_id), WithJsonSchema({"type": "string", "pattern": BUILD_ID_PATTERN})
        ]
        | None
    ) = Field(
        default=None,
        description="Build id of this version (default: derived from the runtime config and the image, so "
        "any change to them is a new version).",
    )
    replay_histories: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Before it polls, the worker replays this many recent runs of its task queue against "
        "its config and records the verdict on its version in Temporal, where the operator reads it "
        "before the version takes traffic (0: no gate). Set by the operator.",
    )


# --- the contract ---------------------------------------------------------------------------------------


def check_toolset_ids(agent: AgentSpec, activities: ActivitiesSpec) -> None:
    """Raise when `activities.toolsets` / `activities.tools` name a toolset id the declarative agent lacks.

    For model validators of any model holding both `agent` and `activities` (the error is located there).
    """
    if agent.is_code:
        return  # code agents define their toolsets in code; ids are checked when the agent loads
    known = {s.id for s in agent.mcp_servers} | {t.id for t in agent.toolsets}
    for section in ("toolsets", "tools"):
        unknown = sorted(set(getattr(activities, section)) - known)
        if unknown:
            raise field_error(
                f"activities.{section}",
                f"names toolset ids {unknown} that the agent does not have (known ids: "
                f"{sorted(known) or 'none'}): fix the id or add the toolset to agent.toolsets or "
                "agent.mcpServers",
            )


class RuntimeConfig(Spec):
    """Everything a worker needs, rendered by the operator into a ConfigMap (key `runtime.json`)."""

    agent: AgentSpec = Field(description="The agent.")
    temporal: TemporalSpec = Field(description="Temporal connection and task queue.")
    activities: ActivitiesSpec = Field(default_factory=ActivitiesSpec, description="Activity settings.")
    worker: WorkerSpec = Field(default_factory=WorkerSpec, description="Worker settings.")
    approvals: ApprovalsSpec | None = Field(
        default=None,
        description="Human approval of tool calls (unset: what code agents declare, 24h timeout).",
    )
    model: ModelSpec = Field(default_factory=ModelSpec, description="Model provider settings.")
    observability: ObservabilitySpec = Field(
        default_factory=ObservabilitySpec, description="Tracing and metrics."
    )
    versioning: VersioningSpec | None = Field(
        default=None,
        description="Worker Deployment Versioning; unset, the worker is unversioned (every run replays on "
        "whatever worker picks it up).",
    )
    sessions: SessionsSpec | None = Field(
        default=None, description="Conversation settings; the defaults of `SessionsSpec` when unset."
    )
    budget: UsageBudget | None = Field(default=None, description="What each run of the agent may use.")

    @model_validator(mode="after")
    def _tool_settings_name_known_toolsets(self) -> Self:
        check_toolset_ids(self.agent, self.activities)
        for index, sub_agent in enumerate(self.agent.sub_agents or []):
            if sub_agent.task_queue is None:
                raise field_error(
                    f"agent.subAgents[{index}].taskQueue",
                    "required in a runtime config (a manifest derives it from agentRef): set it",
                )
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)

    @classmethod
    def from_file(cls, path: str | Path) -> RuntimeConfig:
        """Read the JSON (or YAML) file the operator renders."""
        from durable_agents_api.errors import ConfigError

        text = Path(path).read_text()
        try:
            if str(path).endswith((".yaml", ".yml")):
                import yaml

                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    raise ConfigError(f"invalid {path}: not valid YAML: {exc}") from None
                return cls.model_validate(data)
            return cls.model_validate_json(text)
        except ValueError as exc:
            raise ConfigError.from_validation(exc, source=str(path)) from None
