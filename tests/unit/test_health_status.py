"""The health read in the shape of the DurableAgent status, which `status --json` prints too."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from durable_agents_operator.health_status import health_fields
from durable_agents_runtime.health_signals import AgentHealth, FailureInfo

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def _health(**changes) -> AgentHealth:
    fields = dict(
        task_queue="ns.agent",
        workers=1,
        backlog_count=0,
        backlog_age_seconds=0.0,
        running=0,
        completed=0,
        failed=0,
        last_failure=None,
    )
    fields.update(changes)
    return AgentHealth(**fields)


def test_health_fields_use_the_status_field_names_and_is_json_ready():
    health = _health(
        workers=2,
        backlog_count=3,
        backlog_age_seconds=1.5,
        running=1,
        completed=5,
        failed=1,
        last_failure=FailureInfo(workflow_id="run-1", message="boom", time=NOW),
    )

    status = health_fields(health)

    assert status == {
        "taskQueue": "ns.agent",
        "workers": 2,
        "backlog": {"count": 3, "ageSeconds": 1.5},
        "runs": {"running": 1, "completed": 5, "failed": 1},
        "lastFailure": {"workflowId": "run-1", "message": "boom", "time": "2026-11-26T12:00:00Z"},
    }
    assert json.loads(json.dumps(status)) == status
    assert "error" not in status


def test_health_fields_without_failures_clears_last_failure():
    assert health_fields(_health())["lastFailure"] is None


def test_unreachable_health_carries_the_error():
    health = AgentHealth.unreachable("ns.agent", "cannot read Temporal (UNAVAILABLE)")
    assert health_fields(health)["error"] == "cannot read Temporal (UNAVAILABLE)"
