"""The CRD kinds: what each resource's CRD says beyond its pydantic model.

Names, short names and printer columns, the scale subresource, list semantics for server-side apply, and
the CEL validation rules the API server evaluates (`x-kubernetes-validations`), each next to the field it
guards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from durable_agents_api.resources import API_GROUP, AgentRun, DurableAgent, TemporalConnection, ToolApproval
from durable_agents_operator.naming import MAX_AGENT_NAME

from .schedule_rules import SCHEDULE_PATCHES

__all__ = [
    "AGENT_RUN",
    "DURABLE_AGENT",
    "JSON",
    "KINDS",
    "MAX_TOOLSETS",
    "TEMPORAL_CONNECTION",
    "TOOL_APPROVAL",
    "CrdKind",
    "PrinterColumn",
    "Rule",
]

JSON = dict[str, Any]

# Toolsets and MCP servers one agent may configure activity settings for.
MAX_TOOLSETS = 64


@dataclass(frozen=True)
class Rule:
    """A CEL validation rule (`x-kubernetes-validations`) evaluated by the API server."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_api(self) -> JSON:
        out: JSON = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`; priority 1 columns show only with `-o wide`."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_api(self) -> JSON:
        out: JSON = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class CrdKind:
    """Everything about one resource's CRD that its pydantic model does not say."""

    model: type[BaseModel]
    kind: str
    plural: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    # Schema additions keyed by a path of property names below the root (`("spec", "agent", "name")`;
    # `"[]"` steps into array items, `"{}"` into map values);
    # `x-kubernetes-validations` lists are appended, other keys set. A path that no longer exists is an
    # error, so renaming a model field cannot silently drop a rule.
    patches: dict[tuple[str, ...], JSON] = field(default_factory=dict)
    scale: bool = False

    @property
    def name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _rules(*rules: Rule) -> JSON:
    return {"x-kubernetes-validations": [r.to_api() for r in rules]}


def _condition_column(condition: str, description: str) -> PrinterColumn:
    return PrinterColumn(
        condition, "string", f'.status.conditions[?(@.type=="{condition}")].status', description
    )


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the resource was created.")
# Conditions are keyed by type, so server-side apply merges them one by one instead of replacing the list.
_CONDITIONS_BY_TYPE: JSON = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
_LIST_BY_ID: JSON = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]}

_ACTIVITY_SPEC_PATHS = (
    ("spec", "activities", "default"),
    ("spec", "activities", "model"),
    ("spec", "activities", "toolsets", "{}"),
)


def _activity_timeouts(path: tuple[str, ...]) -> JSON:
    where = ".".join(path).replace(".{}", "[*]")
    return _rules(
        Rule(
            "!has(self.startToCloseTimeout) || !has(self.scheduleToCloseTimeout) || "
            "duration(self.startToCloseTimeout) <= duration(self.scheduleToCloseTimeout)",
            f"{where}.startToCloseTimeout must not exceed scheduleToCloseTimeout: raise "
            "scheduleToCloseTimeout or lower startToCloseTimeout.",
            field_path=".startToCloseTimeout",
        )
    )


DURABLE_AGENT = CrdKind(
    model=DurableAgent,
    kind="DurableAgent",
    plural="durableagents",
    short_names=("da",),
    scale=True,
    printer_columns=(
        _condition_column("Ready", "Whether the agent's workers are polling and healthy."),
        PrinterColumn("Replicas", "integer", ".spec.replicas", "Desired worker pods."),
        PrinterColumn("Workers", "integer", ".status.workers", "Workers seen polling the task queue."),
        PrinterColumn("Backlog", "integer", ".status.backlog.count", "Tasks waiting on the task queue."),
        PrinterColumn("Running", "integer", ".status.runs.running", "Runs in progress."),
        PrinterColumn("Failed", "integer", ".status.runs.failed", "Runs that failed."),
        PrinterColumn(
            "Awaiting",
            "integer",
            ".status.awaitingApproval",
            "AgentRuns waiting for a decision on a tool call.",
        ),
        PrinterColumn("Task Queue", "string", ".status.taskQueue", "The task queue in use.", priority=1),
        PrinterColumn(
            "Version",
            "string",
            ".status.currentVersion",
            "Build id of the version new runs start on (spec.versioning.enabled).",
        ),
        # A string, not a date: kubectl shows a future date as `<invalid>`.
        PrinterColumn(
            "Next Run", "string", ".status.nextScheduledRun", "The earliest next run of any schedule."
        ),
        _AGE,
    ),
    patches={
        # The name is the value of the worker pods' agent label, and label values stop at 63 characters.
        ("metadata",): {"properties": {"name": {"type": "string", "maxLength": MAX_AGENT_NAME}}},
        ("spec",): _rules(
            Rule(
                "!has(oldSelf.temporal) || !has(oldSelf.temporal.taskQueue) || "
                "(has(self.temporal) && has(self.temporal.taskQueue) && "
                "self.temporal.taskQueue == oldSelf.temporal.taskQueue)",
                "spec.temporal.taskQueue cannot change once set: workers and running workflows are bound "
                "to it. Put back the old value, or create a new DurableAgent for a new task queue.",
                field_path=".temporal.taskQueue",
            ),
            Rule(
                "!has(oldSelf.versioning) || !has(oldSelf.versioning.enabled) || !oldSelf.versioning.enabled "
                "|| (has(self.versioning) && has(self.versioning.enabled) && self.versioning.enabled)",
                "spec.versioning.enabled cannot be turned off: runs pinned to a version need that version's "
                "workers, and Temporal keeps routing new runs to the current version. Keep it on (once old "
                "versions drain, one Deployment serves everything), or create a new DurableAgent.",
                field_path=".versioning.enabled",
            ),
        ),
        ("spec", "agent"): _rules(
            Rule(
                "has(self.model) != has(self.entrypoint)",
                "spec.agent needs exactly one of `model` (a declarative agent) or `entrypoint` (a code "
                "agent, `package.module:agent`): set one and remove the other.",
            ),
            Rule(
                "!has(self.entrypoint) || !(has(self.instructions) || has(self.modelSettings) || "
                "has(self.output) || (has(self.mcpServers) && size(self.mcpServers) > 0) || "
                "(has(self.toolsets) && size(self.toolsets) > 0))",
                "spec.agent.entrypoint makes this a code agent, which defines instructions, "
                "modelSettings, output, mcpServers and toolsets in code: remove those fields or remove "
                "entrypoint.",
            ),
            Rule(
                "!has(self.image) || has(self.entrypoint)",
                "spec.agent.image is only used by code agents: add spec.agent.entrypoint or remove "
                "spec.agent.image.",
                field_path=".image",
            ),
        ),
        # The agent name is part of every Temporal activity name (`agent__<name>__...`); the bound matches
        # the name pattern and keeps the equality rule cheap.
        ("spec", "agent", "name"): {
            "maxLength": 63,
            **_rules(
                Rule(
                    "self == oldSelf",
                    "spec.agent.name cannot change: it is part of every activity name, so in-flight runs "
                    "would break. Put back the old name, or create a new DurableAgent.",
                )
            ),
        },
        ("spec", "agent", "output"): _rules(
            Rule(
                "!has(self.type) || self.type != 'json' || has(self.schema)",
                "spec.agent.output.schema is required when output.type is `json`: add a JSON schema "
                "object, or set type: text.",
                field_path=".schema",
                reason="FieldValueRequired",
            ),
            Rule(
                "(has(self.type) && self.type == 'json') || !has(self.schema)",
                "spec.agent.output.schema is only used when output.type is `json`: set type: json or "
                "remove the schema.",
                field_path=".schema",
            ),
        ),
        ("spec", "agent", "mcpServers"): _LIST_BY_ID,
        ("spec", "agent", "toolsets"): _LIST_BY_ID,
        **{path: _activity_timeouts(path) for path in _ACTIVITY_SPEC_PATHS},
        # Bounded so the API server can afford the per-toolset rule above (an agent has a handful).
        ("spec", "activities", "toolsets"): {"maxProperties": MAX_TOOLSETS},
        ("spec", "autoscaling"): _rules(
            Rule(
                "(has(self.minReplicas) ? self.minReplicas : 1) <= "
                "(has(self.maxReplicas) ? self.maxReplicas : 10)",
                "spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas: lower "
                "minReplicas or raise maxReplicas.",
                field_path=".minReplicas",
            )
        ),
        **SCHEDULE_PATCHES,
        ("status", "conditions"): _CONDITIONS_BY_TYPE,
    },
)

AGENT_RUN = CrdKind(
    model=AgentRun,
    kind="AgentRun",
    plural="agentruns",
    short_names=("ar",),
    printer_columns=(
        PrinterColumn("Agent", "string", ".spec.agentRef.name", "The DurableAgent that runs the prompt."),
        PrinterColumn(
            "Phase", "string", ".status.phase", "Pending, Running, AwaitingApproval, Succeeded or Failed."
        ),
        PrinterColumn(
            "Waiting On",
            "string",
            ".status.pendingApprovals[*].toolName",
            "Tools whose calls wait for a decision.",
        ),
        PrinterColumn("Workflow", "string", ".status.workflowId", "Temporal workflow id.", priority=1),
        _AGE,
    ),
    patches={
        ("spec",): _rules(
            Rule(
                "self == oldSelf",
                "AgentRun spec is immutable: a run is a run. Create a new AgentRun to run another prompt.",
            )
        ),
        ("status", "conditions"): _CONDITIONS_BY_TYPE,
    },
)

TEMPORAL_CONNECTION = CrdKind(
    model=TemporalConnection,
    kind="TemporalConnection",
    plural="temporalconnections",
    short_names=("tconn",),
    printer_columns=(
        PrinterColumn("Address", "string", ".spec.address", "Temporal frontend host:port."),
        PrinterColumn("Namespace", "string", ".spec.namespace", "Temporal namespace.", priority=1),
        _condition_column("Reachable", "Whether the operator reached this Temporal at the last check."),
        _AGE,
    ),
    patches={
        ("spec",): _rules(
            Rule(
                "!(has(self.apiKeySecretRef) && has(self.tls) && has(self.tls.clientCertSecretRef))",
                "spec.apiKeySecretRef and spec.tls.clientCertSecretRef (mTLS) exclude each other: "
                "authenticate with one of them and remove the other.",
                field_path=".apiKeySecretRef",
            )
        ),
        ("status", "conditions"): _CONDITIONS_BY_TYPE,
    },
)

TOOL_APPROVAL = CrdKind(
    model=ToolApproval,
    kind="ToolApproval",
    plural="toolapprovals",
    short_names=("tap",),
    printer_columns=(
        PrinterColumn("Run", "string", ".spec.runRef.name", "The AgentRun decided on."),
        PrinterColumn("Call", "string", ".spec.toolCallId", "The call decided (empty with all: true)."),
        PrinterColumn("Decision", "string", ".spec.decision", "Approve or Deny (empty for a result)."),
        PrinterColumn("By", "string", ".spec.decidedBy", "Who decided (filled in by the API server)."),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Applied or Refused."),
        _AGE,
    ),
    patches={
        ("spec",): _rules(
            Rule(
                "self == oldSelf",
                "ToolApproval spec is immutable: a decision is made once. Create another ToolApproval.",
            ),
            Rule(
                "has(self.toolCallId) != (has(self.all) && self.all)",
                "name the call to decide in spec.toolCallId, or set spec.all: true to decide every "
                "pending approval of the run (one of them, not both).",
                field_path=".toolCallId",
            ),
            Rule(
                "has(self.decision) != has(self.result)",
                "set spec.decision (Approve or Deny) for a call waiting for approval, or spec.result for "
                "a call waiting for input from outside: exactly one of them.",
                field_path=".decision",
            ),
            Rule(
                "!(has(self.all) && self.all) || has(self.decision)",
                "spec.all decides approvals: set spec.decision to Approve or Deny (answer calls waiting "
                "for input one by one with spec.toolCallId and spec.result).",
                field_path=".all",
            ),
        ),
    },
)

KINDS: tuple[CrdKind, ...] = (DURABLE_AGENT, AGENT_RUN, TEMPORAL_CONNECTION, TOOL_APPROVAL)
