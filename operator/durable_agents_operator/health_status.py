"""A health read in the shape of the DurableAgent status (`workers`, `backlog`, `runs`, `lastFailure`).

The operator writes these fields into the status; `durable-agents status --json` prints the same shape, so
what a user reads locally is what `kubectl get durableagent -o yaml` shows. Pure, and free of kopf and the
Kubernetes client: the CLI uses it in the runtime image, which has neither.
"""

from __future__ import annotations

from typing import Any

from durable_agents_runtime.health import AgentHealth
from durable_agents_runtime.timestamps import timestamp

__all__ = ["HEALTH_FIELDS", "health_fields"]

HEALTH_FIELDS = ("workers", "backlog", "runs", "lastFailure")
"""Fields of `health_fields()` that go into the status as they are."""


def health_fields(health: AgentHealth) -> dict[str, Any]:
    """The observed fields of `DurableAgentStatus` (camelCase, JSON-ready), plus `taskQueue`, and `error`
    when set.

    `error` is not a status field. When Temporal could not be read the counts are zeros that were not
    observed: check `health.reachable` before writing them into a status.
    """
    failure = health.last_failure
    last_failure = None
    if failure is not None:
        last_failure = {
            "workflowId": failure.workflow_id,
            "message": failure.message,
            "time": timestamp(failure.time) if failure.time else None,
        }
    data: dict[str, Any] = {
        "taskQueue": health.task_queue,
        "workers": health.workers,
        "backlog": {"count": health.backlog_count, "ageSeconds": health.backlog_age_seconds},
        "runs": {"running": health.running, "completed": health.completed, "failed": health.failed},
        "lastFailure": last_failure,
    }
    if health.error is not None:
        data["error"] = health.error
    return data
