"""Bad manifests are rejected by the apiserver itself (schema and CEL rules of the installed CRDs).

Each case goes through `kubectl apply` and asserts on its stderr: the request fails and the message names
the field to fix. Updates (immutable fields) first apply a valid object, then the changed one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import Kubectl, Release, create_namespace
from .support import API_VERSION

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


def agent(name: str = "bad", **spec: Any) -> Json:
    """A valid, paused DurableAgent (no worker pods) with `spec` fields replaced."""
    base: Json = {"paused": True, "agent": {"name": "bad_agent", "model": "test"}}
    return {
        "apiVersion": API_VERSION,
        "kind": "DurableAgent",
        "metadata": {"name": name},
        "spec": base | spec,
    }


def declarative(**fields: Any) -> Json:
    return {"name": "bad_agent", "model": "test", **fields}


def with_agent_name(manifest: Json, name: str) -> Json:
    changed = copy.deepcopy(manifest)
    changed["spec"]["agent"]["name"] = name
    return changed


def schedule(**fields: Any) -> Json:
    return {"name": "nightly", "cron": ["0 3 * * *"], "prompt": "Summarise.", **fields}


def run(name: str = "bad-run", **spec: Any) -> Json:
    base: Json = {"agentRef": {"name": "bad"}, "prompt": "hello"}
    return {"apiVersion": API_VERSION, "kind": "AgentRun", "metadata": {"name": name}, "spec": base | spec}


def connection(**spec: Any) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": "TemporalConnection",
        "metadata": {"name": "bad-connection"},
        "spec": {"address": "temporal.example:7233", **spec},
    }


@dataclass(frozen=True)
class Case:
    """A manifest the apiserver must reject, with the phrases its message must contain."""

    manifest: Json
    expected: tuple[str, ...]
    before: Json | None = None
    """A valid object applied first, when the case is an update."""


CASES = {
    "replicas-wrong-type": Case(agent(replicas="three"), ("spec.replicas", "integer")),
    "replicas-negative": Case(agent(replicas=-1), ("spec.replicas", "greater than or equal to 0")),
    "output-type-unknown-enum": Case(
        agent(agent=declarative(output={"type": "yaml"})), ("spec.agent.output.type", '"yaml"')
    ),
    "mcp-transport-unknown-enum": Case(
        agent(
            agent=declarative(
                mcpServers=[{"id": "tools", "url": "http://mcp.example", "transport": "websocket"}]
            )
        ),
        ("spec.agent.mcpServers[0].transport", '"websocket"'),
    ),
    "bad-duration": Case(
        agent(activities={"default": {"startToCloseTimeout": "thirty seconds"}}),
        ("spec.activities.default.startToCloseTimeout", "thirty seconds"),
    ),
    "start-to-close-over-schedule-to-close": Case(
        agent(activities={"default": {"startToCloseTimeout": "5m", "scheduleToCloseTimeout": "1m"}}),
        ("spec.activities.default.startToCloseTimeout", "must not exceed scheduleToCloseTimeout"),
    ),
    "both-agent-kinds": Case(
        agent(agent=declarative(entrypoint="my_pkg.agents:agent")), ("spec.agent", "exactly one of `model`")
    ),
    "neither-agent-kind": Case(agent(agent={"name": "bad_agent"}), ("spec.agent", "exactly one of `model`")),
    "json-output-without-schema": Case(
        agent(agent=declarative(output={"type": "json"})), ("spec.agent.output.schema", "is required")
    ),
    "agent-name-pattern": Case(agent(agent=declarative(name="my agent")), ("spec.agent.name", "my agent")),
    "min-replicas-over-max": Case(
        agent(autoscaling={"enabled": True, "minReplicas": 5, "maxReplicas": 2}),
        ("spec.autoscaling.minReplicas", "<= spec.autoscaling.maxReplicas"),
    ),
    "unknown-field": Case(agent(replica=2), ('unknown field "spec.replica"',)),
    "image-pull-policy-unknown-enum": Case(
        agent(template={"imagePullPolicy": "Sometimes"}), ("spec.template.imagePullPolicy", '"Sometimes"')
    ),
    "changed-agent-name": Case(
        with_agent_name(agent("renamed"), "other_name"),
        ("spec.agent.name", "cannot change"),
        before=agent("renamed"),
    ),
    "changed-task-queue": Case(
        agent("queue", temporal={"taskQueue": "second"}),
        ("spec.temporal.taskQueue", "cannot change"),
        before=agent("queue", temporal={"taskQueue": "first"}),
    ),
    "schedule-cron-out-of-range": Case(
        agent(schedules=[schedule(cron=["61 * * * *"])]), ("spec.schedules[0].cron[0]", "61 * * * *")
    ),
    "schedule-cron-too-few-fields": Case(
        agent(schedules=[schedule(cron=["0 9 * *"])]), ("spec.schedules[0].cron[0]", "0 9 * *")
    ),
    "schedule-time-zone-shape": Case(
        agent(schedules=[schedule(timeZone="Europe Paris")]), ("spec.schedules[0].timeZone", "Europe Paris")
    ),
    "schedule-without-cron-or-intervals": Case(
        agent(schedules=[schedule(cron=[])]), ("spec.schedules[0].cron", "needs `cron` or `intervals`")
    ),
    "schedule-overlap-unknown-enum": Case(
        agent(schedules=[schedule(overlap="queue")]), ("spec.schedules[0].overlap", '"queue"')
    ),
    "schedule-names-twice": Case(
        agent(schedules=[schedule(), schedule(prompt="again")]), ("spec.schedules[1]", "Duplicate value")
    ),
    "mtls-and-api-key": Case(
        connection(
            tls={"clientCertSecretRef": {"name": "temporal-creds"}},
            apiKeySecretRef={"name": "key", "key": "api-key"},
        ),
        ("spec.apiKeySecretRef", "exclude each other"),
    ),
    "connection-without-address": Case(
        {**connection(), "spec": {"namespace": "default"}}, ("spec.address", "Required value")
    ),
    "run-without-prompt": Case(
        {**run(), "spec": {"agentRef": {"name": "bad"}}}, ("spec.prompt", "Required value")
    ),
    "run-bad-timeout": Case(run(timeout="soon"), ("spec.timeout", "soon")),
    "run-changed-prompt": Case(
        run("fixed", prompt="something else"), ("AgentRun spec is immutable",), before=run("fixed")
    ),
}


@pytest.fixture(scope="module")
def validation_namespace(operator_release: Release, kubectl: Kubectl) -> Iterator[str]:
    """One namespace for every case: rejected objects leave nothing behind, updates use their own names."""
    name = create_namespace(kubectl)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_manifest_is_rejected_naming_the_field(
    case: Case, kubectl: Kubectl, validation_namespace: str
) -> None:
    namespace = validation_namespace
    if case.before is not None:
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case.before))
    result = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(case.manifest))

    assert result.returncode != 0, f"accepted: {result.stdout}"
    for phrase in case.expected:
        assert phrase in result.stderr, result.stderr
    stored = kubectl.get(case.manifest["kind"].lower(), case.manifest["metadata"]["name"], namespace)
    if case.before is None:
        assert stored is None, stored  # a rejected create leaves no object
    else:
        assert stored is not None and _same_spec(stored["spec"], case.before["spec"]), stored


def _same_spec(stored: Json, applied: Json) -> bool:
    """Whether every field of `applied` is stored unchanged (the apiserver adds defaults)."""
    for key, value in applied.items():
        if isinstance(value, dict):
            if not _same_spec(stored.get(key) or {}, value):
                return False
        elif stored.get(key) != value:
            return False
    return True
