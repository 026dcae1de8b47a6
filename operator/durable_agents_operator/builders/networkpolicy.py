"""The NetworkPolicy of an agent's worker pods: what they must reach, derived from the spec, and nothing else.

Egress is opened by port, not by address: a policy cannot name a host (model providers and MCP servers
are DNS names whose addresses change), so each rule allows one TCP port the agent's config shows it needs:
  - DNS (53, UDP and TCP), to resolve everything else;
  - the Temporal frontend's port (the resolved connection's address);
  - the port of every MCP server URL, of `spec.model.baseUrl` and of the OTLP endpoint;
  - the operator's default worker egress (the chart's `networkPolicy.workerEgress`, 443 for model
    providers by default) and the agent's own `spec.template.egress` rules, as written.
Ingress: the health port (kubelet probes) and the metrics port (Prometheus), from anywhere.

Only a CNI that enforces NetworkPolicy makes any of this mean something; the operator makes these policies
when its setting `workerNetworkPolicy` is on (the chart's `networkPolicy.enabled`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from durable_agents_api.config import RuntimeConfig
from durable_agents_operator.naming import network_policy_name

from .metadata import object_meta, selector_labels

__all__ = ["WorkerPolicy", "build_network_policy", "needed_ports"]

_DNS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True)
class WorkerPolicy:
    """The operator's part of every worker policy: egress rules all workers get (NetworkPolicyEgressRule
    objects, as the chart's `networkPolicy.workerEgress` gives them)."""

    egress: tuple[dict[str, Any], ...] = ()


def needed_ports(config: RuntimeConfig) -> tuple[int, ...]:
    """The TCP ports the worker connects to, sorted: Temporal's, each MCP server's, the model server's
    and the OTLP endpoint's."""
    urls = [server.url for server in config.agent.mcp_servers or []]
    urls += [u for u in (config.model.base_url, config.observability.otlp_endpoint) if u]
    ports = {_url_port(url) for url in urls}
    ports.add(_address_port(config.temporal.address))
    return tuple(sorted(ports))


def build_network_policy(
    *,
    agent: str,
    namespace: str,
    config: RuntimeConfig,
    owner: dict[str, Any],
    policy: WorkerPolicy,
    agent_egress: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A NetworkPolicy `<agent>-worker` selecting the agent's worker pods (every version of them)."""
    ingress_ports = [{"port": "health", "protocol": "TCP"}]
    if config.observability.prometheus_port:
        ingress_ports.append({"port": "metrics", "protocol": "TCP"})
    egress: list[dict[str, Any]] = [
        {"ports": list(_DNS)},
        {"ports": [{"port": port, "protocol": "TCP"} for port in needed_ports(config)]},
        *policy.egress,
        *agent_egress,
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(
            name=network_policy_name(agent), namespace=namespace, agent=agent, owner=owner
        ),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(agent)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": ingress_ports}],
            "egress": egress,
        },
    }


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or _DEFAULT_PORT[parts.scheme]


def _address_port(address: str) -> int:
    """The port of a `host:port` (or `[v6]:port`) Temporal address; 7233 when it names none."""
    host_port = address.rsplit("://", 1)[-1]
    _, sep, port = host_port.rpartition(":")
    if sep and port.isdigit() and not host_port.endswith("]"):
        return int(port)
    return 7233
