"""Writing what handlers found: a status patch, then one Event per condition transition."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from durable_agents_operator.builders.event import build_event
from durable_agents_operator.conditions import Transition
from durable_agents_operator.errors import KubeApiError, NamespaceTerminating
from durable_agents_operator.object_identity import key_of
from durable_agents_operator.operator_state import Operator

__all__ = ["emit", "log_left_out", "report"]

logger = logging.getLogger(__name__)


async def report(
    ops: Operator,
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    transitions: Sequence[Transition],
    now: datetime,
) -> None:
    """Patch `status` (fields left out keep their values), then announce each transition as an Event.

    Nothing for an object in a namespace being deleted."""
    if ops.terminating.holds(body):
        return
    if await ops.kube.patch_status(key_of(body), status) is None:
        return  # deleted meanwhile: nobody to tell
    for transition in transitions:
        await emit(
            ops,
            body,
            reason=transition.reason,
            message=transition.event_message,
            warning=transition.warning,
            now=now,
        )


async def emit(
    ops: Operator, body: Mapping[str, Any], *, reason: str, message: str, warning: bool, now: datetime
) -> None:
    """Record an Event; a failure to record it is logged, never raised (the status already says it).

    A namespace being deleted refuses Events: that is noted (see `terminating_namespaces`), not logged.
    Over the operator's Event budget (`event_budget`) it is left out, and a line in the log says so."""
    if ops.terminating.holds(body):
        return
    admitted = ops.events.admit(body["metadata"].get("uid") or str(key_of(body)), reason, ops.monotonic())
    log_left_out(ops)
    if not admitted:
        return
    event = build_event(
        body, reason=reason, message=message, type="Warning" if warning else "Normal", now=now
    )
    try:
        await ops.kube.create_event(event)
    except NamespaceTerminating:
        ops.terminating.note(body["metadata"].get("namespace") or "", now)
    except KubeApiError as exc:
        logger.warning("could not record event %s for %s: %s", reason, body["metadata"].get("name"), exc)


def log_left_out(ops: Operator) -> None:
    """Log the Events left out over the operator's budget, when a line about them is due."""
    if (summary := ops.events.summary(ops.monotonic())) is not None:
        logger.warning("%s", summary)
