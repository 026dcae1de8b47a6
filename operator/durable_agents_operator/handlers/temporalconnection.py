"""TemporalConnection: a timer that checks reachability, and re-reconciling agents when it changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf
from pydantic import ValidationError
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from durable_agents_api.errors import format_validation
from durable_agents_api.resources import API_VERSION, TemporalConnection
from durable_agents_operator.conditions import Reason
from durable_agents_operator.errors import DependencyNotReady, OperatorError
from durable_agents_operator.object_identity import key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.status import Problem, connection_status, refresh_after

from . import durableagent
from .reporting import report

__all__ = ["check", "spec_changed"]


logger = logging.getLogger(__name__)


async def check(ops: Operator, body: Mapping[str, Any]) -> None:
    """Describe the connection's Temporal namespace and write the `Reachable` condition."""
    if body["metadata"].get("deletionTimestamp"):
        return
    now = ops.clock()
    problem = await _probe(ops, body)
    update = connection_status(
        problem,
        previous=body.get("status") or {},
        now=now,
        refresh_after=refresh_after(ops.settings.health_interval),
    )
    if not update.due:
        return
    try:
        await report(ops, body, update.status, update.transitions, now)
    except OperatorError as exc:
        logger.warning("could not update the status of %s: %s", key_of(body), exc)


async def _probe(ops: Operator, body: Mapping[str, Any]) -> Problem | None:
    """Why the connection's Temporal namespace cannot be used (the condition reason is `blocked_by`), or
    None when it answered."""
    unreachable = Reason.TEMPORAL_UNREACHABLE
    try:
        connection = TemporalConnection.model_validate(dict(body))
        params = await ops.connection_params(connection)
        client = await ops.temporal.client(params)
        timeout = ops.settings.temporal_timeout
        request = DescribeNamespaceRequest(namespace=params.namespace)
        await asyncio.wait_for(
            client.workflow_service.describe_namespace(request, timeout=timedelta(seconds=timeout)), timeout
        )
    except ValidationError as exc:
        return Problem(f"invalid TemporalConnection:\n{format_validation(exc)}", Reason.INVALID_SPEC)
    except DependencyNotReady as exc:
        return Problem(str(exc), exc.reason)
    except OperatorError as exc:
        return Problem(str(exc), unreachable)
    except TimeoutError:
        message = (
            f"Temporal did not answer within {ops.settings.temporal_timeout:g}s: check that the frontend is "
            "up and reachable from the operator"
        )
        return Problem(message, unreachable)
    except Exception as exc:  # an RPC failure is an observation here, not a crash
        message = f"describing the Temporal namespace failed: {exc}; check the namespace name and credentials"
        return Problem(message, unreachable)
    return None


async def spec_changed(ops: Operator, body: Mapping[str, Any]) -> None:
    """Drop cached clients of this connection and reconcile the agents that use it (their pods change)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    ops.forget_connection(namespace, name)
    try:
        agents = await ops.kube.list(API_VERSION, "DurableAgent", namespace)
    except OperatorError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.retry_after or 30) from None
    for agent in agents:
        if _connection_name(agent) != name:
            continue
        try:
            await durableagent.reconcile(ops, agent)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            # The agent's own handlers retry; its status already says what is wrong.
            logger.info(
                "agent %s/%s not reconciled after %s changed: %s",
                namespace,
                agent["metadata"]["name"],
                name,
                exc,
            )


def _connection_name(agent: Mapping[str, Any]) -> str | None:
    ref = ((agent.get("spec") or {}).get("temporal") or {}).get("connectionRef") or {}
    return ref.get("name")
