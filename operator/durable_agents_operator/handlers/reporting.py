"""Writing what handlers found: a status patch, then one Event per condition transition."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from durable_agents_operator.builders.event import build_event
from durable_agents_operator.conditions import Transition
from durable_agents_operator.errors import KubeApiError
from durable_agents_operator.object_identity import key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.settings import OperatorSettings

__all__ = ["STATUS_REFRESH", "emit", "report", "status_due"]

logger = logging.getLogger(__name__)

STATUS_REFRESH = 60.0
"""Seconds after which an unchanged observation is written anyway, to move its check time."""


async def report(
    ops: Operator,
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    transitions: Sequence[Transition],
    now: datetime,
) -> None:
    """Patch `status` (fields left out keep their values), then announce each transition as an Event."""
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
    """Record an Event; a failure to record it is logged, never raised (the status already says it)."""
    event = build_event(
        body, reason=reason, message=message, type="Warning" if warning else "Normal", now=now
    )
    try:
        await ops.kube.create_event(event)
    except KubeApiError as exc:
        logger.warning("could not record event %s for %s: %s", reason, body["metadata"].get("name"), exc)


def status_due(
    current: Mapping[str, Any],
    status: Mapping[str, Any],
    check_field: str,
    now: datetime,
    settings: OperatorSettings,
) -> bool:
    """Whether a timer must write `status`: a field differs from `current`, or `current[check_field]`
    (the last check time) is older than `STATUS_REFRESH` (or three health intervals, if longer).

    Skipping unchanged writes keeps a steady object at one status write per minute instead of one per
    interval: each write is an etcd write and a watch event for every watcher.
    """
    if any(current.get(field) != value for field, value in status.items()):
        return True
    try:
        last = datetime.fromisoformat(current[check_field])
    except (KeyError, TypeError, ValueError):
        return True
    return (now - last).total_seconds() >= max(STATUS_REFRESH, 3 * settings.health_interval)
