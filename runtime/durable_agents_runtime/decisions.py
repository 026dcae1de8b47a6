"""The client side of decisions on tool calls: read a run's pending calls, decide them, list an agent's runs.

One implementation for every caller (the CLI's `runs`/`approve`/`deny`/`answer`, `run`'s inline prompt,
the operator's AgentRun poll and ToolApprovals). Each failure becomes a `DecisionError` whose message
names the run, the call and what to do; a refused decision changed nothing (the workflow's Update
validator refused it before anything was recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.contract import (
    APPROVALS_QUERY,
    DECIDE_UPDATE,
    WORKFLOW_NAME,
    DecisionOutcome,
    Decisions,
    PendingCall,
)
from durable_agents_runtime.errors import DecisionError
from durable_agents_runtime.failures import failure_message

__all__ = ["RunSummary", "awaiting", "decide", "list_runs", "pending_calls", "status_name"]

RPC_TIMEOUT = timedelta(seconds=10)
"""Longest one query or update call waits for a worker to answer."""


async def pending_calls(handle: WorkflowHandle[Any, Any]) -> list[PendingCall]:
    """The calls the run waits on (empty for a run that waits on none)."""
    try:
        return await handle.query(APPROVALS_QUERY, result_type=list[PendingCall], rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_error(handle.id, exc, "read its pending calls") from None


async def decide(handle: WorkflowHandle[Any, Any], decisions: Decisions) -> DecisionOutcome:
    """Send `decisions` to the run; a `DecisionError` says why they were refused (nothing changed then)."""
    try:
        return await handle.execute_update(
            DECIDE_UPDATE, decisions, result_type=DecisionOutcome, rpc_timeout=RPC_TIMEOUT
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise DecisionError(f"run {handle.id}: {failure_message(cause)} (nothing changed)") from None
    except RPCError as exc:
        raise _rpc_error(handle.id, exc, "decide") from None


def _rpc_error(run_id: str, exc: RPCError, doing: str) -> DecisionError:
    if exc.status == RPCStatusCode.NOT_FOUND:
        if "completed" in exc.message or "already" in exc.message:
            return DecisionError(f"run {run_id} has finished: there is nothing to decide")
        return DecisionError(
            f"no run {run_id!r}: check the id (`durable-agents runs AGENT` lists them) and "
            "--address/--namespace"
        )
    if exc.status == RPCStatusCode.FAILED_PRECONDITION or "already completed" in exc.message:
        return DecisionError(f"run {run_id} has finished: there is nothing to decide")
    if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return DecisionError(
            f"cannot {doing} for run {run_id}: no worker answered within {RPC_TIMEOUT.total_seconds():g}s "
            "(is a worker for its agent running?)"
        )
    return DecisionError(f"cannot {doing} for run {run_id}: {exc.message}")


MAX_CHILDREN_LISTED = 50
"""Child runs `durable-agents runs` lists under each run."""


@dataclass(frozen=True)
class RunSummary:
    """One run of an agent, as `durable-agents runs` lists it."""

    run_id: str
    status: str
    """`running`, `completed`, `failed`, `canceled`, `terminated`, `timedOut`, `continuedAsNew`."""
    started: datetime | None
    closed: datetime | None
    pending: list[PendingCall] | None = field(default=None)
    """The calls a running run waits on; None when no worker answered the query (or the run is closed)."""
    parent: str | None = None
    """The run that called this one as a sub-agent (its workflow id), if any."""
    children: list[str] = field(default_factory=list[str])
    """The workflow ids of the agent runs this run called (child workflows), oldest first."""


def status_name(status: WorkflowExecutionStatus | None) -> str:
    """A Temporal execution status as the CLI prints it: `completed`, `timedOut`, ..."""
    if status is None:
        return "unknown"
    first, *rest = status.name.lower().split("_")
    return first + "".join(part.title() for part in rest)


async def list_runs(
    client: Client, task_queue: str, *, limit: int = 20, workflow_type: str = WORKFLOW_NAME
) -> list[RunSummary]:
    """The newest `limit` runs on `task_queue` (session workflows with `SESSION_WORKFLOW_NAME`), with the
    pending calls of those still running (read in parallel, each bounded by `RPC_TIMEOUT`), the run that
    called each (if any) and the runs each called."""
    query = f"TaskQueue = '{task_queue}' AND WorkflowType = '{workflow_type}'"
    executions = [execution async for execution in client.list_workflows(query, limit=limit)]

    async def summary(execution: Any) -> RunSummary:
        running = execution.status == WorkflowExecutionStatus.RUNNING
        pending: list[PendingCall] | None = None
        if running:
            try:
                pending = await pending_calls(client.get_workflow_handle(execution.id))
            except DecisionError:
                pending = None
        children = await _children(client, execution.id)
        return RunSummary(
            execution.id,
            status_name(execution.status),
            execution.start_time,
            execution.close_time,
            pending,
            parent=execution.parent_id,
            children=children,
        )

    return list(await asyncio.gather(*(summary(e) for e in executions)))


async def _children(client: Client, workflow_id: str) -> list[str]:
    escaped = workflow_id.replace("'", "\\'")
    query = f"ParentWorkflowId = '{escaped}'"
    found = [(e.start_time, e.id) async for e in client.list_workflows(query, limit=MAX_CHILDREN_LISTED)]
    return [workflow_id for _, workflow_id in sorted(found)]


def awaiting(runs: Sequence[RunSummary]) -> int:
    """How many of `runs` wait on at least one decision."""
    return sum(1 for run in runs if run.pending)
