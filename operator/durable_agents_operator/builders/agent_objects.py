"""Everything one DurableAgent owns, built together: runtime config, ConfigMap, Deployment, Service, PDB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import DurableAgent
from durable_agents_operator.errors import InvalidSpec
from durable_agents_operator.naming import (
    MAX_AGENT_NAME,
    configmap_name,
    deployment_name,
    pdb_name,
    service_name,
    temporal_secret_name,
)
from durable_agents_operator.object_identity import ObjectKey

from .configmap import build_configmap, config_hash
from .deployment import build_deployment, desired_replicas
from .metadata import owner_reference
from .pdb import build_pdb
from .service import build_service
from .temporal import WorkerTemporal, build_temporal_secret

__all__ = ["AgentObjects", "build_agent_objects", "child_keys", "runtime_config"]


@dataclass(frozen=True)
class AgentObjects:
    """The rendered runtime config and every manifest the agent should own right now."""

    config: RuntimeConfig
    config_hash: str
    manifests: tuple[dict[str, Any], ...]
    observed_keys: tuple[ObjectKey, ...] = ()
    """What the planner observes (and may delete): `child_keys`, plus the default-connection Secret when
    one is desired (never deleted by the planner; it goes with the agent through its owner reference)."""


def runtime_config(agent: DurableAgent, temporal: WorkerTemporal) -> RuntimeConfig:
    """The worker's config, with contract violations reported against the DurableAgent's field paths."""
    name = agent.metadata.name or ""
    if len(name) > MAX_AGENT_NAME:
        raise InvalidSpec(
            f"metadata.name is {len(name)} characters; DurableAgent names become label values, which "
            f"Kubernetes limits to {MAX_AGENT_NAME}: use a shorter name"
        )
    try:
        return agent.spec.runtime_config(temporal=temporal.spec)
    except ValidationError as exc:
        raise InvalidSpec(f"invalid DurableAgent spec:\n{format_validation(exc, prefix='spec')}") from None


def build_agent_objects(agent: DurableAgent, *, temporal: WorkerTemporal, default_image: str) -> AgentObjects:
    """Build the agent's objects; raises `InvalidSpec` with the field to fix when the spec cannot work."""
    name, namespace, uid = agent.metadata.name, agent.metadata.namespace, agent.metadata.uid
    if not (name and namespace and uid):
        raise ValueError("build_agent_objects needs a DurableAgent with name, namespace and uid")
    config = runtime_config(agent, temporal)
    digest = config_hash(config)
    owner = owner_reference(api_version=agent.api_version, kind=agent.kind, name=name, uid=uid)
    candidates = (
        build_configmap(agent=name, namespace=namespace, config=config, owner=owner),
        build_deployment(
            agent=agent,
            config=config,
            config_hash=digest,
            temporal=temporal,
            owner=owner,
            default_image=default_image,
        ),
        build_service(agent=name, namespace=namespace, config=config, owner=owner),
        build_pdb(agent=name, namespace=namespace, replicas=desired_replicas(agent), owner=owner),
        build_temporal_secret(agent=name, namespace=namespace, temporal=temporal, owner=owner),
    )
    manifests = tuple(m for m in candidates if m is not None)
    return AgentObjects(
        config=config,
        config_hash=digest,
        manifests=manifests,
        observed_keys=child_keys(
            name, namespace, temporal_secret=any(m["kind"] == "Secret" for m in manifests)
        ),
    )


def child_keys(name: str, namespace: str, *, temporal_secret: bool = False) -> tuple[ObjectKey, ...]:
    """(apiVersion, kind, namespace, name) of every object an agent may own, desired now or not; with
    `temporal_secret`, also the Secret carrying the default connection's credentials."""
    secret = (ObjectKey("v1", "Secret", namespace, temporal_secret_name(name)),) if temporal_secret else ()
    return (
        ObjectKey("v1", "ConfigMap", namespace, configmap_name(name)),
        ObjectKey("apps/v1", "Deployment", namespace, deployment_name(name)),
        ObjectKey("v1", "Service", namespace, service_name(name)),
        ObjectKey("policy/v1", "PodDisruptionBudget", namespace, pdb_name(name)),
        *secret,
    )
