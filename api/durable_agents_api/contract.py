"""Names and payloads that cross a process boundary. Changing any of them is a breaking change.

The worker registers the workflow under `WORKFLOW_NAME`; the CLI and the operator start it with a
`RunInput` and read a `RunOutput` back. Environment variable names are what the operator puts in worker
pods and what the worker reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from durable_agents_api.budget import UsageBudget
from durable_agents_api.config_location import CONFIG_FILE_KEY, CONFIG_MOUNT_DIR, ENV_CONFIG

__all__ = [
    "APPROVALS_QUERY",
    "CONFIG_FILE_KEY",
    "CONFIG_MOUNT_DIR",
    "DECIDED_KEPT",
    "DECIDED_QUERY",
    "DECIDE_UPDATE",
    "ENV_BIND_HOST",
    "ENV_CONFIG",
    "ENV_HEALTH_PORT",
    "ENV_METRICS_PORT",
    "ENV_TEMPORAL_API_KEY",
    "EVENT_TOPIC",
    "EVENT_TOPIC_QUERY",
    "LIVENESS_PATH",
    "LIVE_EVENTS_QUERY",
    "METRICS_PATH",
    "PYTHON_MODEL_PREFIX",
    "READINESS_PATH",
    "SESSION_ENDED",
    "SESSION_HISTORY_QUERY",
    "SESSION_ID_PATTERN",
    "SESSION_INFO_QUERY",
    "SESSION_MESSAGE_UPDATE",
    "SESSION_WORKFLOW_NAME",
    "SUBSCRIBE_SIGNAL",
    "WORKFLOW_NAME",
    "ChildRun",
    "DecidedCall",
    "Decision",
    "DecisionOutcome",
    "Decisions",
    "LiveEvents",
    "PendingCall",
    "RunInput",
    "RunOutput",
    "RunUsageSummary",
    "SessionEnd",
    "SessionEntry",
    "SessionInfo",
    "SessionMessage",
    "SessionReply",
    "SessionStart",
    "ToolCallRecord",
    "child_workflow_id",
    "session_id_of",
    "session_memo",
    "session_workflow_id",
]

WORKFLOW_NAME = "DurableAgentRun"
"""Workflow type every agent worker registers (one agent per task queue)."""
SUBSCRIBE_SIGNAL = "durable-agents.subscribe"
"""Signal a live subscriber sends (with the start) so the run waits for it to read the final event."""
EVENT_TOPIC_QUERY = "durable-agents.event-topic"
"""Query answering the workflow stream topic the run publishes its events to (`None`: no events)."""
LIVE_EVENTS_QUERY = "durable-agents.live-events"
"""Query answering a `LiveEvents`: what a subscriber of the run will see."""
APPROVALS_QUERY = "durable-agents.pending-calls"
"""Query answering the run's pending calls (a list of `PendingCall`): approvals and external input."""
DECIDED_QUERY = "durable-agents.decided-calls"
"""Query answering the calls decided so far (a list of `DecidedCall`, the last `DECIDED_KEPT`), whoever
decided them: a ToolApproval, the CLI, another client, or the decision timeout."""
DECIDED_KEPT = 100
DECIDE_UPDATE = "durable-agents.decide"
"""Update deciding pending calls (`Decisions` in, `DecisionOutcome` out). Its validator refuses an unknown
or already-decided call id before anything is recorded, so a refused decision changes nothing."""
EVENT_TOPIC = "durable-agents.events"
"""Workflow stream topic the runtime's agents publish their run events to (`durable-agents run --stream`)."""

