"""Versioned agents (`spec.versioning.enabled`): the objects of one version, and the rollout's status,
condition and Events from a version plan. Pure; the handlers are tested in tests/operator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import cel
import pytest
from pydantic import ValidationError

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.resources import DurableAgent
from durable_agents_operator import crd
from durable_agents_operator.builders import resolve_temporal
from durable_agents_operator.builders.agent_objects import AgentObjects, build_agent_objects
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.naming import LABEL_BUILD_ID
from durable_agents_operator.rollout_status import (
    rollout_condition,
    rollout_events,
    versions_status,
    with_rollout,
)
from durable_agents_operator.status import StatusUpdate
from durable_agents_operator.version_planner import (
    ObservedVersion,
    RolloutPolicy,
    RoutingState,
    plan_versions,
)
from durable_agents_runtime.versioning import build_id

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def agent(**spec: Any) -> DurableAgent:
    body = {"agent": {"name": "hello", "model": "test"}, "versioning": {"enabled": True}, **spec}
    return DurableAgent.model_validate(
        {"metadata": {"name": "hello", "namespace": "ns", "uid": "u1", "generation": 1}, "spec": body}
    )


def build(da: DurableAgent) -> AgentObjects:
    temporal = resolve_temporal(da, connection=None, default=ConnectionParams("temporal:7233", "default"))
    return build_agent_objects(da, temporal=temporal, default_image="img:1")


def test_each_version_has_its_own_deployment_and_config_selected_by_build_id() -> None:
    built = build(agent())
    assert built.version is not None
    bid = built.version.build_id
    deployment, configmap = built.version.deployment, built.version.configmap
    assert deployment["metadata"]["name"] == f"hello-worker-{bid}"
    assert configmap["metadata"]["name"] == f"hello-runtime-{bid}"
    assert deployment["spec"]["selector"]["matchLabels"][LABEL_BUILD_ID] == bid
    assert deployment["spec"]["template"]["metadata"]["labels"][LABEL_BUILD_ID] == bid
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == f"hello-runtime-{bid}"
    assert {m["kind"] for m in built.manifests} <= {"Service", "PodDisruptionBudget"}, "shared by versions"


def test_the_rendered_config_fixes_the_build_id_the_worker_registers_with() -> None:
    built = build(agent())
    assert built.version is not None
    config = RuntimeConfig.model_validate_json(built.version.configmap["data"]["runtime.json"])
    assert config.versioning is not None
    assert config.versioning.build_id == built.version.build_id
    assert build_id(config) == built.version.build_id


def test_a_change_to_the_agent_or_image_is_a_new_version_and_scaling_or_resources_are_not() -> None:
    def bid(da: DurableAgent) -> str:
        built = build(da)
        assert built.version is not None
        return built.version.build_id

    base = bid(agent())
    assert bid(agent(agent={"name": "hello", "model": "test", "instructions": "Be v2."})) != base
    assert bid(agent(template={"image": "img:2"})) != base
    assert bid(agent(replicas=3)) == base
    assert bid(agent(template={"resources": {"limits": {"memory": "2Gi"}}})) == base


def test_only_auto_upgrade_versions_run_the_replay_gate_in_their_workers() -> None:
    def gate(**versioning: Any) -> int:
        built = build(agent(versioning={"enabled": True, **versioning}))
        config = json.loads(built.config.to_json())
        return config["versioning"].get("replayHistories", 0)

    assert gate() == 0, "pinned runs finish on their own version: nothing they replay can break"
    assert gate(behavior="AutoUpgrade") == 20
    assert gate(behavior="AutoUpgrade", replayHistories=0) == 0


def test_progressive_without_rising_steps_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"versioning\.steps"):
        agent(versioning={"enabled": True, "strategy": "Progressive"})
    with pytest.raises(ValidationError, match="rising"):
        agent(
            versioning={
                "enabled": True,
                "strategy": "Progressive",
                "steps": [{"rampPercentage": 50, "pause": "1m"}, {"rampPercentage": 10, "pause": "1m"}],
            }
        )


def seen(build_id: str, **fields: Any) -> ObservedVersion:
    defaults: dict[str, Any] = {"replicas": 1, "ready_replicas": 1, "registered": True, "pinned_open_runs": 0}
    return ObservedVersion(build_id, **{**defaults, **fields})


def test_a_promotion_is_announced_and_the_status_lists_both_versions_current_first() -> None:
    versions = {"v1": seen("v1", pinned_open_runs=2), "v2": seen("v2")}
    plan = plan_versions("v2", versions, RoutingState(current="v1"), RolloutPolicy(), NOW)
    rows = versions_status(plan, versions, ())
    assert [(r["buildId"], r["role"], r.get("pinnedOpenRuns")) for r in rows] == [
        ("v2", "current", 0),
        ("v1", "draining", 2),
    ]
    [event] = rollout_events("v2", plan, routed=True, deleted=(), previous_current="v1")
    assert (event.reason, event.warning) == ("VersionPromoted", False)
    assert "version v2 is current (was v1)" in event.message
    assert rollout_events("v2", plan, routed=False, deleted=(), previous_current="v1") == []
    assert rollout_condition("v2", plan, None, None).reason == "Progressing", "routing still moving"


def test_a_drained_version_past_the_sunset_delay_is_announced_and_leaves_the_status() -> None:
    versions = {
        "v1": seen("v1", replicas=0, drained_since=NOW - timedelta(minutes=10)),
        "v2": seen("v2"),
    }
    plan = plan_versions("v2", versions, RoutingState(current="v2"), RolloutPolicy(), NOW)
    assert plan.delete == ("v1",)
    assert [r["buildId"] for r in versions_status(plan, versions, plan.delete)] == ["v2"]
    [event] = rollout_events("v2", plan, routed=False, deleted=plan.delete, previous_current="v2")
    assert event.reason == "VersionSunset" and "v1" in event.message
    condition = rollout_condition("v2", plan, None, None)
    assert (condition.status, condition.reason) == ("True", "Complete")


def test_a_refused_gate_blocks_naming_the_workflow_and_is_announced_once() -> None:
    versions = {"v1": seen("v1"), "v2": seen("v2", replay_gate="Refused")}
    plan = plan_versions("v2", versions, RoutingState(current="v1"), RolloutPolicy(), NOW)
    detail = "workflow wf-7: Activity id mismatch"
    condition = rollout_condition("v2", plan, detail, None)
    assert (condition.status, condition.reason) == ("False", "Blocked")
    assert "wf-7" in condition.message and "mismatch" in condition.message
    update = StatusUpdate({"conditions": []}, [], due=False)
    first, newly = with_rollout(
        update, previous={}, fields={"currentVersion": "v1"}, condition=condition, now=NOW, generation=2
    )
    assert newly and first.due
    again, newly_again = with_rollout(
        StatusUpdate({"conditions": first.status["conditions"]}, [], due=False),
        previous=first.status,
        fields={"currentVersion": "v1"},
        condition=condition,
        now=NOW,
        generation=2,
    )
    assert not newly_again and not again.due


def test_temporal_unreachable_is_unknown_and_moves_nothing() -> None:
    condition = rollout_condition("v2", None, None, "connection refused")
    assert (condition.status, condition.reason) == ("Unknown", "TemporalUnreachable")
    assert "connection refused" in condition.message
    assert rollout_events("v2", None, routed=False, deleted=(), previous_current=None) == []


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ({}, {"versioning": {"enabled": True}}, True),
        ({"versioning": {"enabled": False}}, {}, True),
        ({"versioning": {"enabled": True}}, {"versioning": {"enabled": True, "strategy": "Manual"}}, True),
        ({"versioning": {"enabled": True}}, {"versioning": {"enabled": False}}, False),
        ({"versioning": {"enabled": True}}, {"versioning": {}}, False),
        ({"versioning": {"enabled": True}}, {}, False),
    ],
)
def test_versioning_cannot_be_turned_off_in_the_api_server(
    old: dict[str, Any], new: dict[str, Any], ok: bool
) -> None:
    rendered = crd.render_crd(next(k for k in crd.KINDS if k.kind == "DurableAgent"))
    spec = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    refused = [
        r["message"]
        for r in spec["x-kubernetes-validations"]
        if cel.evaluate(r["rule"], {"self": new, "oldSelf": old}) is not True and "versioning" in r["message"]
    ]
    assert (refused == []) is ok, refused
    if not ok:
        assert "spec.versioning.enabled cannot be turned off" in refused[0]
