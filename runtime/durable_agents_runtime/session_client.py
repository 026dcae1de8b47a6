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
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.contract import (
    SESSION_ENDED,
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
    session_memo,
    session_workflow_id,
)
from durable_agents_runtime.errors import (
    SessionEndedError,
    SessionError,
    SessionNotFoundError,
    SessionUnreachableError,
)

__all__ = [
    "SessionEndedError",
    "SessionError",
    "SessionNotFoundError",
    "SessionSummary",
    "SessionUnreachableError",
    "check_session_id",
    "list_sessions",
    "read_history",
    "read_info",
    "send_message",
    "start_message",
    "turn_outcome",
]

_SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)


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


def _failed(exc: WorkflowUpdateFailedError | BaseException, session_id: str) -> SessionError | None:
    """The error for a turn that failed; None when it failed because the session has ended."""
    cause = _cause(exc)
    if isinstance(cause, ApplicationError) and cause.type == SESSION_ENDED:
        return None
    text = getattr(cause, "message", None) or str(cause)
    return SessionError(f"session {session_id!r}: the turn failed: {text}")


async def start_message(
    client: Client,
    *,
    agent: str,
    task_queue: str,
    session_id: str,
    message: SessionMessage,
    update_id: str | None = None,
) -> WorkflowUpdateHandle[SessionReply]:
    """Send `message` to session `session_id` (starting the session if it has never existed) and return
    once the session has accepted it. The same `update_id` sent twice is one turn."""
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
        memo=session_memo(session_id, 0, None),
        result_type=SessionEnd,
    )
    try:
        return await client.start_update_with_start_workflow(
            SESSION_MESSAGE_UPDATE,
            message,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            id=update_id,
            result_type=SessionReply,
        )
    except WorkflowAlreadyStartedError:
        # The start operation holds the same error; read it so it is not reported as never retrieved.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()
        raise await _ended(client, workflow_id, session_id, agent) from None
    except WorkflowUpdateFailedError as exc:
        raise (_failed(exc, session_id) or await _ended(client, workflow_id, session_id, agent)) from None
    except RPCError as exc:
        raise SessionUnreachableError(f"cannot message session {session_id!r}: {exc.message}") from None


async def send_message(
    client: Client,
    *,
    agent: str,
    task_queue: str,
    session_id: str,
    message: SessionMessage,
    on_started: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
) -> SessionReply:
    """Send `message` to session `session_id` (starting the session if it has never existed) and return
    the agent's reply. `on_started` runs once the session has accepted the message, with the session's
    handle (e.g. to read the turn's events while it runs)."""
    update = await start_message(
        client, agent=agent, task_queue=task_queue, session_id=session_id, message=message
    )
    if on_started is not None:
        await on_started(client.get_workflow_handle(update.workflow_id))
    try:
        return await update.result()
    except WorkflowUpdateFailedError as exc:
        workflow_id = session_workflow_id(task_queue, session_id)
        raise (_failed(exc, session_id) or await _ended(client, workflow_id, session_id, agent)) from None
    except RPCError as exc:
        raise SessionUnreachableError(f"no reply from session {session_id!r}: {exc.message}") from None


async def turn_outcome(
    client: Client, *, workflow_id: str, run_id: str, update_id: str, session_id: str
) -> SessionReply | SessionError | None:
    """The reply to the accepted message `update_id` (or why its turn failed), or None while it runs.

    Asks once and does not wait: the session's run that accepted the message (`run_id`) holds the answer,
    even after the session continued as new.
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage
    from temporalio.api.update.v1 import UpdateRef, WaitPolicy
    from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest

    accepted = UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED

    def request(run: str) -> PollWorkflowExecutionUpdateRequest:
        return PollWorkflowExecutionUpdateRequest(
            namespace=client.namespace,
            update_ref=UpdateRef(
                workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run), update_id=update_id
            ),
            identity=client.identity,
            wait_policy=WaitPolicy(lifecycle_stage=accepted),
        )

    try:
        try:
            response = await client.workflow_service.poll_workflow_execution_update(request(run_id))
        except RPCError as exc:
            # The run that answered the start may have continued as new just before the message arrived.
            if exc.status != RPCStatusCode.NOT_FOUND or not run_id:
                raise
            response = await client.workflow_service.poll_workflow_execution_update(request(""))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return SessionError(f"session {session_id!r} has no record of this turn (update {update_id})")
        raise SessionUnreachableError(
            f"cannot read the turn of session {session_id!r}: {exc.message}"
        ) from None
    if not response.HasField("outcome"):
        return None
    if response.outcome.HasField("failure"):
        error = await client.data_converter.decode_failure(response.outcome.failure)
        return _failed(error, session_id) or SessionEndedError(
            f"session {session_id!r} had ended before this turn: start a new session"
        )
    [reply] = await client.data_converter.decode(response.outcome.success.payloads, [SessionReply])
    return reply


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
