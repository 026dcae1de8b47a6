"""Everything one DurableAgent owns, built together: runtime config, ConfigMap, Deployment, Service, PDB,
and the workers' NetworkPolicy when the operator makes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from durable_agents_api.config import RuntimeConfig, VersioningSpec
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import DurableAgent
from durable_agents_operator.errors import InvalidSpec
from durable_agents_operator.naming import (
    MAX_AGENT_NAME,
    configmap_name,
    deployment_name,
    network_policy_name,
    pdb_name,
    service_name,
    temporal_secret_name,
)
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_runtime.versioning import build_id

from .configmap import build_configmap, config_hash
from .deployment import build_deployment, desired_replicas
from .metadata import owner_reference
from .networkpolicy import WorkerPolicy, build_network_policy
from .pdb import build_pdb
from .service import build_service
from .temporal import WorkerTemporal, build_temporal_secret

__all__ = [
    "AgentObjects",
    "VersionObjects",
    "build_agent_objects",
    "child_keys",
    "runtime_config",
    "versioned_config",
]


@dataclass(frozen=True)
class AgentObjects:
    """The rendered runtime config and every manifest the agent should own right now.

    With `spec.versioning.enabled`, `manifests` are the objects all versions share (Service, PDB) and
    `version` holds the spec's version: its build id, ConfigMap and Deployment, which the rollout
    (`version_planner`) applies next to the Deployments of older versions."""

    config: RuntimeConfig
    config_hash: str
    manifests: tuple[dict[str, Any], ...]
    version: VersionObjects | None = None
    observed_keys: tuple[ObjectKey, ...] = ()
    """What the planner observes (and may delete): `child_keys`, plus the default-connection Secret when
    one is desired (never deleted by the planner; it goes with the agent through its owner reference)."""


@dataclass(frozen=True)
class VersionObjects:
    """The spec's version of a versioned agent."""

    build_id: str
    configmap: dict[str, Any]
    deployment: dict[str, Any]


def versioned_config(agent: DurableAgent, config: RuntimeConfig, image: str) -> tuple[RuntimeConfig, str]:
    """`config` as a version of the agent's Worker Deployment, and its build id.

    The build id is fixed in the config (the worker does not derive its own: the operator's and the
    image's releases may differ). The replay gate runs in the workers only for `AutoUpgrade`, whose open
    runs move to the new code; `Pinned` runs finish on their own version, so nothing they replay can
    break (as `durable-agents dev` decides)."""
    spec = agent.spec.versioning
    identity = config.model_copy(update={"versioning": VersioningSpec(behavior=spec.behavior)})
    build = build_id(identity, image)
    gate = spec.replay_histories if spec.behavior == "AutoUpgrade" else 0
    versioning = VersioningSpec(behavior=spec.behavior, build_id=build, replay_histories=gate)
    return config.model_copy(update={"versioning": versioning}), build


def runtime_config(agent: DurableAgent, temporal: WorkerTemporal) -> RuntimeConfig:
    """The worker's config, with contract violations reported against the DurableAgent's field paths."""
    name = agent.metadata.name or ""
    if len(name) > MAX_AGENT_NAME:
        raise InvalidSpec(
            f"metadata.name is {len(name)} characters; DurableAgent names become label values, which "
            f"Kubernetes limits to {MAX_AGENT_NAME}: use a shorter name"
        )
    try:
        return agent.spec.runtime_config(
            temporal=temporal.spec, namespace=agent.metadata.namespace or "default"
        )
    except ValidationError as exc:
        raise InvalidSpec(f"invalid DurableAgent spec:\n{format_validation(exc, prefix='spec')}") from None


def build_agent_objects(
    agent: DurableAgent,
    *,
    temporal: WorkerTemporal,
    default_image: str,
    worker_policy: WorkerPolicy | None = None,
) -> AgentObjects:
    """Build the agent's objects; raises `InvalidSpec` with the field to fix when the spec cannot work.

    With a `worker_policy` the workers get a NetworkPolicy (and the planner observes it)."""
    name, namespace, uid = agent.metadata.name, agent.metadata.namespace, agent.metadata.uid
    if not (name and namespace and uid):
        raise ValueError("build_agent_objects needs a DurableAgent with name, namespace and uid")
    config = runtime_config(agent, temporal)
    owner = owner_reference(api_version=agent.api_version, kind=agent.kind, name=name, uid=uid)
    if agent.spec.versioning.enabled:
        return _versioned_objects(
            agent, config, temporal=temporal, owner=owner, default_image=default_image, policy=worker_policy
        )
    digest = config_hash(config)
    worker = (
        build_configmap(agent=name, namespace=namespace, config=config, owner=owner),
        build_deployment(
            agent=agent,
            config=config,
            config_hash=digest,
            temporal=temporal,
            owner=owner,
            default_image=default_image,
        ),
    )
    shared = _shared_objects(agent, config, temporal=temporal, owner=owner, policy=worker_policy)
    manifests = (*worker, *shared)
    return AgentObjects(
        config=config,
        config_hash=digest,
        manifests=manifests,
        observed_keys=_observed(name, namespace, manifests, policy=worker_policy),
    )


def _shared_objects(
    agent: DurableAgent,
    config: RuntimeConfig,
    *,
    temporal: WorkerTemporal,
    owner: dict[str, Any],
    policy: WorkerPolicy | None,
) -> tuple[dict[str, Any], ...]:
    """What every config of the agent shares, versioned or not: the Service, the PDB, the
    default-connection Secret and the workers' NetworkPolicy (each when wanted)."""
    name, namespace = agent.metadata.name or "", agent.metadata.namespace or "default"
    candidates = (
        build_service(agent=name, namespace=namespace, config=config, owner=owner),
        build_pdb(agent=name, namespace=namespace, replicas=desired_replicas(agent), owner=owner),
        build_temporal_secret(agent=name, namespace=namespace, temporal=temporal, owner=owner),
        None
        if policy is None
        else build_network_policy(
            agent=name,
            namespace=namespace,
            config=config,
            owner=owner,
            policy=policy,
            agent_egress=agent.spec.template.egress,
        ),
    )
    return tuple(m for m in candidates if m is not None)


def _observed(
    name: str, namespace: str, manifests: tuple[dict[str, Any], ...], *, policy: WorkerPolicy | None
) -> tuple[ObjectKey, ...]:
    secret = any(m["kind"] == "Secret" for m in manifests)
    return child_keys(name, namespace, temporal_secret=secret, network_policy=policy is not None)


def _versioned_objects(
    agent: DurableAgent,
    config: RuntimeConfig,
    *,
    temporal: WorkerTemporal,
    owner: dict[str, Any],
    default_image: str,
    policy: WorkerPolicy | None,
) -> AgentObjects:
    name, namespace = agent.metadata.name or "", agent.metadata.namespace or "default"
    image = agent.spec.agent.image or agent.spec.template.image or default_image
    config, build = versioned_config(agent, config, image)
    digest = config_hash(config)
    deployment = build_deployment(
        agent=agent,
        config=config,
        config_hash=digest,
        temporal=temporal,
        owner=owner,
        default_image=default_image,
        build_id=build,
    )
    configmap = build_configmap(agent=name, namespace=namespace, config=config, owner=owner, build_id=build)
    manifests = _shared_objects(agent, config, temporal=temporal, owner=owner, policy=policy)
    return AgentObjects(
        config=config,
        config_hash=digest,
        manifests=manifests,
        version=VersionObjects(build, configmap, deployment),
        observed_keys=_observed(name, namespace, manifests, policy=policy),
    )


def child_keys(
    name: str, namespace: str, *, temporal_secret: bool = False, network_policy: bool = False
) -> tuple[ObjectKey, ...]:
    """(apiVersion, kind, namespace, name) of every object an agent may own, desired now or not; with
    `temporal_secret`, also the Secret carrying the default connection's credentials, and with
    `network_policy` the workers' NetworkPolicy (observed only by an operator that makes them: one
    without the setting has no right to read them; a policy left from before stays until the agent goes)."""
    optional = (
        (ObjectKey("v1", "Secret", namespace, temporal_secret_name(name)), temporal_secret),
        (
            ObjectKey("networking.k8s.io/v1", "NetworkPolicy", namespace, network_policy_name(name)),
            network_policy,
        ),
    )
    return (
        ObjectKey("v1", "ConfigMap", namespace, configmap_name(name)),
        ObjectKey("apps/v1", "Deployment", namespace, deployment_name(name)),
        ObjectKey("v1", "Service", namespace, service_name(name)),
        ObjectKey("policy/v1", "PodDisruptionBudget", namespace, pdb_name(name)),
        *(key for key, wanted in optional if wanted),
    )
