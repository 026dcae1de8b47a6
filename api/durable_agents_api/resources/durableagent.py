"""`DurableAgent`: an agent, its activity settings, and the worker pods that run it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import Field, JsonValue, model_validator

from durable_agents_api.budget import UsageBudget
from durable_agents_api.config import (
    DEFAULT_REPLAY_HISTORIES,
    ActivitiesSpec,
    AgentSpec,
    ApprovalsSpec,
    Duration,
    LogfireSpec,
    ModelSpec,
    ObservabilitySpec,
    RuntimeConfig,
    SessionsSpec,
    Spec,
    TemporalSpec,
    WorkerSpec,
    check_toolset_ids,
)
from durable_agents_api.schedules import AgentScheduleStatus, Schedules

from .common import API_VERSION, Condition, LocalObjectReference, ObjectMeta, SecretKeySelector

__all__ = [
    "AutoscalingSpec",
    "AutoscalingStatus",
    "Backlog",
    "DurableAgent",
    "DurableAgentSpec",
    "DurableAgentStatus",
    "DurableAgentTemporalSpec",
    "DurableAgentVersioningSpec",
    "EnvFromSecret",
    "LastFailure",
    "ModelProviderSpec",
    "PodTemplateSpec",
    "RolloutStepSpec",
    "RunCounts",
    "VersionStatus",
    "default_task_queue",
]

_PRESERVE: dict[str, JsonValue] = {"x-kubernetes-preserve-unknown-fields": True}


def default_task_queue(namespace: str, name: str) -> str:
    """The task queue an agent uses when the manifest names none: `<namespace>.<name>`."""
    return f"{namespace}.{name}"


class DurableAgentTemporalSpec(Spec):
    """Which Temporal the agent runs on."""

    connection_ref: LocalObjectReference | None = Field(
        default=None, description="A TemporalConnection in this namespace; the operator's default when unset."
    )
    task_queue: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Task queue; defaults to `<namespace>.<name>`. Cannot change after creation.",
    )


class EnvFromSecret(Spec):
    """An environment variable whose value comes from a Secret (never inlined into a manifest)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        description="Environment variable name, e.g. OPENAI_API_KEY."
    )
    secret_key_ref: SecretKeySelector = Field(description="The Secret key holding the value.")


class ModelProviderSpec(ModelSpec):
    """Model provider settings: a base URL and credentials from Secrets."""

    credentials: list[EnvFromSecret] = Field(
        default_factory=list,
        description="Provider credentials as env vars from Secrets (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).",
    )


class ClusterLogfireSpec(LogfireSpec):
    """Logfire settings plus where the token lives."""

    token_secret_ref: SecretKeySelector | None = Field(
        default=None, description="Secret key holding LOGFIRE_TOKEN; without it nothing is sent."
    )


class ClusterObservabilitySpec(ObservabilitySpec):
    """Tracing and metrics for the worker pods."""

    # Narrows the parent field to the cluster variant, which adds where the token Secret is.
    logfire: ClusterLogfireSpec = Field(  # pyright: ignore[reportIncompatibleVariableOverride]
        default_factory=ClusterLogfireSpec, description="Logfire settings."
    )


class ResourceRequirements(Spec):
    """CPU/memory requests and limits, as in a container spec."""

    requests: dict[str, Annotated[str, Field(pattern=r"^[0-9.]+[a-zA-Z]*$")]] | None = Field(
        default=None, description="Requested resources, e.g. {cpu: 100m, memory: 256Mi}."
    )
    limits: dict[str, Annotated[str, Field(pattern=r"^[0-9.]+[a-zA-Z]*$")]] | None = Field(
        default=None, description="Resource limits."
    )


class PodTemplateSpec(Spec):
    """Overrides for the worker pods."""

    image: str | None = Field(default=None, description="Worker image (code agents: `agent.image` wins).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Pull policy."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Container resources.")
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra container env vars (Kubernetes EnvVar objects).",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}},
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node selector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tolerations (Kubernetes Toleration objects).",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}},
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="Affinity.", json_schema_extra=_PRESERVE
    )
    service_account_name: str | None = Field(default=None, description="Service account for the worker pods.")
    priority_class_name: str | None = Field(default=None, description="Priority class.")
    labels: dict[str, str] | None = Field(default=None, description="Extra pod labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Extra pod annotations.")
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=1, description="Pod grace period; default graceful shutdown timeout + 15s."
    )
    egress: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Further egress of the workers' NetworkPolicy (Kubernetes NetworkPolicyEgressRule "
        "objects, e.g. [{ports: [{port: 5432, protocol: TCP}]}] for a database a tool reads). Used only "
        "where the operator makes worker NetworkPolicies (chart value networkPolicy.enabled); DNS, "
        "Temporal, MCP servers, model.baseUrl and the OTLP endpoint are allowed without it.",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}},
    )


class AutoscalingSpec(Spec):
    """Backlog-driven scaling of the worker replicas (see `durable_agents_operator.autoscaling`)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Set the worker replicas from the task queue backlog instead of spec.replicas: "
            "ceil(backlog / targetBacklogPerWorker) within [minReplicas, maxReplicas], at least 1 while a "
            "run is in progress, 0 while spec.paused. Decided by the operator's health timer; while "
            "Temporal cannot be read the replicas stay as they are."
        ),
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description="Lowest replica count (0 allowed: no workers while nothing is queued or running).",
    )
    max_replicas: int = Field(default=10, ge=1, description="Highest replica count.")
    target_backlog_per_worker: int = Field(
        default=10, ge=1, description="Waiting tasks (workflow + activity) each worker should carry."
    )
    scale_up_delay: Duration | None = Field(
        default=None,
        description="Least time between the last scaling and a scale-up (default 15s).",
    )
    scale_down_delay: Duration | None = Field(
        default=None,
        description="Least time between the last scaling and a scale-down (default 2m).",
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must be <= autoscaling.maxReplicas")
        return self


class RolloutStepSpec(Spec):
    """One step of a progressive rollout."""

    ramp_percentage: float = Field(gt=0, lt=100, description="Share of new runs on the new version.")
    pause: Duration = Field(description="How long the step lasts before the next one.")


class DurableAgentVersioningSpec(Spec):
    """How a change reaches runs: each config is a version of the agent's Temporal Worker Deployment."""

    behavior: Literal["Pinned", "AutoUpgrade"] = Field(
        default="Pinned",
        description="`Pinned` (default): a run finishes on the version it started on; a change serves "
        "new runs only, and the old version drains. `AutoUpgrade`: open runs move to the new version at "
        "their next step; only for changes that replay (the replay gate refuses others in `dev`).",
    )
    replay_histories: int = Field(
        default=DEFAULT_REPLAY_HISTORIES,
        ge=0,
        le=1000,
        description="Recent runs (running and completed) the replay gate replays against a changed "
        "config before it takes traffic; 0 turns the gate off.",
    )
    # --- the operator's rollouts (see durable_agents_operator.version_planner) ---
    enabled: bool = Field(
        default=False,
        description="Run one worker Deployment per version (rainbow rollouts): a change starts the new "
        "version next to the old one, which keeps its workers until its pinned runs (runs awaiting "
        "approval included) finish. Off: a change rolls the worker Deployment in place. Once on, it "
        "stays on.",
    )
    strategy: Literal["AllAtOnce", "Progressive", "Manual"] = Field(
        default="AllAtOnce",
        description="How a new version takes new runs once its workers are ready and its replay gate "
        "passed: `AllAtOnce`, `Progressive` (the `steps`, then all), or `Manual` (`temporal worker "
        "deployment set-current-version`). Reverting the spec to a version still around, or the annotation "
        "durable-agents.dev/rollback=previous|<buildId>, is immediate.",
    )
    steps: list[RolloutStepSpec] = Field(
        default_factory=list, description="Progressive: the share of new runs per step and its pause."
    )
    sunset_delay: Duration = Field(
        default=timedelta(minutes=5),
        description="How long a drained version (no open runs) keeps its Deployment at zero replicas "
        "before it is deleted; a rollback to it within this time needs only its workers to start.",
    )

    @model_validator(mode="after")
    def _progressive_has_rising_steps(self) -> Self:
        shares = [step.ramp_percentage for step in self.steps]
        if self.strategy == "Progressive" and not shares:
            raise ValueError(
                "versioning.strategy Progressive needs versioning.steps, e.g. [{rampPercentage: 10, "
                "pause: 5m}]; or use strategy AllAtOnce"
            )
        if shares != sorted(set(shares)):
            raise ValueError("versioning.steps must have rising rampPercentage values, e.g. 10, 50")
        return self


