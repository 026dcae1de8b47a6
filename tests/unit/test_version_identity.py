"""Versioning without a server: config validation, build ids, the registry's version lookup, and how the
replay gate reads a mismatch out of a replay failure."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import DurableAgent
from durable_agents_runtime import served_agents
from durable_agents_runtime.errors import AgentNotServedError
from durable_agents_runtime.replay_gate import ReplayMismatch, ReplayReport, first_mismatch
from durable_agents_runtime.versioning import build_id, deployment_config, deployment_name


def config(**versioning: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": {"name": "support", "model": "test", "instructions": "Help."},
            "temporal": {"taskQueue": "shop.support"},
            "versioning": versioning,
        }
    )


def errors(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        RuntimeConfig.model_validate(data)
    return format_validation(info.value)


def test_an_unversioned_config_gives_the_worker_no_deployment() -> None:
    unversioned = RuntimeConfig.model_validate(
        {"agent": {"name": "support", "model": "test"}, "temporal": {"taskQueue": "q"}}
    )
    assert deployment_config(unversioned) is None


def test_a_versioned_config_is_pinned_by_default_and_names_its_deployment_after_the_queue() -> None:
    deployment = deployment_config(config())

    assert deployment is not None and deployment.use_worker_versioning
    assert deployment.default_versioning_behavior.name == "PINNED"
    assert deployment.version.deployment_name == deployment_name(config()) == "shop/support"
    assert deployment.version.build_id == build_id(config())


def test_auto_upgrade_is_opt_in_and_is_another_version() -> None:
    auto = deployment_config(config(behavior="AutoUpgrade"))

    assert auto is not None and auto.default_versioning_behavior.name == "AUTO_UPGRADE"
    assert build_id(config(behavior="AutoUpgrade")) != build_id(config())


def test_explicit_names_win_over_derived_ones() -> None:
    named = config(deploymentName="shop/support-agent", buildId="release-42")

    assert deployment_name(named) == "shop/support-agent"
    assert build_id(named, image="ignored:1") == "release-42"


def test_a_deployment_name_with_a_dot_or_a_bad_build_id_is_refused_naming_the_field() -> None:
    base = {"agent": {"name": "a", "model": "test"}, "temporal": {"taskQueue": "q"}}

    dotted = errors({**base, "versioning": {"deploymentName": "shop.support"}})
    spaced = errors({**base, "versioning": {"buildId": "has space"}})
    behavior = errors({**base, "versioning": {"behavior": "Sticky"}})

    assert "versioning.deploymentName: 'shop.support' cannot name a Temporal Worker Deployment" in dotted
    assert "without `.`" in dotted
    assert "versioning.buildId: 'has space' is not a build id: use letters, digits" in spaced
    assert "versioning.behavior" in behavior and "Pinned" in behavior


def test_the_manifest_defaults_to_pinned_with_a_replay_gate() -> None:
    agent = DurableAgent.model_validate(
        {"metadata": {"name": "a"}, "spec": {"agent": {"name": "a", "model": "test"}}}
    )

    assert agent.spec.versioning.behavior == "Pinned"
    assert agent.spec.versioning.replay_histories == 20


def test_two_versions_of_an_agent_share_a_queue_and_each_task_finds_its_own() -> None:
    old, new = object(), object()
    queue = "versioning-unit-queue"
    served_agents.register(queue, served_agents.ServedAgent(old, None), "b1")  # type: ignore[arg-type]
    served_agents.register(queue, served_agents.ServedAgent(new, None), "b2")  # type: ignore[arg-type]
    try:
        assert served_agents.lookup(queue, "b1").agent is old
        assert served_agents.lookup(queue, "b2").agent is new
        with pytest.raises(AgentNotServedError, match="2 versions"):
            served_agents.lookup(queue, "b3")
        served_agents.unregister(queue, "b1")
        # One version left: a task recorded by another build (a replay of old history) finds it.
        assert served_agents.lookup(queue, "b1").agent is new
    finally:
        served_agents.unregister(queue, "b1")
        served_agents.unregister(queue, "b2")


def test_the_first_mismatching_command_is_read_out_of_the_failure() -> None:
    failure = (
        'Workflow activation completion failed: Failure { failure: Some(Failure { message: "[TMPRL1100] '
        "Nondeterminism error: Activity type of scheduled event 'agent__a__toolset__t__call_tool' does not "
        'match activity type of activity command \'agent__a__model_request\'", source: "" }) }'
    )

    assert first_mismatch(failure) == (
        "Activity type of scheduled event 'agent__a__toolset__t__call_tool' does not match activity type "
        "of activity command 'agent__a__model_request'"
    )
    assert first_mismatch("something else\nstack") == "something else"


def test_a_refusal_names_the_workflow_and_the_command() -> None:
    mismatch = ReplayMismatch("run-1", "r1", "Activity type ... does not match", "full")
    report = ReplayReport("support", "q", replayed=("run-1", "run-2"), mismatches=(mismatch,))

    assert not report.ok
    assert "1 of 2 recent run(s)" in report.summary()
    assert "First: workflow run-1 (run r1): Activity type ... does not match" in report.summary()
    assert ReplayReport("support", "q").ok and "nothing can break" in ReplayReport("support", "q").summary()