SESSION_WORKFLOW_NAME = "DurableAgentSession"
"""Workflow type of a conversation: one workflow per agent (task queue) and session id."""
SESSION_MESSAGE_UPDATE = "durable-agents.session.message"
"""Update carrying one user message (`SessionMessage`) and answering the agent's reply (`SessionReply`)."""
SESSION_INFO_QUERY = "durable-agents.session.info"
"""Query answering a `SessionInfo`."""
SESSION_HISTORY_QUERY = "durable-agents.session.history"
"""Query answering the conversation the session carries, as a list of `SessionEntry`."""
SESSION_ENDED = "SessionEnded"
"""Error type of a message to a session that has ended."""
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Session ids: letters, digits, `.`, `_`, `-`, up to 128 characters (no `:`, which separates the parts
of the workflow id)."""
_SESSION_ID_PREFIX = "session:"


def session_workflow_id(task_queue: str, session_id: str) -> str:
    """The workflow id of session `session_id` of the agent serving `task_queue`.

    Derived from the task queue rather than the agent name alone: one agent serves a queue, and two
    agents of the same name (two Kubernetes namespaces on one Temporal namespace) have distinct queues.
    """
    return f"{_SESSION_ID_PREFIX}{task_queue}:{session_id}"


def session_memo(session_id: str, turns: int, last_activity: str | None) -> dict[str, Any]:
    """The memo a session keeps up to date, so a listing of sessions needs no query to each one."""
    return {"sessionId": session_id, "turns": turns, "lastActivity": last_activity}


def session_id_of(workflow_id: str) -> str:
    """The session id inside a `session_workflow_id`."""
    return workflow_id.rsplit(":", 1)[-1]


def child_workflow_id(parent_workflow_id: str, tool_call_id: str) -> str:
    """The workflow id of the child agent run a tool call starts: derived from the caller's run and the
    call, so a replayed or retried call finds the child it started instead of starting a second one."""
    return f"{parent_workflow_id}/call-{tool_call_id}"


PYTHON_MODEL_PREFIX = "python:"
"""`model: python:pkg.mod:attr` names a pydantic-ai `Model` instance in code instead of a provider model."""

ENV_BIND_HOST = "DURABLE_AGENTS_BIND_HOST"
"""Address the worker's HTTP endpoints bind to (pods set it to their pod IP; default 0.0.0.0)."""
ENV_HEALTH_PORT = "DURABLE_AGENTS_HEALTH_PORT"
"""Overrides `worker.healthPort`."""
ENV_METRICS_PORT = "DURABLE_AGENTS_METRICS_PORT"
"""Overrides `observability.prometheusPort`."""
ENV_TEMPORAL_API_KEY = "TEMPORAL_API_KEY"
"""Temporal's standard name for an API key; the operator mounts the key from a Secret under this name."""


LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"


class RunInput(BaseModel):
    """Workflow input: one agent run."""

    prompt: str
    deps: Any = None
    """The run's deps as a JSON value (an object for a dataclass or model deps type, a string for `str`);
    None when the run passes none."""
    model: str | None = Field(None, description="Model override for this run.")
    budget: UsageBudget | None = None
    """This run's own budget; it can only tighten the agent's (`budget.tighten`). A child run gets what
    was left of its caller's budget when it was called."""
    callers: list[str] = Field(default_factory=list)
    """The agents that called this run, outermost first (empty for a run started from outside)."""
    max_sub_agent_depth: int | None = None
    """The depth limit of the call tree, set by the outermost run's agent (`agent.maxSubAgentDepth`) and
    passed down to its children; None in a run started from outside (its agent's limit applies)."""


class LiveEvents(BaseModel):
    """What a subscriber of a run sees (`LIVE_EVENTS_QUERY`)."""

    topic: str | None
    """The workflow stream topic of the run's events; None when the agent publishes none."""
    no_live_text: str | None = None
    """Why this run's text and tool calls are not published as they happen (only the final event is), or
    None when they are."""


class ToolCallRecord(BaseModel):
    """A tool call the agent made, for display."""

    tool_name: str
    args: dict[str, Any] | str | None = None


class RunUsageSummary(BaseModel):
    """Token usage of a run."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0


class DecidedCall(BaseModel):
    """A call that was decided: what, by whom, when, and through which Update."""

    tool_call_id: str
    tool_name: str
    decision: Literal["Approve", "Deny", "Answer"]
    decided_by: str
    decided_at: datetime
    reason: str | None = None
    update_id: str | None = None
    """The decide Update's id (a ToolApproval's is `toolapproval-<uid>`); None for the decision timeout."""


class ChildRun(BaseModel):
    """An agent run started by a tool call of this run (a child workflow)."""

    workflow_id: str
    agent: str
    """The sub-agent's name in the caller's manifest (`agent.subAgents[].name`)."""
    task_queue: str


class RunOutput(BaseModel):
    """Workflow result."""

    output: Any
    """The agent's output: a string for text agents, a JSON value for structured output."""
    output_text: str
    """`output` rendered as text (JSON for structured output)."""
    usage: RunUsageSummary
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    decided_calls: list[DecidedCall] = Field(default_factory=list)
    """The calls that waited for a decision in this run, and who decided them (the last `DECIDED_KEPT`)."""
    children: list[ChildRun] = Field(default_factory=list)
    """The agent runs this run's tool calls started; their usage is included in `usage`."""
    cost_usd: float | None = None
    """Estimated cost of the run's model requests (its children's included) in US dollars, where the
    models' prices are known; None when a price is not."""


