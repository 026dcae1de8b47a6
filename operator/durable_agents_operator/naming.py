"""Names that cross a process or API boundary: label and annotation keys, child object names.

Changing any of these orphans objects created by earlier operator versions (or breaks a Deployment's
immutable selector), so treat a change as breaking.
"""

from __future__ import annotations

import hashlib

from durable_agents_api.resources import API_GROUP

__all__ = [
    "ANNOTATION_CONFIG_HASH",
    "ANNOTATION_ROLLBACK",
    "ANNOTATION_SPEC_HASH",
    "COMPONENT",
    "LABEL_AGENT",
    "LABEL_BUILD_ID",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "MANAGED_BY",
    "MAX_AGENT_NAME",
    "TLS_SECRET_CERTIFICATE",
    "TLS_SECRET_PRIVATE_KEY",
    "WORKER_APP_NAME",
    "child_name",
    "configmap_name",
    "deployment_name",
    "pdb_name",
    "service_name",
    "temporal_secret_name",
    "version_configmap_name",
    "version_deployment_name",
]

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_AGENT = f"{API_GROUP}/agent"
LABEL_BUILD_ID = f"{API_GROUP}/build-id"
"""On a versioned worker Deployment, its pods and its ConfigMap: the version's build id (part of the
Deployment's selector, so the Deployments of two versions never claim each other's pods)."""

WORKER_APP_NAME = "durable-agents-worker"
COMPONENT = "worker"
MANAGED_BY = "durable-agents"

ANNOTATION_CONFIG_HASH = f"{API_GROUP}/config-hash"
"""On the worker pod template: sha256 of the rendered runtime config, so a config change rolls the pods."""
ANNOTATION_ROLLBACK = f"{API_GROUP}/rollback"
"""On a versioned DurableAgent, set by the user: `previous` or a build id to make current at once (the
operator removes it once it acted, see `rollback_request`)."""
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"
"""On every object the operator applies: sha256 of what it applied; the planner compares it."""

MAX_AGENT_NAME = 63
"""Agent names become label values, which Kubernetes limits to 63 characters."""

TLS_SECRET_CERTIFICATE = "tls.crt"
"""The certificate's key inside a `kubernetes.io/tls` Secret (`tls.clientCertSecretRef` names one)."""
TLS_SECRET_PRIVATE_KEY = "tls.key"
"""The private key's key inside a `kubernetes.io/tls` Secret."""

_MAX_CHILD_NAME = 63


def child_name(parent: str, suffix: str) -> str:
    """`<parent>-<suffix>`, shortened with a stable hash when it would exceed a DNS label (63 chars).

    Service names must be DNS labels, so every child name stays within 63 characters.
    """
    name = f"{parent}-{suffix}"
    if len(name) <= _MAX_CHILD_NAME:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:8]
    keep = _MAX_CHILD_NAME - len(suffix) - len(digest) - 2
    return f"{parent[:keep].rstrip('-')}-{digest}-{suffix}"


def configmap_name(agent: str) -> str:
    """The ConfigMap holding an agent's runtime config."""
    return child_name(agent, "runtime")


def deployment_name(agent: str) -> str:
    """The Deployment running an agent's workers."""
    return child_name(agent, "worker")


def service_name(agent: str) -> str:
    """The Service exposing the workers' metrics."""
    return child_name(agent, "metrics")


def pdb_name(agent: str) -> str:
    """The PodDisruptionBudget of the workers."""
    return child_name(agent, "worker")


def network_policy_name(agent: str) -> str:
    """The NetworkPolicy of the workers (when the operator makes worker policies)."""
    return child_name(agent, "worker")


def version_deployment_name(agent: str, build_id: str) -> str:
    """The Deployment running the workers of one version of an agent (`spec.versioning.enabled`)."""
    return child_name(agent, f"worker-{build_id}")


def version_configmap_name(agent: str, build_id: str) -> str:
    """The runtime config of one version: kept as long as its Deployment, so a restarted pod of a
    draining version still reads the config its pinned runs started with."""
    return child_name(agent, f"runtime-{build_id}")


def temporal_secret_name(agent: str) -> str:
    """The Secret carrying the operator's default-connection credentials to an agent's workers."""
    return child_name(agent, "temporal")
