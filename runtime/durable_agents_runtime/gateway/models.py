"""The gateway's request and response bodies: one pydantic model each, the source of both the validation
and the OpenAPI document (`openapi.py`). Field names are snake_case on the wire, as in the workflow contract's
models they carry (`PendingCall`, `Decision`, `SessionReply`) and in OpenAI's API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from durable_agents_api.contract import Decision, PendingCall, SessionEntry

__all__ = [
    "AgentView",
    "ApprovalView",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "DecideRequest",
    "ErrorBody",
    "MessageRequest",
    "RunView",
    "SessionHistory",
    "SessionView",
    "StartRunRequest",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Wire):
    code: str
    """`unauthenticated`, `forbidden`, `not_found`, `invalid`, `too_large`, `rate_limited`, `conflict`,
    `unavailable`."""
    message: str


class ErrorBody(_Wire):
    """Every error the gateway answers: a code and a message saying what to do."""

    error: ErrorDetail


class AgentView(_Wire):
    """An agent the gateway serves, and its health."""

    name: str
    """The DurableAgent's `metadata.name`."""
    namespace: str
    task_queue: str
    ready: bool
    """A live worker polls the agent's task queue and Temporal answered."""
    workers: int = 0
    running: int = 0
    failed: int = 0
    message: str | None = None
    """Why it is not ready, when it is not."""
    operator_status: str | None = None
    """In a cluster: the DurableAgent's Ready condition as the operator wrote it (`Ready`, or
    `Reason: message`)."""


class StartRunRequest(_Wire):
    """Start a run of an agent."""

    prompt: str = Field(min_length=1)
    deps: Any = None
    model: str | None = None
    id: str | None = Field(None, description="Workflow id (default run-<uuid>).")
    watch: bool = Field(
        False, description="The run waits (bounded) for `GET /api/runs/{id}/events` to read it."
    )


class RunView(_Wire):
    """One run: its status and, once it ended, its output or why it failed."""

    id: str
    agent: str | None = None
    status: str
    started: datetime | None = None
    closed: datetime | None = None
    output: Any = None
    output_text: str | None = None
    error: str | None = None
    pending: list[PendingCall] | None = None


class ApprovalView(_Wire):
    """A tool call a run (or session) waits on, with the run it belongs to."""

    run_id: str
    agent: str
    namespace: str
    call: PendingCall


class DecideRequest(_Wire):
    """Decide pending calls of a run: name them, or decide all pending approvals at once."""

    decisions: list[Decision] = Field(default_factory=list)
    all: Literal["approve", "deny"] | None = None
    reason: str | None = None


class MessageRequest(_Wire):
    """One message to a session."""

    prompt: str = Field(min_length=1)
    deps: Any = None
    model: str | None = None
    stream: bool = Field(
        False, description="Answer with Server-Sent Events: the turn's events, then `reply`."
    )


class SessionView(_Wire):
    session_id: str
    turns: int
    last_activity: datetime | None
    state: str


class SessionHistory(_Wire):
    session_id: str
    turns: int
    state: str
    entries: list[SessionEntry]


# --- OpenAI-compatible chat completions (snake_case on the wire, as OpenAI's) ----------------------------


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """What of OpenAI's chat-completions request a durable agent uses; the rest is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The agent's name.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    session_id: str | None = Field(
        None,
        description="The conversation (also the X-Session-Id header); without one, each request is a run.",
    )


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop"] = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