PendingKind = Literal["approval", "external", "question"]


class PendingCall(BaseModel):
    """A tool call a run waits on: for approval, or for its result from outside (external input)."""

    tool_call_id: str
    tool_name: str
    kind: PendingKind = "approval"
    """`approval`: approve or deny; `external`/`question`: answer with the tool's result."""
    args_preview: str = ""
    """The call's arguments as JSON, cut to `ARGS_PREVIEW_CHARS` (never the deps or secret values)."""
    requested_at: datetime
    expires_at: datetime | None = None
    """When the decision timeout ends (`approvals.timeout`); None for no timeout."""
    turn_id: str | None = None
    """In a session: the id of the message (Update) whose turn waits on this call; None in a run."""


class Decision(BaseModel):
    """One decision: approve or deny an approval, or answer an external call with its result."""

    tool_call_id: str
    approve: bool | None = None
    """True approves, False denies (the model sees `reason`); None when this answers an external call."""
    reason: str | None = None
    result: Any = None
    """The tool's result for an external call (any JSON value)."""


class Decisions(BaseModel):
    """`DECIDE_UPDATE` input: decisions for one or several pending calls, and who decided."""

    decisions: list[Decision] = Field(default_factory=list)
    all: Literal["approve", "deny"] | None = None
    """Decide every pending approval at once (external calls still need their result)."""
    reason: str | None = None
    """With `all: deny`, the reason the model sees."""
    decided_by: str
    """Who decided: the Kubernetes user (stamped at admission) or the local OS user for the CLI."""


class DecisionOutcome(BaseModel):
    """What a decision did: the calls it decided and those still pending."""

    decided: list[str]
    pending: list[str]


class SessionMessage(BaseModel):
    """Update input: one user message to a session."""

    prompt: str
    deps: Any = None
    """The turn's deps as a JSON value, as `RunInput.deps`."""
    model: str | None = Field(None, description="Model override for this turn.")
    stream: bool = False
    """Publish this turn's events as they happen (someone reads them from `SessionReply.stream_offset`
    on); otherwise only its final event is published."""


class SessionReply(RunOutput):
    """Update result: the agent's reply to one message."""

    session_id: str
    turn: int
    """The turn's number in the session, from 1."""


class SessionEnd(BaseModel):
    """Workflow result of a session that ended."""

    session_id: str
    turns: int
    reason: str
    """Why it ended, e.g. `idle for 24h (sessions.idleTimeout)`."""
    ended_at: datetime


class SessionInfo(BaseModel):
    """What a session is (`SESSION_INFO_QUERY`)."""

    session_id: str
    turns: int
    state: Literal["active", "ended"]
    last_activity: datetime | None
    """When the last turn finished (or the session started, before its first turn)."""
    continued_as_new: int
    """How many times the session continued as a new workflow run."""
    history_messages: int
    history_bytes: int
    """Size of the message history it carries (JSON bytes)."""
    trimmed_turns: int
    """Turns dropped from (or summarised in) the history by `sessions.history.policy`."""
    stream_offset: int
    """The event stream offset the next turn's events start at."""


class SessionEntry(BaseModel):
    """One line of a conversation, for display (`durable-agents history`)."""

    role: Literal["user", "agent", "tool", "summary"]
    text: str


class SessionStart(BaseModel):
    """Workflow input of a session: only its id when it starts; what it carries on continue-as-new."""

    session_id: str
    messages: list[Any] = Field(default_factory=list)
    """The message history as JSON (pydantic-ai `ModelMessage`s)."""
    turns: int = 0
    trimmed_turns: int = 0
    continued_as_new: int = 0
    last_activity: datetime | None = None
    stream_state: Any = None
    """The event stream's state (a `WorkflowStreamState` as JSON), so offsets keep counting up."""
