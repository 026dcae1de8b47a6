"""Talking to sessions from outside the worker: send a message (update-with-start), read a session's info
and conversation, list an agent's sessions. Used by the CLI and the operator (AgentRun `spec.session`).

Every failure a caller can act on is a `SessionError` whose message names the session and what to do.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_runtime.contract import (
    SESSION_HISTORY_QUERY,
    SESSION_ID_PATTERN,
    SESSION_INFO_QUERY,
    SESSION_MESSAGE_UPDATE,
    SESSION_WORKFLOW_NAME,
    SessionEnd,
    SessionEntry,
    SessionInfo,
    SessionMessage,
    SessionReply,
    SessionStart,
    session_id_of,
    session_workflow_id,
)
from durable_agents_runtime.errors import DurableAgentsError

__all__ = [
    "SessionEndedError",
    "SessionError",
    "SessionNotFoundError",
    "SessionSummary",
    "check_session_id",
    "list_sessions",
    "read_history",
    "read_info",
    "send_message",
]

_SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)


class SessionError(DurableAgentsError):
    """A message, query or listing of a session failed; the message says why and what to do."""


class SessionNotFoundError(SessionError):
    """No session with this id exists for the agent."""


class SessionEndedError(SessionError):
    """The session has ended (idle timeout, or it was terminated); it takes no more messages."""


def check_session_id(session_id: str) -> str:
    """`session_id` if it is a valid session id, else a `SessionError` saying what one looks like."""
    if not _SESSION_ID_RE.match(session_id):
        raise SessionError(
            f"session id {session_id!r} is not valid: use letters, digits, '.', '_' and '-' (starting with a "
            "letter or digit), at most 128 characters"
        )
    return session_id


def _cause(exc: BaseException) -> BaseException:
    current = exc
    while current.__cause__ is not None and not isinstance(current, ApplicationError):
        current = current.__cause__
    return current


async def _ended(client: Client, workflow_id: str, session_id: str, agent: str) -> SessionEndedError:
    """Why the closed session `workflow_id` ended, as an error to show."""
    handle = client.get_workflow_handle(workflow_id, result_type=SessionEnd)
    description = await handle.describe()
    status = description.status
    if status == WorkflowExecutionStatus.COMPLETED:
        end = await handle.result()
        ended = end.ended_at.isoformat(timespec="seconds")
        why = f"it ended at {ended} after {end.turns} turns, {end.reason}"
    else:
        name = status.name.lower().replace("_", " ") if status is not None else "closed"
        why = f"its workflow is {name}"
    return SessionEndedError(
        f"session {session_id!r} of agent {agent} has ended ({why}) and takes no more messages: start a new "
        "session (another --session id, or none for a new one)"
    )


async def send_message(
    client: Client,
    *,
    agent: str,
    task_queue: str,
    session_id: str,
    message: SessionMessage,
    on_started: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
) -> SessionReply:
    """Send `message` to session `session_id` (creating the session if it has never existed) and return
    the agent's reply. `on_started` runs once the update is accepted, with the session's handle (e.g. to
    read the turn's events while it runs)."""
    check_session_id(session_id)
    workflow_id = session_workflow_id(task_queue, session_id)
    start = WithStartWorkflowOperation(
        SESSION_WORKFLOW_NAME,
        SessionStart(session_id=session_id),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed session is not started again under the same id: the caller learns it has ended.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        memo={"sessionId": session_id, "turns": 0, "lastActivity": None},
        result_type=SessionEnd,
    )
    handle = client.get_workflow_handle(workflow_id)
    try:
        if on_started is None:
            return await client.execute_update_with_start_workflow(
                SESSION_MESSAGE_UPDATE, message, start_workflow_operation=start, result_type=SessionReply
            )
        from temporalio.client import WorkflowUpdateStage

        update = await client.start_update_with_start_workflow(
            SESSION_MESSAGE_UPDATE,
            message,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=SessionReply,
        )
        await on_started(handle)
        return await update.result()
    except WorkflowAlreadyStartedError:
        # The start operation holds the same error; read it so it is not reported as never retrieved.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()
        raise await _ended(client, workflow_id, session_id, agent) from None
    except WorkflowUpdateFailedError as exc:
        cause = _cause(exc)
        if isinstance(cause, ApplicationError) and cause.type == "SessionEnded":
            raise await _ended(client, workflow_id, session_id, agent) from None
        message_text = getattr(cause, "message", None) or str(cause)
        raise SessionError(f"session {session_id!r}: the turn failed: {message_text}") from None
    except RPCError as exc:
        raise SessionError(f"cannot message session {session_id!r}: {exc.message}") from None


async def _query(
    client: Client, *, agent: str, task_queue: str, session_id: str, query: str, result_type: Any
) -> Any:
    check_session_id(session_id)
    handle = client.get_workflow_handle(session_workflow_id(task_queue, session_id))
    try:
        return await handle.query(query, result_type=result_type)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SessionNotFoundError(
                f"agent {agent} has no session {session_id!r} (task queue {task_queue!r}, namespace "
                f"{client.namespace!r}): `durable-agents sessions {agent}` lists its sessions"
            ) from None
        raise SessionError(f"cannot read session {session_id!r}: {exc.message}") from None
    except WorkflowQueryFailedError as exc:
        raise SessionError(f"cannot read session {session_id!r}: {exc}") from None


async def read_info(client: Client, *, agent: str, task_queue: str, session_id: str) -> SessionInfo:
    """The session's turns, state, history size and stream offset."""
    return await _query(
        client,
        agent=agent,
        task_queue=task_queue,
        session_id=session_id,
        query=SESSION_INFO_QUERY,
        result_type=SessionInfo,
    )


async def read_history(client: Client, *, agent: str, task_queue: str, session_id: str) -> list[SessionEntry]:
    """The conversation the session carries."""
    return await _query(
        client,
        agent=agent,
        task_queue=task_queue,
        session_id=session_id,
        query=SESSION_HISTORY_QUERY,
        result_type=list[SessionEntry],
    )


@dataclass(frozen=True)
class SessionSummary:
    """One session in a listing."""

    session_id: str
    turns: int
    last_activity: datetime | None
    state: str
    """`active`, `ended` (idle timeout), or the workflow's status (`terminated`, `failed`, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "turns": self.turns,
            "lastActivity": self.last_activity.isoformat() if self.last_activity else None,
            "state": self.state,
        }


def _state(status: WorkflowExecutionStatus | None) -> str:
    if status == WorkflowExecutionStatus.RUNNING:
        return "active"
    if status == WorkflowExecutionStatus.COMPLETED:
        return "ended"
    if status is None:
        return "unknown"
    first, *rest = status.name.lower().split("_")
    return first + "".join(part.title() for part in rest)


async def list_sessions(client: Client, *, task_queue: str, limit: int = 1000) -> list[SessionSummary]:
    """The agent's sessions, most recently started first (from visibility and each session's memo)."""
    query = (
        f"WorkflowType = '{SESSION_WORKFLOW_NAME}' AND TaskQueue = '{task_queue}' "
        "AND ExecutionStatus != 'ContinuedAsNew'"
    )
    sessions: list[SessionSummary] = []
    try:
        async for execution in client.list_workflows(query, limit=limit):
            memo = await execution.memo()
            last = memo.get("lastActivity")
            sessions.append(
                SessionSummary(
                    session_id=memo.get("sessionId") or session_id_of(execution.id),
                    turns=int(memo.get("turns") or 0),
                    last_activity=datetime.fromisoformat(last) if last else None,
                    state=_state(execution.status),
                )
            )
    except RPCError as exc:
        raise SessionError(f"cannot list sessions on task queue {task_queue!r}: {exc.message}") from None
    return sessions
