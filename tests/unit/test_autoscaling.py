"""The autoscaling decision: backlog → replicas, the bounds, runs in flight, pause, delays, no Temporal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_agents_api.resources import AutoscalingSpec, AutoscalingStatus, DurableAgent
from durable_agents_operator.autoscaling import ScaleReason, decide, decide_for, with_decision
from durable_agents_operator.builders import desired_replicas
from durable_agents_operator.conditions import (
    PROGRESSING,
    READY,
    AgentObservation,
    DeploymentObservation,
    agent_conditions,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Reading:
    backlog_count: int = 0
    running: int = 0
    reachable: bool = True


def spec(**fields: Any) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate({"enabled": True, **fields})


def recorded(
    replicas: int, *, scaled_ago: float | None = None, desired: int | None = None
) -> AutoscalingStatus:
    return AutoscalingStatus(
        replicas=replicas,
        desired_replicas=replicas if desired is None else desired,
        last_scale_time=None if scaled_ago is None else NOW - timedelta(seconds=scaled_ago),
        reason=ScaleReason.STEADY,
    )


@pytest.mark.parametrize(
    ("case", "fields", "reading", "previous", "replicas", "reason"),
    [
        ("backlog over target per worker", {}, Reading(25), recorded(1), 3, ScaleReason.SCALED_UP),
        (
            "backlog rounds up",
            {"targetBacklogPerWorker": 5},
            Reading(11),
            recorded(1),
            3,
            ScaleReason.SCALED_UP,
        ),
        ("capped at maxReplicas", {"maxReplicas": 4}, Reading(1000), recorded(1), 4, ScaleReason.SCALED_UP),
        ("kept at minReplicas", {"minReplicas": 2}, Reading(0), recorded(2), 2, ScaleReason.STEADY),
        (
            "zero backlog scales to zero",
            {"minReplicas": 0},
            Reading(0),
            recorded(1),
            0,
            ScaleReason.SCALED_DOWN,
        ),
        (
            "a running run keeps a worker",
            {"minReplicas": 0},
            Reading(0, running=3),
            recorded(2),
            1,
            ScaleReason.SCALED_DOWN,
        ),
        (
            "a running run brings one up",
            {"minReplicas": 0},
            Reading(0, running=1),
            recorded(0),
            1,
            ScaleReason.SCALED_UP,
        ),
        (
            "one queued task wakes a worker",
            {"minReplicas": 0},
            Reading(1),
            recorded(0),
            1,
            ScaleReason.SCALED_UP,
        ),
        ("backlog matches replicas", {}, Reading(30), recorded(3), 3, ScaleReason.STEADY),
        (
            "first decision starts from minReplicas",
            {"minReplicas": 2},
            Reading(50),
            None,
            5,
            ScaleReason.SCALED_UP,
        ),
        ("first decision at minReplicas", {"minReplicas": 0}, Reading(0), None, 0, ScaleReason.STEADY),
        (
            "up within scaleUpDelay",
            {},
            Reading(50),
            recorded(1, scaled_ago=10),
            1,
            ScaleReason.SCALE_UP_DELAYED,
        ),
        ("up after scaleUpDelay", {}, Reading(50), recorded(1, scaled_ago=15), 5, ScaleReason.SCALED_UP),
        (
            "custom scaleUpDelay",
            {"scaleUpDelay": "1m"},
            Reading(50),
            recorded(1, scaled_ago=30),
            1,
            ScaleReason.SCALE_UP_DELAYED,
        ),
        (
            "down within scaleDownDelay",
            {},
            Reading(0),
            recorded(3, scaled_ago=119),
            3,
            ScaleReason.SCALE_DOWN_DELAYED,
        ),
        (
            "down after scaleDownDelay",
            {},
            Reading(0),
            recorded(3, scaled_ago=120),
            1,
            ScaleReason.SCALED_DOWN,
        ),
        (
            "custom scaleDownDelay",
            {"scaleDownDelay": "10s"},
            Reading(0),
            recorded(3, scaled_ago=10),
            1,
            ScaleReason.SCALED_DOWN,
        ),
    ],
)
def test_replicas_follow_the_backlog_within_bounds_and_delays(
    case: str,
    fields: dict[str, Any],
    reading: Reading,
    previous: AutoscalingStatus | None,
    replicas: int,
    reason: str,
) -> None:
    decision = decide(spec(**fields), paused=False, health=reading, previous=previous, now=NOW)
    assert (decision.replicas, decision.status.reason) == (replicas, reason), case


def test_a_scaling_records_its_time_and_a_delayed_one_keeps_the_last() -> None:
    scaled = decide(spec(), paused=False, health=Reading(25), previous=recorded(1, scaled_ago=600), now=NOW)
    delayed = decide(
        spec(), paused=False, health=Reading(80), previous=scaled.status, now=NOW + timedelta(seconds=5)
    )

    assert scaled.status.last_scale_time == NOW
    assert delayed.status.last_scale_time == NOW
    assert (delayed.replicas, delayed.status.desired_replicas) == (3, 8)
    assert delayed.status.message == "backlog 80, target 10 per worker; scaling up to 8 in 10s"
    assert not delayed.scaled


def test_the_event_says_from_what_to_what_and_why() -> None:
    decision = decide(spec(), paused=False, health=Reading(25), previous=recorded(1), now=NOW)
    assert decision.scaled
    assert decision.event_message == "Scaled workers from 1 to 3: backlog 25, target 10 per worker"
    with_runs = decide(spec(), paused=False, health=Reading(25, running=4), previous=recorded(1), now=NOW)
    assert (
        with_runs.event_message == "Scaled workers from 1 to 3: backlog 25, target 10 per worker, 4 running"
    )


def test_paused_wins_over_the_backlog_without_counting_as_a_scaling() -> None:
    previous = recorded(3, scaled_ago=5)
    decision = decide(spec(), paused=True, health=Reading(500, running=9), previous=previous, now=NOW)
    assert (decision.replicas, decision.status.reason) == (0, ScaleReason.PAUSED)
    assert decision.status.last_scale_time == previous.last_scale_time
    assert not decision.scaled


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (Reading(reachable=False), ScaleReason.TEMPORAL_UNREACHABLE),
        (None, ScaleReason.NOT_CHECKED),
    ],
)
def test_without_a_backlog_reading_the_replicas_stay(reading: Reading | None, reason: str) -> None:
    # An unreachable Temporal reports zeros that were never observed: scaling on them would drop workers.
    previous = recorded(4, scaled_ago=600, desired=4)
    decision = decide(spec(minReplicas=0), paused=False, health=reading, previous=previous, now=NOW)
    assert (decision.replicas, decision.status.reason) == (4, reason)
    assert decision.status.last_scale_time == previous.last_scale_time


def test_status_leaves_out_an_unset_scale_time_and_stamps_a_set_one() -> None:
    steady = decide(spec(minReplicas=0), paused=False, health=Reading(0), previous=None, now=NOW)
    scaled = decide(spec(), paused=False, health=Reading(25), previous=None, now=NOW)
    assert steady.to_api() == {
        "replicas": 0,
        "desiredReplicas": 0,
        "reason": "Steady",
        "message": "backlog 0, target 10 per worker",
    }
    assert scaled.to_api()["lastScaleTime"] == "2026-11-26T12:00:00Z"
    assert AutoscalingStatus.model_validate(scaled.to_api()) == scaled.status


def agent(
    autoscaling: dict[str, Any] | None, status: dict[str, Any] | None = None, **spec_fields: Any
) -> DurableAgent:
    body: dict[str, Any] = {
        "metadata": {"name": "hello", "namespace": "ns", "uid": "u"},
        "spec": {"agent": {"name": "hello", "model": "test"}, "replicas": 7, **spec_fields},
    }
    if autoscaling is not None:
        body["spec"]["autoscaling"] = autoscaling
    if status is not None:
        body["status"] = status
    return DurableAgent.model_validate(body)


def test_the_deployment_replicas_come_from_the_recorded_decision_not_spec_replicas() -> None:
    enabled = {"enabled": True, "minReplicas": 2}
    decided = {"autoscaling": {"replicas": 4, "desiredReplicas": 4, "reason": "ScaledUp"}}
    assert desired_replicas(agent(None)) == 7
    assert desired_replicas(agent({"enabled": False, "minReplicas": 2})) == 7
    assert desired_replicas(agent(enabled)) == 2  # before the first decision
    assert desired_replicas(agent(enabled, decided)) == 4
    assert desired_replicas(agent(enabled, decided, paused=True)) == 0


def test_a_settled_autoscaled_agent_says_the_backlog_sets_its_replicas() -> None:
    deployment = DeploymentObservation(
        generation=1,
        observed_generation=1,
        replicas=3,
        updated_replicas=3,
        ready_replicas=3,
        available_replicas=3,
    )
    observation = AgentObservation(generation=1, desired_replicas=3, autoscaling=True, deployment=deployment)
    conditions = {c.type: c for c in agent_conditions(observation, [], NOW).conditions}
    assert conditions[PROGRESSING].reason == "Autoscaling"
    assert "spec.replicas is ignored" in conditions[PROGRESSING].message
    zero = AgentObservation(
        generation=1, desired_replicas=0, autoscaling=True, deployment=DeploymentObservation(1, 1)
    )
    ready = {c.type: c for c in agent_conditions(zero, [], NOW).conditions}[READY]
    assert (ready.status, ready.reason) == ("True", "ScaledToZero")
    assert "autoscaled to zero" in ready.message


def test_an_agent_without_enabled_autoscaling_gets_no_decision() -> None:
    assert decide_for(agent(None), Reading(25), NOW) is None
    assert decide_for(agent({"enabled": False}), Reading(25), NOW) is None


def test_a_decision_for_an_agent_starts_from_the_one_recorded_in_its_status() -> None:
    decided = {"autoscaling": {"replicas": 4, "desiredReplicas": 4, "reason": "ScaledUp"}}
    decision = decide_for(agent({"enabled": True, "maxReplicas": 10}, decided), Reading(25), NOW)
    assert decision is not None
    assert (decision.previous_replicas, decision.replicas) == (4, 3)


def test_an_agent_with_a_decision_recorded_runs_that_many_workers() -> None:
    enabled = agent({"enabled": True, "minReplicas": 1})
    status = AutoscalingStatus(replicas=5, desired_replicas=5, reason=ScaleReason.SCALED_UP)
    assert desired_replicas(with_decision(enabled, status)) == 5
    assert enabled.status is None  # the original is left as it was
