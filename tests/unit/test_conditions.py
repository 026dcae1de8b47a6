"""Observations → DurableAgent and TemporalConnection conditions, transition times, and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_agents_operator.conditions import (
    DEGRADED,
    PROGRESSING,
    READY,
    TEMPORAL_REACHABLE,
    AgentObservation,
    DeploymentObservation,
    agent_conditions,
    connection_conditions,
)
from durable_agents_runtime.health import AgentHealth

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=10)


def deployment(
    desired: int,
    *,
    ready: int | None = None,
    updated: int | None = None,
    total: int | None = None,
    stalled: str | None = None,
    observed_generation: int = 2,
) -> DeploymentObservation:
    ready = desired if ready is None else ready
    return DeploymentObservation(
        generation=2,
        observed_generation=observed_generation,
        replicas=desired if total is None else total,
        updated_replicas=desired if updated is None else updated,
        ready_replicas=ready,
        available_replicas=ready,
        stalled_message=stalled,
    )


def health(workers: int = 1, *, reachable: bool = True) -> AgentHealth:
    if not reachable:
        return AgentHealth.unreachable("ns.a", "cannot read Temporal (UNAVAILABLE: connection refused)")
    return AgentHealth("ns.a", workers, 0, 0.0, 0, 0, 0, None)


def observe(desired: int = 1, **kwargs: Any) -> AgentObservation:
    return AgentObservation(generation=2, desired_replicas=desired, task_queue="ns.a", **kwargs)


def summary(obs: AgentObservation) -> dict[str, tuple[str, str]]:
    update = agent_conditions(obs, [], T0)
    return {c.type: (c.status, c.reason) for c in update.conditions}


CASES = [
    (
        "healthy: all workers polling",
        observe(2, deployment=deployment(2), health=health(2)),
        ("True", "AllWorkersPolling"),
        ("False", "RolloutComplete"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "fewer pollers than pods is still ready",
        observe(3, deployment=deployment(3), health=health(2)),
        ("True", "SomeWorkersPolling"),
        ("False", "RolloutComplete"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "no deployment yet",
        observe(1),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("False", "AsExpected"),
        ("Unknown", "NotChecked"),
    ),
    (
        "pods not ready yet",
        observe(2, deployment=deployment(2, ready=1), health=health(1)),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "old pods still terminating",
        observe(2, deployment=deployment(2, total=3), health=health(2)),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "deployment controller has not seen the new spec",
        observe(1, deployment=deployment(1, observed_generation=1)),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("False", "AsExpected"),
        ("Unknown", "NotChecked"),
    ),
    (
        "rolled out but Temporal not read yet",
        observe(1, deployment=deployment(1)),
        ("Unknown", "HealthNotChecked"),
        ("False", "RolloutComplete"),
        ("False", "AsExpected"),
        ("Unknown", "NotChecked"),
    ),
    (
        "pods ready but no worker polls",
        observe(2, deployment=deployment(2), health=health(0)),
        ("False", "NoActivePollers"),
        ("False", "RolloutComplete"),
        ("True", "NoActivePollers"),
        ("True", "Connected"),
    ),
    (
        "Temporal down",
        observe(1, deployment=deployment(1), health=health(reachable=False)),
        ("False", "TemporalUnreachable"),
        ("False", "RolloutComplete"),
        ("True", "TemporalUnreachable"),
        ("False", "TemporalUnreachable"),
    ),
    (
        "Temporal down during a rollout",
        observe(2, deployment=deployment(2, ready=0), health=health(reachable=False)),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("True", "TemporalUnreachable"),
        ("False", "TemporalUnreachable"),
    ),
    (
        "rollout stalled",
        observe(1, deployment=deployment(1, ready=0, stalled="ReplicaSet has timed out progressing.")),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("True", "RolloutStalled"),
        ("Unknown", "NotChecked"),
    ),
    (
        "paused and scaled down",
        observe(0, paused=True, deployment=deployment(0), health=health(0)),
        ("True", "Paused"),
        ("False", "Paused"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "paused, pods still draining",
        observe(0, paused=True, deployment=deployment(0, total=2, ready=0)),
        ("False", "RollingOut"),
        ("True", "RollingOut"),
        ("False", "AsExpected"),
        ("Unknown", "NotChecked"),
    ),
    (
        "paused with Temporal down still needs a human",
        observe(0, paused=True, deployment=deployment(0), health=health(reachable=False)),
        ("True", "Paused"),
        ("False", "Paused"),
        ("True", "TemporalUnreachable"),
        ("False", "TemporalUnreachable"),
    ),
    (
        "zero replicas",
        observe(0, deployment=deployment(0), health=health(0)),
        ("True", "ScaledToZero"),
        ("False", "RolloutComplete"),
        ("False", "AsExpected"),
        ("True", "Connected"),
    ),
    (
        "invalid spec",
        observe(1, spec_error="spec.agent.model: required", health=health(1)),
        ("False", "InvalidSpec"),
        ("False", "InvalidSpec"),
        ("True", "InvalidSpec"),
        ("True", "Connected"),
    ),
    (
        "missing connection",
        observe(1, blocked=("TemporalConnectionNotFound", "create it")),
        ("False", "TemporalConnectionNotFound"),
        ("False", "TemporalConnectionNotFound"),
        ("True", "TemporalConnectionNotFound"),
        ("Unknown", "NotChecked"),
    ),
]


@pytest.mark.parametrize(
    ("obs", "ready", "progressing", "degraded", "reachable"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_agent_conditions(
    obs: AgentObservation,
    ready: tuple[str, str],
    progressing: tuple[str, str],
    degraded: tuple[str, str],
    reachable: tuple[str, str],
) -> None:
    assert summary(obs) == {
        READY: ready,
        PROGRESSING: progressing,
        DEGRADED: degraded,
        TEMPORAL_REACHABLE: reachable,
    }


def test_messages_say_what_to_check() -> None:
    update = agent_conditions(observe(2, deployment=deployment(2), health=health(0)), [], T0)
    ready = next(c for c in update.conditions if c.type == READY)
    assert "none polled task queue ns.a in the last 75s" in ready.message
    assert "same Temporal address and namespace" in ready.message
    down = agent_conditions(observe(1, deployment=deployment(1), health=health(reachable=False)), [], T0)
    reachable = next(c for c in down.conditions if c.type == TEMPORAL_REACHABLE)
    assert "connection refused" in reachable.message


def test_last_transition_time_is_kept_while_the_status_stays_the_same() -> None:
    first = agent_conditions(observe(2, deployment=deployment(2, ready=0), health=health(0)), [], T0)
    # Still not ready, for a different reason: the status is unchanged, so the time is too.
    second = agent_conditions(observe(2, deployment=deployment(2), health=health(0)), first.to_api(), T1)
    by_type = {c.type: c for c in second.conditions}
    assert by_type[READY].reason == "NoActivePollers"
    assert by_type[READY].last_transition_time == T0
    assert by_type[PROGRESSING].last_transition_time == T1  # True → False
    assert by_type[DEGRADED].last_transition_time == T1  # False → True


def test_transitions_list_status_and_reason_changes_with_their_severity() -> None:
    first = agent_conditions(observe(1, deployment=deployment(1), health=health(1)), [], T0)
    down = agent_conditions(
        observe(1, deployment=deployment(1), health=health(reachable=False)), first.to_api(), T1
    )
    changes = {(t.type, t.status, t.reason, t.warning) for t in down.transitions}
    assert changes == {
        (READY, "False", "TemporalUnreachable", True),
        (DEGRADED, "True", "TemporalUnreachable", True),
        (TEMPORAL_REACHABLE, "False", "TemporalUnreachable", True),
    }
    recovered = agent_conditions(observe(1, deployment=deployment(1), health=health(1)), down.to_api(), T1)
    assert all(not t.warning for t in recovered.transitions)
    assert {t.type for t in recovered.transitions} == {READY, DEGRADED, TEMPORAL_REACHABLE}
    assert (
        agent_conditions(
            observe(1, deployment=deployment(1), health=health(1)), recovered.to_api(), T1
        ).transitions
        == []
    )


def test_a_new_agent_announces_only_bad_news() -> None:
    rolling = agent_conditions(observe(1), [], T0)
    assert rolling.transitions == []
    invalid = agent_conditions(observe(1, spec_error="spec.agent: bad"), [], T0)
    assert {(t.type, t.reason) for t in invalid.transitions} == {
        (READY, "InvalidSpec"),
        (DEGRADED, "InvalidSpec"),
    }
    assert all(t.warning for t in invalid.transitions)
    assert "spec.agent: bad" in invalid.transitions[0].event_message


def test_conditions_carry_the_observed_generation_and_keep_foreign_types() -> None:
    foreign = {
        "type": "ExternalCheck",
        "status": "True",
        "reason": "Fine",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    update = agent_conditions(observe(1, deployment=deployment(1), health=health(1)), [foreign], T0)
    api = update.to_api()
    assert {c["type"] for c in api} == {READY, PROGRESSING, DEGRADED, TEMPORAL_REACHABLE, "ExternalCheck"}
    assert all(c["observedGeneration"] == 2 for c in api if c["type"] != "ExternalCheck")
    assert next(c for c in api if c["type"] == READY)["lastTransitionTime"] == "2026-11-26T10:00:00Z"


def test_deployment_observation_reads_a_live_deployment() -> None:
    live = {
        "metadata": {"generation": 4},
        "status": {
            "observedGeneration": 4,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "a" has timed out progressing.',
                }
            ],
        },
    }
    obs = DeploymentObservation.from_manifest(live)
    assert obs.stalled_message == 'ReplicaSet "a" has timed out progressing.'
    assert not obs.rolled_out(2)
    assert DeploymentObservation.from_manifest({"metadata": {}}).rolled_out(0)


def test_connection_reachable_condition_and_its_transitions() -> None:
    up = connection_conditions(reachable=True, error=None, previous=[], now=T0)
    assert [(c.type, c.status, c.reason) for c in up.conditions] == [("Reachable", "True", "Connected")]
    assert up.transitions == []
    down = connection_conditions(reachable=False, error="DNS lookup failed", previous=up.to_api(), now=T1)
    (transition,) = down.transitions
    assert transition.warning and transition.previous_status == "True"
    assert "DNS lookup failed" in down.conditions[0].message
    assert down.conditions[0].last_transition_time == T1
