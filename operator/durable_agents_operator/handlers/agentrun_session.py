"""AgentRuns with `spec.session`: the run is the next turn of that conversation.

The turn is sent as the session's message Update (update-with-start, so the first turn starts the session)
with the run's workflow id as the update id: sending it again (an operator restart mid-start, a retried
handler) is the same turn. The poll timer then asks the session run that accepted it for its outcome,
without waiting, and writes the reply (or why the turn failed) into status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.client import Client

from durable_agents_api.contract import SessionReply, session_workflow_id
from durable_agents_api.resources import AgentRun, DurableAgent, workflow_id_for_run
from durable_agents_operator.agentrun_workflow import (
    failed_status,
    running_status,
    session_message,
    turn_succeeded_status,
)
from durable_agents_runtime.session_client import start_message, turn_outcome

__all__ = ["start_turn", "turn_status"]


async def start_turn(
    client: Client, run: AgentRun, agent: DurableAgent, update_id: str, *, started: datetime
) -> dict[str, Any]:
    """Send the run's prompt to its session; the Running status once the session has accepted it."""
    assert run.spec.session is not None
    update = await start_message(
        client,
        agent=agent.spec.agent.name,
        task_queue=agent.task_queue,
        session_id=run.spec.session,
        message=session_message(run),
        update_id=update_id,
    )
    status = running_status(
        workflow_id=update.workflow_id,
        task_queue=agent.task_queue,
        started=started,
        generation=run.metadata.generation,
    )
    return {**status, "workflowRunId": update.workflow_run_id}


async def turn_status(client: Client, run: AgentRun, now: datetime) -> dict[str, Any] | None:
    """The status of the run's answered (or failed) turn; None while the session is still on it."""
    assert run.spec.session is not None
    status = run.status
    workflow_id = (status and status.workflow_id) or session_workflow_id(
        (status and status.task_queue) or "", run.spec.session
    )
    outcome = await turn_outcome(
        client,
        workflow_id=workflow_id,
        run_id=(status and status.workflow_run_id) or "",
        update_id=workflow_id_for_run(run.metadata.uid or ""),
        session_id=run.spec.session,
    )
    if outcome is None:
        return None
    if isinstance(outcome, SessionReply):
        return turn_succeeded_status(outcome, completed=now)
    return failed_status(str(outcome), completed=now)
