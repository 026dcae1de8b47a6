"""`KubeCatalog`, the gateway's agents in a cluster, against a stand-in for the apiserver's list (the real
apiserver serves the chart's gateway in tests/e2e/test_gateway_chart.py): which DurableAgents it serves,
how often it asks, and what a request gets while the apiserver fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable_agents_api.resources import API_VERSION
from durable_agents_operator.errors import KubeForbidden, KubeUnavailable
from durable_agents_operator.gateway_catalog import API_KEY_ENV, KubeCatalog, default_temporal_spec
from durable_agents_operator.settings import OperatorSettings
from durable_agents_runtime.gateway import AgentEntry, KnownHealth
from durable_agents_runtime.gateway.app import Problem

pytestmark = pytest.mark.anyio


def agent(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {"agent": {"name": f"{name}_agent", "model": "test"}, **spec}
    metadata = {"namespace": namespace, "name": name}
    return {"apiVersion": API_VERSION, "kind": "DurableAgent", "metadata": metadata, "spec": body}


class Lister:
    """Lists what `objects` holds, by namespace (None: all); `error` makes every list fail."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)
        self.calls: list[str | None] = []
        self.error: Exception | None = None

    async def list(
        self, api_version: str, kind: str, namespace: str | None, **_: Any
    ) -> list[dict[str, Any]]:
        assert (api_version, kind) == (API_VERSION, "DurableAgent")
        self.calls.append(namespace)
        await asyncio.sleep(0.01)
        if self.error is not None:
            raise self.error
        return [o for o in self.objects if namespace in (None, o["metadata"]["namespace"])]


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_serves_every_agent_on_the_default_connection_with_its_task_queue_and_ready_condition() -> None:
    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "WorkersPolling"}]}
    down = {"conditions": [{"type": "Ready", "status": "False", "reason": "NoActivePollers",
                            "message": "no worker polls team-b.b"}]}  # fmt: skip
    lister = Lister(
        {**agent("team-b", "b"), "status": down},
        {**agent("team-a", "a", temporal={"taskQueue": "custom"}), "status": ready},
        agent("team-a", "elsewhere", temporal={"connectionRef": {"name": "cloud"}}),
        agent("team-a", "broken", replicas="many"),
    )
    entries = await KubeCatalog(lister).agents()
    assert list(entries) == [
        AgentEntry("a", "team-a", "custom", "a_agent", operator_status="Ready"),
        AgentEntry(
            "b", "team-b", "team-b.b", "b_agent", operator_status="NoActivePollers: no worker polls team-b.b"
        ),
    ]
    assert lister.calls == [None]  # one cluster-wide list


async def test_health_comes_from_the_status_the_operator_wrote_once_it_holds_a_temporal_reading() -> None:
    def conditions(ready: str, reachable: str, message: str = "") -> list[dict[str, str]]:
        return [
            {"type": "Ready", "status": ready, "reason": "R", "message": message},
            {"type": "TemporalReachable", "status": reachable, "reason": "X"},
        ]

    read = {"workers": 2, "runs": {"running": 3, "failed": 1, "completed": 9}}
    lister = Lister(
        {**agent("ns", "serving"), "status": {**read, "conditions": conditions("True", "True")}},
        {
            **agent("ns", "rolling"),
            "status": {**read, "workers": 0, "conditions": conditions("False", "True", "0 of 1 available")},
        },
        {**agent("ns", "unchecked"), "status": {"conditions": conditions("False", "Unknown")}},
        agent("ns", "new"),
    )
    health = {e.name: e.health for e in await KubeCatalog(lister).agents()}
    assert health == {
        "serving": KnownHealth(ready=True, workers=2, running=3, failed=1, message=None),
        "rolling": KnownHealth(ready=False, workers=0, running=3, failed=1, message="0 of 1 available"),
        # No Temporal reading in the status yet: the gateway reads Temporal for these.
        "unchecked": None,
        "new": None,
    }


async def test_lists_only_the_watched_namespaces() -> None:
    lister = Lister(agent("team-a", "a"), agent("team-b", "b"), agent("team-c", "c"))
    entries = await KubeCatalog(lister, ["team-a", "team-c"]).agents()
    assert [e.name for e in entries] == ["a", "c"]
    assert lister.calls == ["team-a", "team-c"]


async def test_lists_once_per_interval_and_concurrent_requests_share_one_list() -> None:
    clock = Clock()
    lister = Lister(agent("team-a", "a"))
    catalog = KubeCatalog(lister, cache_seconds=5, clock=clock)
    await asyncio.gather(*(catalog.agents() for _ in range(20)))
    assert lister.calls == [None]
    clock.now += 4
    lister.objects.append(agent("team-a", "new"))
    assert [e.name for e in await catalog.agents()] == ["a"]
    clock.now += 2
    assert [e.name for e in await catalog.agents()] == ["a", "new"]
    assert lister.calls == [None, None]


async def test_an_apiserver_failure_serves_the_last_list_for_a_while_then_answers_503() -> None:
    clock = Clock()
    lister = Lister(agent("team-a", "a"))
    catalog = KubeCatalog(lister, cache_seconds=5, stale_seconds=60, clock=clock)
    assert [e.name for e in await catalog.agents()] == ["a"]
    lister.error = KubeUnavailable("apiserver 10.0.0.1:6443 refused the connection")
    clock.now += 30
    assert [e.name for e in await catalog.agents()] == ["a"]
    clock.now += 40
    with pytest.raises(Problem) as refused:
        await catalog.agents()
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert "10.0.0.1" not in refused.value.message and "try again" in refused.value.message
    lister.error = None
    assert [e.name for e in await catalog.agents()] == ["a"]


async def test_a_forbidden_list_says_which_grant_the_gateway_lacks() -> None:
    lister = Lister()
    lister.error = KubeForbidden("durableagents is forbidden: User system:serviceaccount:x:y cannot list")
    with pytest.raises(Problem) as refused:
        await KubeCatalog(lister).agents()
    assert refused.value.status == 503
    assert "list on durableagents.durable-agents.dev" in refused.value.message
    assert "system:serviceaccount" not in refused.value.message


def test_the_default_connection_is_the_operators_with_the_key_read_by_name() -> None:
    settings = OperatorSettings.model_validate(
        {"temporal_address": "t.example:7233", "temporal_namespace": "prod", "temporal_api_key": "k3y",
         "temporal_tls_ca_file": "/etc/ca.pem", "temporal_tls_server_name": "t.example"}
    )  # fmt: skip
    spec = default_temporal_spec(settings)
    assert (spec.address, spec.namespace, spec.api_key_env) == ("t.example:7233", "prod", API_KEY_ENV)
    assert spec.tls is not None and (spec.tls.ca_file, spec.tls.server_name) == ("/etc/ca.pem", "t.example")
    assert "k3y" not in spec.model_dump_json()
    plain = default_temporal_spec(OperatorSettings.model_validate({"temporal_address": "t:7233"}))
    assert (plain.tls, plain.api_key_env) == (None, None)
