"""`AgentRun`: one run of a DurableAgent, started as a workflow with an id derived from the run's uid."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from durable_agents_api.budget import UsageBudget
from durable_agents_api.config import Duration, Spec, field_error
from durable_agents_api.contract import SESSION_ID_PATTERN, RunUsageSummary

from .common import API_VERSION, Condition, LocalObjectReference, ObjectMeta

__all__ = [
    "AgentRun",
    "AgentRunSpec",
    "AgentRunStatus",
    "ApprovalRecord",
    "PendingApproval",
    "RunPhase",
    "RunUsage",
    "workflow_id_for_run",
]

RunPhase = Literal["Pending", "Running", "AwaitingApproval", "Succeeded", "Failed"]


def workflow_id_for_run(uid: str) -> str:
    """The workflow id of an AgentRun: derived from its uid, so starting it twice is a no-op."""
    return f"agentrun-{uid}"


class AgentRunSpec(Spec):
    """What to run."""

    agent_ref: LocalObjectReference = Field(description="The DurableAgent in this namespace to run.")
    prompt: str = Field(min_length=1, description="The user prompt.")
    deps: dict[str, Any] | None = Field(
        default=None,
        description="Dependencies passed to the agent run (JSON object).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    model: str | None = Field(
        default=None, description="Model override for this run, e.g. `openai-chat:gpt-4.1-mini`."
    )
    timeout: Duration | None = Field(default=None, description="Workflow execution timeout, e.g. `10m`.")
    budget: UsageBudget | None = Field(
        default=None,
        description="What this run may use, the agents it calls included; it can only tighten the agent's "
        "spec.budget (each limit is the lower of the two).",
    )
    session: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = Field(
        default=None,
        description="A session id: the run is the next turn of that conversation with the agent (the "
        "session starts with its first turn; the agent's spec.sessions applies), and its status holds "
        "that turn's reply. Deleting the run does not end the session.",
    )

    @model_validator(mode="after")
    def _no_timeout_for_a_turn(self) -> Self:
        if self.session is not None and self.timeout is not None:
            raise field_error(
                "timeout",
                "a session turn has no timeout of its own (the session ends after the agent's "
                "spec.sessions.idleTimeout): remove timeout, or session",
            )
        if self.session is not None and self.budget is not None:
            raise field_error(
                "budget",
                "a session turn runs within the agent's spec.budget and has no budget of its own: remove "
                "budget, or session",
            )
        return self


# The CRD describes every field; the contract model carries none, so they are added here by API name.
_USAGE_DESCRIPTIONS = {
    "requests": "Model requests.",
    "inputTokens": "Input tokens.",
    "outputTokens": "Output tokens.",
    "toolCalls": "Tool calls.",
}


def _describe_usage(schema: dict[str, Any]) -> None:
    for name, prop in schema.get("properties", {}).items():
        if name not in _USAGE_DESCRIPTIONS:
            raise KeyError(
                f"RunUsageSummary gained the field {name!r}: describe it in "
                "api/durable_agents_api/resources/agentrun.py"
            )
        prop["description"] = _USAGE_DESCRIPTIONS[name]


class RunUsage(RunUsageSummary):
    """Token usage of the run: the workflow result's `RunUsageSummary`, under its camelCase API names."""

    model_config = Spec.model_config | ConfigDict(json_schema_extra=_describe_usage)

    @classmethod
    def of(cls, usage: RunUsageSummary) -> RunUsage:
        """The status usage of a workflow result's usage."""
        return cls.model_validate(usage.model_dump())


class PendingApproval(Spec):
    """A tool call the run waits on (the workflow's pending-calls query, as the operator last read it)."""

    tool_call_id: str = Field(description="Call id: name it in a ToolApproval's spec.toolCallId.")
    tool_name: str = Field(description="The tool the model called.")
    kind: Literal["approval", "external", "question"] = Field(
        description="approval: approve or deny it; external/question: answer it with its result."
    )
    args_preview: str = Field(default="", description="The call's arguments as JSON, cut to 200 characters.")
    requested_at: datetime | None = Field(default=None, description="When the run started waiting.")
    expires_at: datetime | None = Field(
        default=None, description="When the wait ends by the agent's approvals.timeout and onTimeout."
    )


class ApprovalRecord(Spec):
    """A decision the run took: who decided which call, and the ToolApproval that carried it if any."""

    tool_call_id: str = Field(description="The call decided.")
    decision: Literal["Approve", "Deny", "Answer"] = Field(description="Approve, Deny, or Answer (a result).")
    decided_by: str = Field(
        description="The Kubernetes user who created the ToolApproval; for a decision made with a Temporal "
        "client (the CLI), the name it gave; `approvals.timeout` when nobody decided in time."
    )
    decided_at: datetime | None = Field(default=None, description="When the run took the decision.")
    tool_approval: str | None = Field(
        default=None,
        description="The ToolApproval that carried the decision; none for a decision made with a Temporal "
        "client or by the decision timeout.",
    )


class AgentRunStatus(Spec):
    """Observed state of the run."""

    phase: RunPhase | None = Field(
        default=None,
        description="Pending, Running, AwaitingApproval (a tool call waits for a decision: see "
        "pendingApprovals), Succeeded or Failed.",
    )
    workflow_id: str | None = Field(default=None, description="Temporal workflow id.")
    task_queue: str | None = Field(default=None, description="Task queue the run was started on.")
    output: str | None = Field(default=None, description="The output (truncated; see outputSize).")
    output_size: int | None = Field(default=None, description="Size of the full output in bytes.")
    output_truncated: bool | None = Field(default=None, description="Whether `output` was truncated.")
    usage: RunUsage | None = Field(
        default=None, description="Token usage (of the agent runs this run called, too)."
    )
    cost_usd: float | None = Field(
        default=None,
        description="Estimated cost in US dollars where the models' prices are known (genai-prices).",
    )
    children: int | None = Field(default=None, description="Agent runs this run called (child workflows).")
    child_workflow_ids: list[str] = Field(
        default_factory=list, description="Workflow ids of the agent runs this run called (the first 20)."
    )
    start_time: datetime | None = Field(default=None, description="When the workflow started.")
    completion_time: datetime | None = Field(default=None, description="When the workflow finished.")
    message: str | None = Field(default=None, description="What went wrong, when phase is Failed.")
    turn: int | None = Field(
        default=None, description="Runs with spec.session: this turn's number in the session, from 1."
    )
    workflow_run_id: str | None = Field(
        default=None,
        description="Runs with spec.session: the run of the session workflow that accepted this turn.",
    )
    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    pending_approvals: list[PendingApproval] = Field(
        default_factory=list,
        description="Tool calls the run waits on (at most 20 shown; decide them with a ToolApproval).",
    )
    decisions: list[ApprovalRecord] = Field(
        default_factory=list,
        description="Decisions the run took (by ToolApproval, Temporal client or timeout), latest last (the "
        "last 50 are kept); who decided is also in the workflow history.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="AwaitingApproval: True while a tool call waits for a decision "
        "(`kubectl wait --for=condition=AwaitingApproval`).",
    )


class AgentRun(Spec):
    """A single run of a DurableAgent on a prompt."""

    model_config = Spec.model_config | {"extra": "ignore"}

    api_version: Literal["durable-agents.dev/v1alpha1"] = Field(
        default=API_VERSION, description="API version."
    )
    kind: Literal["AgentRun"] = Field(default="AgentRun", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: AgentRunSpec = Field(description="What to run.")
    status: AgentRunStatus | None = Field(default=None, description="Observed state.")
