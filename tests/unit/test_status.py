"""The DurableAgent status, one row per situation: what reconcile and the health timer write, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_agents_api.resources import AutoscalingStatus, DurableAgent
from durable_agents_operator.autoscaling import ScaleDecision, ScaleReason
from durable_agents_operator.errors import (
    DependencyNotReady,
    InvalidSpec,
    KubeUnavailable,
    ObjectConflict,
    OperatorError,
)
from durable_agents_operator.status import (
    Problem,
    StatusUpdate,
    agent_status,
    connection_status,
    failure_status,
    reconcile_owns_status,
    refresh_after,
)
from durable_agents_runtime.health import AgentHealth

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STAMP = "2026-11-26T12:00:00Z"
SELECTOR = "app.kubernetes.io/name=durable-agents-worker,durable-agents.dev/agent=a"


def agent(**spec: Any) -> DurableAgent:
    return DurableAgent.model_validate(
        {
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {"agent": {"name": "a", "model": "test"}, **spec},
        }
    )


def deployment(replicas: int, *, ready: int | None = None) -> dict[str, Any]:
    ready = replicas if ready is None else ready
    return {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def healthy(workers: int = 1, *, backlog: int = 0, running: int = 0) -> AgentHealth:
    return AgentHealth("ns.a", workers, backlog, 0.0, running, 5, 0, None)


UNREACHABLE = AgentHealth.unreachable("ns.a", "connection refused: check the address")


def scaled(replicas: int, *, previous: int, reason: str = ScaleReason.SCALED_UP) -> ScaleDecision:
    status = AutoscalingStatus(
        replicas=replicas, desired_replicas=replicas, last_scale_time=NOW, reason=reason, message="backlog 25"
    )
    return ScaleDecision(previous, status)


def conditions(update: StatusUpdate) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in update.status["conditions"]}


@dataclass(frozen=True)
class Row:
    agent: DurableAgent = field(default_factory=agent)
    deployment: dict[str, Any] | None = field(default_factory=lambda: deployment(1))
    health: AgentHealth | None = field(default_factory=healthy)
    scaling: ScaleDecision | None = None
    previous: dict[str, Any] = field(default_factory=dict)
    problem: Problem | None = None
    reconciled: bool = False


@pytest.mark.parametrize(
    ("case", "row", "ready", "fields"),
    [
        (
            "reachable Temporal with every worker polling",
            Row(),
            ("True", "AllWorkersPolling"),
            {"workers": 1, "runs": {"running": 0, "completed": 5, "failed": 0}, "lastHealthCheck": STAMP},
        ),
        (
            "unreachable Temporal leaves the last reading in place",
            Row(health=UNREACHABLE),
            ("False", "TemporalUnreachable"),
            {"workers": None, "runs": None},
        ),
        ("not read yet", Row(health=None), ("Unknown", "HealthNotChecked"), {"workers": None}),
        (
            "paused with no workers",
            Row(agent=agent(paused=True), deployment=deployment(0), health=healthy(0)),
            ("True", "Paused"),
            {"replicas": 0, "readyReplicas": 0},
        ),
        (
            "rolling out",
            Row(agent=agent(replicas=3), deployment=deployment(3, ready=1)),
            ("False", "RollingOut"),
            {"replicas": 3, "readyReplicas": 1},
        ),
        (
            "scaled to zero by spec.replicas",
            Row(agent=agent(replicas=0), deployment=deployment(0), health=healthy(0)),
            ("True", "ScaledToZero"),
            {"selector": SELECTOR},
        ),
        (
            "an autoscaling decision is recorded and sets the desired replicas",
            Row(
                agent=agent(autoscaling={"enabled": True, "maxReplicas": 5}),
                deployment=deployment(3),
                health=healthy(3, backlog=25),
                scaling=scaled(3, previous=1),
            ),
            ("True", "AllWorkersPolling"),
            {"autoscaling": {"replicas": 3, "desiredReplicas": 3, "lastScaleTime": STAMP}},
        ),
        (
            "autoscaling turned off clears its last decision",
            Row(previous={"autoscaling": {"replicas": 2}}),
            ("True", "AllWorkersPolling"),
            {"autoscaling": None},
        ),
        (
            "a spec the builders refuse",
            Row(problem=Problem("spec.template.env[0] has no name")),
            ("False", "InvalidSpec"),
            {},
        ),
        (
            "a missing TemporalConnection",
            Row(health=None, problem=Problem("create it", blocked_by="TemporalConnectionNotFound")),
            ("False", "TemporalConnectionNotFound"),
            {},
        ),
        (
            "reconcile records the generation and task queue, and no health fields",
            Row(reconciled=True),
            ("True", "AllWorkersPolling"),
            {"observedGeneration": 3, "taskQueue": "ns.a", "workers": None, "lastHealthCheck": None},
        ),
    ],
)
def test_status_for_each_situation(
    case: str, row: Row, ready: tuple[str, str], fields: dict[str, Any]
) -> None:
    update = agent_status(
        row.agent,
        deployment=row.deployment,
        health=row.health,
        scaling=row.scaling,
        previous=row.previous,
        now=NOW,
        live_within=75,
        refresh_after=60,
        problem=row.problem,
        reconciled=row.reconciled,
    )
    assert conditions(update)["Ready"] == ready, case
    for name, value in fields.items():
        if isinstance(value, dict) and name in update.status:
            assert value.items() <= update.status[name].items(), (case, name)
        else:
            assert update.status.get(name) == value, (case, name)
    assert update.due, case


def steady(
    previous: dict[str, Any] | None = None, *, at: datetime = NOW, reconciled: bool = False
) -> StatusUpdate:
    return agent_status(
        agent(),
        deployment=deployment(1),
        health=healthy(),
        scaling=None,
        previous=previous or {},
        now=at,
        live_within=75,
        refresh_after=60,
        reconciled=reconciled,
    )


def test_an_unchanged_status_is_not_written_again_until_its_check_time_is_a_minute_old() -> None:
    first = steady()
    written = {**first.status}
    assert not steady(written, at=NOW + timedelta(seconds=30)).due
    later = steady(written, at=NOW + timedelta(seconds=60))
    assert later.due
    assert later.status["lastHealthCheck"] == "2026-11-26T12:01:00Z"


def test_reconcile_writes_only_when_something_it_owns_changed() -> None:
    first = steady(reconciled=True)
    assert first.due
    assert not steady({**first.status}, at=NOW + timedelta(hours=1), reconciled=True).due


def test_previous_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    earlier = NOW - timedelta(hours=1)
    previous = {"conditions": steady(at=earlier).status["conditions"]}
    (ready,) = [c for c in steady(previous).status["conditions"] if c["type"] == "Ready"]
    assert ready["lastTransitionTime"] == "2026-11-26T11:00:00Z"
    assert steady(previous).transitions == []


def test_the_timer_reports_conditions_for_the_generation_reconcile_last_handled() -> None:
    update = steady({"observedGeneration": 2})
    assert {c["observedGeneration"] for c in update.status["conditions"]} == {2}
    assert "observedGeneration" not in update.status


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidSpec("fix spec.x"), Problem("fix spec.x")),
        (DependencyNotReady("create it", reason="SecretNotFound"), Problem("create it", "SecretNotFound")),
        (ObjectConflict("delete it"), Problem("delete it", "ObjectConflict")),
        (KubeUnavailable("the API did not answer"), None),
    ],
)
def test_errors_that_need_a_human_become_problems_and_transient_ones_do_not(
    error: OperatorError, expected: Problem | None
) -> None:
    assert Problem.of(error) == expected


def test_a_failed_reconcile_reports_its_problem_on_every_condition_without_an_agent() -> None:
    update = failure_status(Problem("fix spec.x"), generation=4, previous={}, now=NOW)
    assert update.due
    assert update.status["observedGeneration"] == 4
    assert conditions(update)["Ready"] == ("False", "InvalidSpec")
    assert [t.reason for t in update.transitions if t.type == "Ready"] == ["InvalidSpec"]


def test_the_timer_leaves_an_object_conflict_to_reconcile() -> None:
    conflict = failure_status(Problem("delete it", "ObjectConflict"), generation=1, previous={}, now=NOW)
    assert reconcile_owns_status(conflict.status)
    assert not reconcile_owns_status(steady().status)


def test_a_connection_is_reachable_or_says_why_not_and_stamps_its_check_time() -> None:
    ok = connection_status(None, previous={}, now=NOW, refresh_after=60)
    assert conditions(ok) == {"Reachable": ("True", "Connected")}
    assert ok.status["lastCheckTime"] == STAMP
    missing = connection_status(
        Problem("create it", "SecretNotFound"), previous={}, now=NOW, refresh_after=60
    )
    assert conditions(missing) == {"Reachable": ("False", "SecretNotFound")}
    assert not connection_status(None, previous=ok.status, now=NOW, refresh_after=60).due


def test_status_refresh_is_a_minute_or_three_health_intervals() -> None:
    assert refresh_after(10) == 60
    assert refresh_after(30) == 90


def test_the_health_timer_writes_the_runs_awaiting_approval_and_a_change_is_written_at_once() -> None:
    def timer(previous: dict[str, Any], waiting: int, at: datetime) -> StatusUpdate:
        return agent_status(
            agent(),
            deployment=deployment(1),
            health=healthy(),
            scaling=None,
            previous=previous,
            now=at,
            live_within=75,
            refresh_after=60,
            awaiting_approval=waiting,
        )

    first = timer({}, 0, NOW)
    assert first.status["awaitingApproval"] == 0
    assert not timer({**first.status}, 0, NOW + timedelta(seconds=5)).due
    changed = timer({**first.status}, 2, NOW + timedelta(seconds=5))
    assert changed.due and changed.status["awaitingApproval"] == 2
    # Reconcile does not own the count: it leaves the field alone.
    assert "awaitingApproval" not in steady(reconciled=True).status