class DurableAgentSpec(Spec):
    """Desired state of a DurableAgent."""

    replicas: int = Field(
        default=1,
        ge=0,
        description=(
            "Worker pods (the scale subresource). Ignored while autoscaling.enabled: the backlog sets "
            "the replicas then."
        ),
    )
    paused: bool = Field(default=False, description="Scale workers to zero and keep status.")
    agent: AgentSpec = Field(description="The agent: declarative or code.")
    temporal: DurableAgentTemporalSpec = Field(
        default_factory=DurableAgentTemporalSpec, description="Temporal connection and task queue."
    )
    activities: ActivitiesSpec = Field(
        default_factory=ActivitiesSpec, description="Activity timeouts/retries."
    )
    worker: WorkerSpec = Field(default_factory=WorkerSpec, description="Worker settings.")
    approvals: ApprovalsSpec | None = Field(
        default=None,
        description="Human approval of tool calls (unset: what code agents declare, 24h timeout).",
    )
    model: ModelProviderSpec = Field(
        default_factory=ModelProviderSpec, description="Model provider settings."
    )
    observability: ClusterObservabilitySpec = Field(
        default_factory=ClusterObservabilitySpec, description="Tracing and metrics."
    )
    template: PodTemplateSpec = Field(default_factory=PodTemplateSpec, description="Worker pod overrides.")
    autoscaling: AutoscalingSpec | None = Field(default=None, description="Backlog-driven autoscaling.")
    versioning: DurableAgentVersioningSpec = Field(
        default_factory=DurableAgentVersioningSpec,
        description="Worker versioning, the replay gate and, with `enabled`, the operator's rainbow "
        "rollouts (as `durable-agents dev` and `durable-agents replay` apply them).",
    )
    sessions: SessionsSpec | None = Field(
        default=None,
        description="Conversations with this agent (`durable-agents chat`, AgentRun spec.session): idle "
        "timeout, continue-as-new threshold, and how the message history stays bounded.",
    )
    schedules: Schedules | None = Field(
        default=None,
        description="Prompts the agent runs on a schedule: each one a Temporal Schedule (id "
        "`schedule:<namespace>/<name>/<schedule>`) starting the agent's run workflow, kept in line with "
        "this list and deleted with the agent.",
    )

    budget: UsageBudget | None = Field(
        default=None,
        description="What each run of the agent may use (requests, tokens, tool calls), the agents it calls "
        "included; a run's own budget can only tighten it. A run over budget fails, naming the limit.",
    )

    @model_validator(mode="after")
    def _tool_settings_name_known_toolsets(self) -> Self:
        check_toolset_ids(self.agent, self.activities)
        return self

    def _resolved_agent(self, namespace: str) -> AgentSpec:
        """`agent` with each sub-agent's task queue filled in (the callee's default when unset)."""
        if not self.agent.sub_agents:
            return self.agent
        resolved = [
            s.model_copy(update={"task_queue": s.task_queue or default_task_queue(namespace, s.agent_ref)})
            for s in self.agent.sub_agents
        ]
        return self.agent.model_copy(update={"sub_agents": resolved})

    def runtime_config(self, *, temporal: TemporalSpec, namespace: str = "default") -> RuntimeConfig:
        """The contract the worker reads, given the resolved Temporal connection (with task queue) and
        the agent's Kubernetes namespace (where its sub-agents are)."""
        observability = ObservabilitySpec.model_validate(
            self.observability.model_dump(exclude={"logfire": {"token_secret_ref"}})
        )
        return RuntimeConfig(
            agent=self._resolved_agent(namespace),
            temporal=temporal,
            activities=self.activities,
            worker=self.worker,
            approvals=self.approvals,
            model=ModelSpec(base_url=self.model.base_url),
            observability=observability,
            sessions=self.sessions,
            budget=self.budget,
        )


class Backlog(Spec):
    """Tasks waiting on the agent's task queue."""

    count: int = Field(default=0, description="Approximate number of tasks waiting.")
    age_seconds: float = Field(default=0.0, description="Age of the oldest waiting task, in seconds.")


class RunCounts(Spec):
    """Workflow runs of this agent by status."""

    running: int = Field(default=0, description="Runs in progress.")
    completed: int = Field(default=0, description="Runs that completed.")
    failed: int = Field(default=0, description="Runs that failed, timed out or were terminated.")


class LastFailure(Spec):
    """The most recent failure: a failed run, or the latest failed attempt of a run that is still retrying."""

    workflow_id: str = Field(description="Workflow id of the run.")
    message: str = Field(
        default="",
        description="Why it failed; for a run still retrying: `retrying <activity>, attempt N of M: <error>`",
    )
    time: datetime | None = Field(default=None, description="When it failed.")


class AutoscalingStatus(Spec):
    """What the autoscaler decided last (present while `spec.autoscaling.enabled`)."""

    replicas: int = Field(description="Worker replicas the autoscaler set on the Deployment.")
    desired_replicas: int = Field(
        description="Replicas the last backlog reading asks for (reached once the delays allow)."
    )
    last_scale_time: datetime | None = Field(
        default=None, description="When the autoscaler last changed the replicas."
    )
    reason: str = Field(description="One CamelCase word: ScaledUp, ScaledDown, Steady, ScaleUpDelayed, ...")
    message: str = Field(default="", description="The backlog and runs the decision was based on.")


