"""The Deployment of an agent's worker pods (`durable-agents worker`)."""

from __future__ import annotations

import math
from typing import Any

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import (
    CONFIG_FILE_KEY,
    CONFIG_MOUNT_DIR,
    ENV_BIND_HOST,
    ENV_CONFIG,
    LIVENESS_PATH,
    READINESS_PATH,
)
from durable_agents_api.resources import DurableAgent
from durable_agents_operator.autoscaling import autoscaled_replicas
from durable_agents_operator.errors import InvalidSpec
from durable_agents_operator.naming import (
    ANNOTATION_CONFIG_HASH,
    LABEL_BUILD_ID,
    configmap_name,
    deployment_name,
    version_configmap_name,
    version_deployment_name,
)

from .metadata import labels, object_meta, selector_labels
from .temporal import WorkerTemporal

__all__ = [
    "CONTAINER_NAME",
    "DEFAULT_RESOURCES",
    "GRACE_MARGIN_SECONDS",
    "RUN_AS_USER",
    "build_deployment",
    "desired_replicas",
    "termination_grace_period",
]

CONTAINER_NAME = "worker"
RUN_AS_USER = 10001
GRACE_MARGIN_SECONDS = 15
"""Seconds the pod gets beyond the worker's drain, for process exit and the last status report."""
LOGFIRE_TOKEN_ENV = "LOGFIRE_TOKEN"
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    # A worker idles at about 150 MiB (Python, pydantic-ai, the Temporal SDK) and grows with concurrent
    # runs; the limit keeps one runaway agent from taking the node's memory. No CPU limit: throttling
    # a worker delays its heartbeats and long polls, which looks like a dead worker.
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
"""Worker container resources; `spec.template.resources` overrides them per key (e.g. only the limit)."""
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def desired_replicas(agent: DurableAgent) -> int:
    """Worker pods the agent should have: 0 while paused; with autoscaling, what the autoscaler last
    recorded in `status.autoscaling` (`minReplicas` before its first decision); otherwise `spec.replicas`.
    """
    if agent.spec.paused:
        return 0
    autoscaling = agent.spec.autoscaling
    if autoscaling is not None and autoscaling.enabled:
        return autoscaled_replicas(autoscaling, agent.status.autoscaling if agent.status else None)
    return agent.spec.replicas


def termination_grace_period(agent: DurableAgent) -> int:
    """The pod's grace period: the worker's drain time plus a margin, or the template's larger value."""
    required = math.ceil(agent.spec.worker.graceful_shutdown_timeout.total_seconds()) + GRACE_MARGIN_SECONDS
    configured = agent.spec.template.termination_grace_period_seconds
    if configured is None:
        return required
    if configured < required:
        raise InvalidSpec(
            f"spec.template.terminationGracePeriodSeconds is {configured}, but the worker drains for up to "
            f"spec.worker.gracefulShutdownTimeout and needs {GRACE_MARGIN_SECONDS}s more: set it to at least "
            f"{required}, or lower gracefulShutdownTimeout"
        )
    return configured


