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

from durable_agents_operator.api import API_VERSION, TemporalConnection
from durable_agents_operator.conditions import Reason, connection_conditions
from durable_agents_operator.errors import DependencyNotReady, OperatorError
from durable_agents_operator.object_identity import key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.timestamps import timestamp
from durable_agents_runtime.errors import format_validation

from . import durableagent
from .reporting import report, status_due

__all__ = ["check", "spec_changed"]


logger = logging.getLogger(__name__)


async def check(ops: Operator, body: Mapping[str, Any]) -> None:
    """Describe the connection's Temporal namespace and write the `Reachable` condition."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    now = ops.clock()
    error: str | None = None
    reason = Reason.TEMPORAL_UNREACHABLE
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
        error, reason = f"invalid TemporalConnection:\n{format_validation(exc)}", Reason.INVALID_SPEC
    except DependencyNotReady as exc:
        error, reason = str(exc), exc.reason
    except OperatorError as exc:
        error = str(exc)
    except TimeoutError:
        error = (
            f"Temporal did not answer within {ops.settings.temporal_timeout:g}s: check that the frontend is "
            "up and reachable from the operator"
        )
    except Exception as exc:  # an RPC failure is an observation here, not a crash
        error = f"describing the Temporal namespace failed: {exc}; check the namespace name and credentials"
    previous = (body.get("status") or {}).get("conditions") or []
    update = connection_conditions(
        reachable=error is None, error=error, previous=previous, now=now, reason=reason
    )
    status: dict[str, Any] = {"conditions": update.to_api()}
    current = body.get("status") or {}
    if not update.transitions and not status_due(current, status, "lastCheckTime", now, ops.settings):
        return
    status["lastCheckTime"] = timestamp(now)
    try:
        await report(ops, body, status, update.transitions, now)
    except OperatorError as exc:
        logger.warning("could not update the status of %s: %s", key_of(body), exc)


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