class VersionStatus(Spec):
    """One version of the agent's worker Deployment."""

    build_id: str = Field(description="The version's build id (its Deployment is `<name>-worker-<buildId>`).")
    role: Literal["current", "ramping", "target", "draining", "drained"] = Field(
        description="current: new runs start on it; ramping: a share of them does; target: the spec's "
        "version, not yet taking runs; draining: pinned open runs remain; drained: none remain."
    )
    replicas: int = Field(default=0, description="Worker pods of its Deployment.")
    ready_replicas: int = Field(default=0, description="Ready worker pods.")
    pinned_open_runs: int | None = Field(
        default=None, description="Open runs pinned to it (awaiting approval included); unset when unread."
    )
    replay_gate: Literal["Passed", "Refused", "Pending", "Off"] = Field(
        default="Off", description="What its replay gate found."
    )
    drained_since: datetime | None = Field(default=None, description="When it was first seen drained.")


class RollbackStatus(Spec):
    """A rollback asked for with the annotation `durable-agents.dev/rollback`, held until the spec changes."""

    build_id: str = Field(description="The version rolled back to: it stays the target.")
    spec_build_id: str = Field(
        description="The spec's version when the rollback was asked for; a spec with another version ends "
        "the hold."
    )


class RetiringVersionStatus(Spec):
    """A sunset version whose deletion in Temporal has failed so far (it is retried)."""

    build_id: str = Field(description="The version's build id.")
    failing_since: datetime = Field(description="When the first attempt failed.")
    last_attempt: datetime = Field(description="When it was last tried.")
    attempts: int = Field(description="Attempts so far.")
    message: str = Field(default="", description="The server's answer to the last attempt.")
    warned: bool = Field(default=False, description="A VersionDeleteFailed Warning Event was recorded.")


class DurableAgentStatus(Spec):
    """Observed state, including real workflow health read from Temporal."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    replicas: int | None = Field(default=None, description="Worker pods (scale subresource).")
    ready_replicas: int | None = Field(default=None, description="Worker pods that are ready.")
    selector: str | None = Field(
        default=None, description="Label selector of the worker pods (scale subresource)."
    )
    task_queue: str | None = Field(default=None, description="The task queue in use.")
    workers: int | None = Field(default=None, description="Workers seen polling the task queue recently.")
    backlog: Backlog | None = Field(default=None, description="Task queue backlog.")
    runs: RunCounts | None = Field(default=None, description="Run counts.")
    awaiting_approval: int | None = Field(
        default=None,
        description="AgentRuns of this agent waiting for a decision on a tool call, counted from the "
        "AgentRuns the operator follows (runs started with the CLI or straight on Temporal are not "
        "counted).",
    )
    last_failure: LastFailure | None = Field(
        default=None, description="Most recent failed run, or failing attempt of a run still retrying."
    )
    last_health_check: datetime | None = Field(default=None, description="When Temporal was last read.")
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The autoscaler's last decision (while spec.autoscaling.enabled)."
    )
    current_version: str | None = Field(
        default=None, description="Build id of the version new runs start on (spec.versioning.enabled)."
    )
    versions: list[VersionStatus] | None = Field(
        default=None, description="Every version with a worker Deployment (spec.versioning.enabled)."
    )
    previous_version: str | None = Field(
        default=None,
        description="Build id of the version that was current before the current one (what the annotation "
        "durable-agents.dev/rollback=previous rolls back to).",
    )
    rollback: RollbackStatus | None = Field(
        default=None, description="The rollback the annotation asked for, held until the spec changes."
    )
    retired_versions: list[str] | None = Field(
        default=None, description="The last build ids deleted in Temporal after their sunset, newest last."
    )
    retiring_versions: list[RetiringVersionStatus] | None = Field(
        default=None, description="Sunset versions whose deletion in Temporal failed so far (retried)."
    )
    schedules: list[AgentScheduleStatus] | None = Field(
        default=None, description="Each schedule of spec.schedules as Temporal reports it."
    )
    next_scheduled_run: datetime | None = Field(
        default=None, description="The earliest next run of any schedule (the Next Run column)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded, ...")


class DurableAgent(Spec):
    """A durable AI agent: its workers poll a Temporal task queue and run the agent loop as a workflow."""

    model_config = Spec.model_config | {"extra": "ignore"}

    api_version: Literal["durable-agents.dev/v1alpha1"] = Field(
        default=API_VERSION, description="API version."
    )
    kind: Literal["DurableAgent"] = Field(default="DurableAgent", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: DurableAgentSpec = Field(description="Desired state.")
    status: DurableAgentStatus | None = Field(default=None, description="Observed state.")

    @property
    def task_queue(self) -> str:
        return self.spec.temporal.task_queue or default_task_queue(
            self.metadata.namespace or "default", self.metadata.name or self.spec.agent.name
        )