def build_deployment(
    *,
    agent: DurableAgent,
    config: RuntimeConfig,
    config_hash: str,
    temporal: WorkerTemporal,
    owner: dict[str, Any],
    default_image: str,
    build_id: str | None = None,
) -> dict[str, Any]:
    """The worker Deployment: restricted security context, config mounted, credentials from Secrets only.

    With `build_id` (`spec.versioning.enabled`), the Deployment of that version: its own name, config and
    build-id label in the selector, so several versions run side by side."""
    name = _name(agent)
    version = {LABEL_BUILD_ID: build_id} if build_id is not None else {}
    config_map = version_configmap_name(name, build_id) if build_id is not None else configmap_name(name)
    namespace = agent.metadata.namespace or "default"
    template = agent.spec.template
    health_port = config.worker.health_port
    if health_port == 0:
        raise InvalidSpec(
            "spec.worker.healthPort is 0; pods need a fixed port for their probes: set e.g. 8080"
        )
    metrics_port = config.observability.prometheus_port

    ports: list[dict[str, Any]] = [{"name": "health", "containerPort": health_port, "protocol": "TCP"}]
    if metrics_port:
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": agent.spec.agent.image or template.image or default_image,
        "command": ["durable-agents", "worker"],
        "env": _env(agent, temporal),
        "ports": ports,
        "startupProbe": _probe(LIVENESS_PATH, period=2, failures=60),
        "livenessProbe": _probe(LIVENESS_PATH, period=10, failures=3),
        "readinessProbe": _probe(READINESS_PATH, period=5, failures=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *temporal.volume_mounts,
        ],
    }
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    container["resources"] = _resources(template.resources.to_api() if template.resources else {})

    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": termination_grace_period(agent),
        # Workers talk to Temporal and model providers, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": "config", "configMap": {"name": config_map, "items": [_config_item()]}},
            {"name": "tmp", "emptyDir": {}},
            *temporal.volumes,
        ],
    }
    optional = {
        "serviceAccountName": template.service_account_name,
        "priorityClassName": template.priority_class_name,
        "nodeSelector": template.node_selector,
        "affinity": template.affinity if template.affinity is not None else _spread_across_nodes(name),
        "tolerations": template.tolerations or None,
    }
    pod_spec.update({key: value for key, value in optional.items() if value is not None})

    # The operator's labels go last so user labels cannot break the selector.
    pod_labels = {**(template.labels or {}), **labels(name), **version}
    pod_annotations = {**(template.annotations or {}), ANNOTATION_CONFIG_HASH: config_hash}
    object_name = version_deployment_name(name, build_id) if build_id is not None else deployment_name(name)
    metadata = object_meta(name=object_name, namespace=namespace, agent=name, owner=owner)
    metadata["labels"].update(version)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": desired_replicas(agent),
            "selector": {"matchLabels": {**selector_labels(name), **version}},
            # Add a worker before removing one: a rollout never lowers polling capacity.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def _name(agent: DurableAgent) -> str:
    if not agent.metadata.name:
        raise ValueError("build_deployment needs a named DurableAgent")
    return agent.metadata.name


def _resources(overrides: dict[str, Any]) -> dict[str, dict[str, str]]:
    """DEFAULT_RESOURCES with the template's requests and limits laid over them, key by key."""
    resources = {kind: dict(values) for kind, values in DEFAULT_RESOURCES.items()}
    for kind in ("requests", "limits"):
        resources.setdefault(kind, {}).update(overrides.get(kind) or {})
    return resources


def _config_item() -> dict[str, str]:
    return {"key": CONFIG_FILE_KEY, "path": CONFIG_FILE_KEY}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "health"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _field_ref(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(agent: DurableAgent, temporal: WorkerTemporal) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": ENV_CONFIG, "value": f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE_KEY}"},
        _field_ref(ENV_BIND_HOST, "status.podIP"),
        _field_ref("POD_NAME", "metadata.name"),
        _field_ref("POD_NAMESPACE", "metadata.namespace"),
        # The root filesystem is read-only; libraries that cache under $HOME write to the emptyDir.
        {"name": "HOME", "value": "/tmp"},
        *temporal.env,
    ]
    for credential in agent.spec.model.credentials:
        ref = credential.secret_key_ref
        env.append(_secret_env(credential.name, ref.name, ref.key))
    token = agent.spec.observability.logfire.token_secret_ref
    if token is not None:
        env.append(_secret_env(LOGFIRE_TOKEN_ENV, token.name, token.key))
    env.extend(agent.spec.template.env)
    _check_unique(env, operator_set=len(env) - len(agent.spec.template.env))
    return env


def _check_unique(env: list[dict[str, Any]], *, operator_set: int) -> None:
    """Env names must be unique (server-side apply merges the list by name); say which field repeats one."""
    seen: set[str] = set()
    for index, var in enumerate(env):
        name = var.get("name")
        user_index = index - operator_set
        if not isinstance(name, str) or not name:
            raise InvalidSpec(f"spec.template.env[{user_index}] has no name: every EnvVar needs one")
        if name in seen:
            if user_index >= 0:
                raise InvalidSpec(
                    f"spec.template.env[{user_index}] sets {name}, which is already set (by the operator, "
                    "spec.model.credentials or an earlier entry): remove it"
                )
            raise InvalidSpec(
                f"{name} is set twice by spec.model.credentials, spec.observability.logfire.tokenSecretRef "
                "or the TemporalConnection's API key: remove the duplicate credential"
            )
        seen.add(name)


def _spread_across_nodes(name: str) -> dict[str, Any]:
    """Prefer one worker per node, so a node that dies takes one worker with it, not all (a preference:
    more workers than nodes still schedule)."""
    term = {"labelSelector": {"matchLabels": selector_labels(name)}, "topologyKey": HOSTNAME_TOPOLOGY}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }
