"""The Service exposing an agent's worker metrics (Prometheus) on the port named `metrics`."""

from __future__ import annotations

from typing import Any

from durable_agents_api.config import RuntimeConfig
from durable_agents_operator.naming import service_name

from .metadata import object_meta, selector_labels

__all__ = ["build_service"]


def build_service(
    *, agent: str, namespace: str, config: RuntimeConfig, owner: dict[str, Any]
) -> dict[str, Any] | None:
    """A ClusterIP Service `<agent>-metrics` selecting the workers, or None when metrics are off."""
    port = config.observability.prometheus_port
    if not port:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(name=service_name(agent), namespace=namespace, agent=agent, owner=owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(agent),
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }
