"""The workers' NetworkPolicy: made only when the operator is told to, from what the agent's spec needs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from test_builders import CLOUD, DEFAULT, FULL, HELLO, IMAGE, KUBERNETES_VERSION, MTLS, agent

from durable_agents_api.resources import DurableAgent, TemporalConnection
from durable_agents_operator.builders import resolve_temporal, selector_labels
from durable_agents_operator.builders.agent_objects import AgentObjects, build_agent_objects
from durable_agents_operator.builders.networkpolicy import WorkerPolicy
from durable_agents_operator.object_identity import ObjectKey

HTTPS = {"ports": [{"port": 443, "protocol": "TCP"}]}


def built(
    da: DurableAgent, conn: TemporalConnection | None = None, policy: WorkerPolicy | None = None
) -> AgentObjects:
    temporal = resolve_temporal(da, connection=conn, default=DEFAULT)
    return build_agent_objects(da, temporal=temporal, default_image=IMAGE, worker_policy=policy)


def policy_of(objects: AgentObjects) -> dict[str, Any]:
    (policy,) = [m for m in objects.manifests if m["kind"] == "NetworkPolicy"]
    return policy


def tcp_ports(rule: dict[str, Any]) -> list[Any]:
    return [p["port"] for p in rule["ports"] if p["protocol"] == "TCP"]


def test_without_the_operator_setting_there_is_no_policy_and_none_is_observed() -> None:
    objects = built(agent(FULL, name="support"), MTLS)
    assert "NetworkPolicy" not in {m["kind"] for m in objects.manifests}
    assert "NetworkPolicy" not in {k.kind for k in objects.observed_keys}


def test_the_policy_opens_dns_temporal_and_each_endpoint_port_of_the_spec_then_the_operators_egress() -> None:
    spec = {
        **FULL,
        "agent": {
            **FULL["agent"],
            "mcpServers": [
                {"id": "tickets", "url": "https://mcp.example.com/mcp"},
                {"id": "local", "url": "http://tools.team-a.svc:8931/mcp"},
                {"id": "plain", "url": "http://plain.example.com/mcp"},
            ],
        },
        "model": {"baseUrl": "http://vllm.models.svc:8000/v1"},
        "observability": {"otlpEndpoint": "http://otel.observability:4318"},
        "template": {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]},
    }
    objects = built(agent(spec, name="support"), MTLS, WorkerPolicy(egress=(HTTPS,)))
    policy = policy_of(objects)
    assert policy["metadata"]["name"] == "support-worker"
    assert policy["metadata"]["namespace"] == "team-a"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-support"
    assert policy["spec"]["podSelector"] == {"matchLabels": selector_labels("support")}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, needed, operators, agents = policy["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    # Temporal (MTLS's temporal.internal:7233), https 443, 8931, http 80, the model's 8000, OTLP 4318.
    assert tcp_ports(needed) == [80, 443, 4318, 7233, 8000, 8931]
    assert operators == HTTPS
    assert agents == spec["template"]["egress"][0]
    assert ObjectKey("networking.k8s.io/v1", "NetworkPolicy", "team-a", "support-worker") in (
        objects.observed_keys
    )
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)


def test_ingress_is_the_health_port_and_the_metrics_port_only_when_metrics_are_served() -> None:
    with_metrics = policy_of(built(agent(HELLO), policy=WorkerPolicy()))
    assert with_metrics["spec"]["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]}
    ]
    paused_code = {
        "paused": True,
        "agent": {"name": "r", "entrypoint": "research.agent:agent", "image": "example.com/research:1.0"},
        "temporal": {"connectionRef": {"name": "cloud"}},
        "observability": {"prometheusPort": 0},
    }
    without = policy_of(built(agent(paused_code, name="researcher"), CLOUD, WorkerPolicy()))
    assert without["spec"]["ingress"] == [{"ports": [{"port": "health", "protocol": "TCP"}]}]
    # Temporal Cloud's port comes from the connection's address.
    assert tcp_ports(without["spec"]["egress"][1]) == [7233]


@pytest.mark.parametrize(
    ("address", "port"),
    [("temporal-frontend.temporal:7233", 7233), ("10.1.2.3:7300", 7300), ("[fd00::1]:7400", 7400)],
)
def test_the_temporal_port_is_read_from_the_resolved_address(address: str, port: int) -> None:
    conn = TemporalConnection.model_validate(
        {"metadata": {"name": "c", "namespace": "team-a", "uid": "u"}, "spec": {"address": address}}
    )
    spec = {**HELLO, "temporal": {"connectionRef": {"name": "c"}}, "observability": {"prometheusPort": 0}}
    policy = policy_of(built(agent(spec), conn, WorkerPolicy()))
    assert tcp_ports(policy["spec"]["egress"][1]) == [port]


def test_a_versioned_agent_gets_one_policy_for_all_its_versions() -> None:
    spec = {**HELLO, "versioning": {"enabled": True}}
    objects = built(agent(spec), policy=WorkerPolicy())
    assert objects.version is not None
    policy = policy_of(objects)
    # The selector names the agent, not a build id: every version's pods are covered.
    assert policy["spec"]["podSelector"]["matchLabels"] == selector_labels("hello")
    pod_labels = objects.version.deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_labels("hello").items() <= pod_labels.items()
