"""Golden files of everything a DurableAgent owns, per builder and per kind of agent.

A golden file is the exact YAML the builders produce. After an intended change, regenerate them with
`UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_builders.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from durable_agents_api.resources import DurableAgent, TemporalConnection
from durable_agents_operator.builders import (
    build_configmap,
    build_deployment,
    build_pdb,
    build_service,
    config_hash,
    owner_reference,
    resolve_temporal,
)
from durable_agents_operator.builders.agent_objects import build_agent_objects, runtime_config
from durable_agents_operator.connection_params import ConnectionParams

GOLDEN = Path(__file__).parent / "golden" / "builders"
IMAGE = "ghcr.io/durable-agents/runtime:0.1.0"
DEFAULT = ConnectionParams(address="temporal-frontend.temporal:7233", namespace="default")
KUBERNETES_VERSION = "1.36.0"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the rendered runtime.json) as literal blocks, so a diff reads like the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def assert_golden(name: str, value: Any) -> None:
    """Compare `value` with golden/builders/<name>.yaml; write the file instead when UPDATE_GOLDEN=1."""
    path = GOLDEN / f"{name}.yaml"
    documents = value if isinstance(value, list) else [value]
    text = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run with UPDATE_GOLDEN=1 to create it, then review it")
    assert text == path.read_text(), f"{path} differs: if the change is intended, rerun with UPDATE_GOLDEN=1"


def agent(spec: dict[str, Any], *, name: str = "hello", namespace: str = "team-a") -> DurableAgent:
    return DurableAgent.model_validate(
        {
            "apiVersion": "durable-agents.dev/v1alpha1",
            "kind": "DurableAgent",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": spec,
        }
    )


def connection(spec: dict[str, Any], *, name: str = "cloud") -> TemporalConnection:
    return TemporalConnection.model_validate(
        {"metadata": {"name": name, "namespace": "team-a", "uid": "uid-conn"}, "spec": spec}
    )


HELLO = {
    "agent": {
        "name": "hello",
        "model": "test",
        "instructions": "You are a concise travel assistant.",
        "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
    },
    "activities": {"default": {"startToCloseTimeout": "30s", "retry": {"maximumAttempts": 5}}},
}

FULL = {
    "replicas": 3,
    "agent": {
        "name": "support",
        "model": "openai-chat:gpt-4.1-mini",
        "mcpServers": [
            {
                "id": "tickets",
                "url": "https://mcp.example.com/mcp",
                "headersFromEnv": {"Authorization": "MCP_TOKEN"},
            }
        ],
    },
    "temporal": {"connectionRef": {"name": "mtls"}, "taskQueue": "support-q"},
    "activities": {"toolsets": {"tickets": {"heartbeatTimeout": "5s"}}},
    "worker": {"gracefulShutdownTimeout": "1m", "maxConcurrentActivities": 20},
    "model": {
        "baseUrl": "https://llm.example.com/v1",
        "credentials": [{"name": "OPENAI_API_KEY", "secretKeyRef": {"name": "openai", "key": "api-key"}}],
    },
    "observability": {"logfire": {"tokenSecretRef": {"name": "logfire", "key": "token"}, "metrics": True}},
    "template": {
        "image": "registry.example.com/support-worker:2.1",
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "env": [{"name": "MCP_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mcp", "key": "token"}}}],
        "nodeSelector": {"pool": "agents"},
        "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
        "serviceAccountName": "support-worker",
        "priorityClassName": "agents",
        "labels": {"team": "support", "app.kubernetes.io/name": "not-allowed-to-win"},
        "annotations": {"prometheus.io/scrape": "true"},
        "terminationGracePeriodSeconds": 120,
    },
}
MTLS = connection(
    {
        "address": "temporal.internal:7233",
        "namespace": "agents",
        "tls": {
            "serverName": "temporal.internal",
            "caSecretRef": {"name": "temporal-ca", "key": "ca.crt"},
            "clientCertSecretRef": {"name": "temporal-client"},
        },
    },
    name="mtls",
)

CODE_PAUSED = {
    "paused": True,
    "replicas": 2,
    "agent": {
        "name": "researcher",
        "entrypoint": "research.agent:agent",
        "image": "example.com/research:1.0",
    },
    "temporal": {"connectionRef": {"name": "cloud"}},
    "observability": {"prometheusPort": 0},
}
CLOUD = connection(
    {
        "address": "agents.a1b2c.tmprl.cloud:7233",
        "namespace": "agents.a1b2c",
        "tls": {},
        "apiKeySecretRef": {"name": "temporal-cloud", "key": "api-key"},
    }
)


def objects(da: DurableAgent, conn: TemporalConnection | None = None) -> list[dict[str, Any]]:
    temporal = resolve_temporal(da, connection=conn, default=DEFAULT)
    return list(build_agent_objects(da, temporal=temporal, default_image=IMAGE).manifests)


def test_declarative_agent_on_the_default_connection_gets_configmap_deployment_and_metrics_service() -> None:
    built = objects(agent(HELLO))
    assert [m["kind"] for m in built] == ["ConfigMap", "Deployment", "Service"]
    assert_golden("hello", built)


def test_three_replica_agent_with_mtls_credentials_and_pod_overrides() -> None:
    built = objects(agent(FULL, name="support"), MTLS)
    assert [m["kind"] for m in built] == ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert_golden("full-mtls", built)


def test_paused_code_agent_on_an_api_key_connection_without_metrics() -> None:
    built = objects(agent(CODE_PAUSED, name="researcher"), CLOUD)
    assert [m["kind"] for m in built] == ["ConfigMap", "Deployment"]
    assert_golden("code-paused-apikey", built)


@pytest.mark.parametrize(
    ("spec", "conn", "name"),
    [(HELLO, None, "hello"), (FULL, MTLS, "support"), (CODE_PAUSED, CLOUD, "researcher")],
    ids=["hello", "full", "code-paused"],
)
def test_every_built_object_is_valid_for_the_kubernetes_api(
    spec: dict[str, Any], conn: TemporalConnection | None, name: str
) -> None:
    for manifest in objects(agent(spec, name=name), conn):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_each_builder_alone_matches_its_golden_file() -> None:
    da = agent(FULL, name="support")
    temporal = resolve_temporal(da, connection=MTLS, default=DEFAULT)
    config = runtime_config(da, temporal)
    owner = owner_reference(api_version=da.api_version, kind=da.kind, name="support", uid="uid-support")
    assert_golden(
        "configmap", build_configmap(agent="support", namespace="team-a", config=config, owner=owner)
    )
    assert_golden(
        "deployment",
        build_deployment(
            agent=da,
            config=config,
            config_hash=config_hash(config),
            temporal=temporal,
            owner=owner,
            default_image=IMAGE,
        ),
    )
    assert_golden("service", build_service(agent="support", namespace="team-a", config=config, owner=owner))
    assert_golden("pdb", build_pdb(agent="support", namespace="team-a", replicas=3, owner=owner))
    assert_golden(
        "temporal-mtls",
        {
            "spec": temporal.spec.to_api(),
            "env": list(temporal.env),
            "volumes": list(temporal.volumes),
            "volumeMounts": list(temporal.volume_mounts),
        },
    )
