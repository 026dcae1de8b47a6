"""`ToolApproval`: a person's decision on a pending tool call of an AgentRun, made with kubectl.

Creating one is the decision: the operator forwards it to the run's workflow as the decide Update and
writes the outcome into the ToolApproval's status (and who decided which call into the AgentRun's).
RBAC decides who may create one; who did is `spec.decidedBy`, which the API server fills in (or checks)
from the requesting user with the chart's admission policies, so it is never a free choice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from durable_agents_api.config import Spec

from .common import API_VERSION, LocalObjectReference, ObjectMeta

__all__ = [
    "MAX_REASON_CHARS",
    "ApprovalDecision",
    "ToolApproval",
    "ToolApprovalPhase",
    "ToolApprovalSpec",
    "ToolApprovalStatus",
]

ApprovalDecision = Literal["Approve", "Deny"]
ToolApprovalPhase = Literal["Pending", "Applied", "Refused", "Failed"]
MAX_REASON_CHARS = 1024
"""A reason is shown to the model and kept in etcd: short."""


class ToolApprovalSpec(Spec):
    """Which call of which run is decided, and how. Immutable: a decision is made once."""

    run_ref: LocalObjectReference = Field(description="The AgentRun in this namespace whose call is decided.")
    tool_call_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The pending call to decide (status.pendingApprovals[].toolCallId of the AgentRun). "
        "Leave it out and set `all: true` to decide every pending approval of the run.",
    )
    all: bool | None = Field(
        default=None,
        description="Decide every approval the run waits for (calls waiting for input excepted).",
    )
    decision: ApprovalDecision | None = Field(
        default=None, description="Approve or Deny (for calls waiting for approval)."
    )
    reason: str | None = Field(
        default=None,
        max_length=MAX_REASON_CHARS,
        description="Why: a denied call's reason is what the model is told.",
    )
    result: str | None = Field(
        default=None,
        max_length=32768,
        description="The tool's result, for a call waiting for input from outside (text; the model reads "
        "it as the tool's return value); instead of `decision`.",
    )
    decided_by: str | None = Field(
        default=None,
        max_length=512,
        description="Who decides: the requesting user's name, filled in by the API server (the chart's "
        "admission policy). Leave it out; any other name than your own is refused.",
    )

    @model_validator(mode="after")
    def _one_target_and_one_answer(self) -> ToolApprovalSpec:
        # The same rules as the CRD's CEL rules (operator/durable_agents_operator/crd/kinds.py).
        if (self.tool_call_id is not None) == bool(self.all):
            raise ValueError(
                "name the call to decide in spec.toolCallId, or set spec.all: true (one of them, not both)"
            )
        if (self.decision is not None) == (self.result is not None):
            raise ValueError("set spec.decision (Approve or Deny) or spec.result: exactly one of them")
        if self.all and self.decision is None:
            raise ValueError("spec.all decides approvals: set spec.decision to Approve or Deny")
        return self


class ToolApprovalStatus(Spec):
    """What became of the decision."""

    phase: ToolApprovalPhase | None = Field(
        default=None,
        description="Pending (not yet delivered, see message), Applied (the run took it), Refused (the "
        "run or the operator refused it, see message; nothing changed) or Failed (not delivered in all its "
        "attempts, Temporal or the agent's workers unreachable for about an hour; nothing changed).",
    )
    message: str | None = Field(default=None, description="What happened, or why the decision was refused.")
    decided_calls: list[str] = Field(default_factory=list, description="Call ids this decision decided.")
    still_pending: list[str] = Field(
        default_factory=list, description="Call ids the run still waits for after this decision."
    )
    decided_by: str | None = Field(default=None, description="Who decided (spec.decidedBy as admitted).")
    workflow_id: str | None = Field(default=None, description="The run's Temporal workflow id.")
    applied_time: datetime | None = Field(default=None, description="When the run took the decision.")


class ToolApproval(Spec):
    """A decision on a tool call an AgentRun waits for: approve, deny, or answer with a result."""

    model_config = Spec.model_config | {"extra": "ignore"}

    api_version: Literal["durable-agents.dev/v1alpha1"] = Field(
        default=API_VERSION, description="API version."
    )
    kind: Literal["ToolApproval"] = Field(default="ToolApproval", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: ToolApprovalSpec = Field(description="The decision.")
    status: ToolApprovalStatus | None = Field(default=None, description="Observed state.")
