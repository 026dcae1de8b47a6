"""Secret canaries: a unique value in every credential path, then a search of everything a user can read.

Credential paths, each a Secret holding its own canary:
- the model provider's API key (`spec.model.credentials` → OPENAI_API_KEY; a fake OpenAI-compatible
  server on 127.0.0.1 receives it),
- an MCP server's header (`headersFromEnv`, the env var from a Secret; the runtime tier's MCP server
  receives it),
- the Logfire token (`observability.logfire.tokenSecretRef`, with `send: false`: nothing leaves the
  machine),
- a Temporal API key (`TemporalConnection.apiKeySecretRef`) and an mTLS client key
  (`tls.clientCertSecretRef`), each used by an agent of its own; both fail to connect, so their error
  paths are searched too.

A run goes through the provider and the MCP server. Then the canaries must appear in none of: the
resources (status, annotations, ConfigMaps, Deployments), Events, the operator's and the workers' logs,
the Temporal workflow histories and their listing (search attributes), the worker's Prometheus metrics and
`durable-agents status` output. Positive controls prove the paths were used: the fake provider and the MCP
server saw their canaries. Other pods' identities may not read the Secrets or the worker ConfigMap.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer
from .nodeagent import NodeAgent
from .reliability_figures import record
from .support import API_VERSION, REPO_ROOT, condition, temporal_cli, wait_for, workflows

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def _runtime_module(name: str) -> ModuleType:
    """A helper module of the runtime tier (tests/runtime), loaded by path."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "runtime" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fake_openai = _runtime_module("fake_openai")
mcp_server = _runtime_module("mcp_server")

PATHS = ("provider", "mcp", "logfire", "temporal-api-key", "mtls-key")


@pytest.fixture
def canaries() -> dict[str, str]:
    return {path: f"canary-{path}-{secrets.token_hex(12)}" for path in PATHS}


@pytest.fixture
def provider() -> Iterator[Any]:
    with fake_openai.FakeOpenAI() as server:
        yield server


@pytest.fixture
def mcp(tmp_path: Path) -> Iterator[Any]:
    with mcp_server.start_mcp_server(tmp_path) as server:
        yield server


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def _agent(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DurableAgent", "metadata": {"name": name}, "spec": spec}


def manifests(
    canaries: dict[str, str], provider_url: str, mcp: Any, temporal_address: str
) -> list[dict[str, Any]]:
    fake_pem = f"-----BEGIN PRIVATE KEY-----\n{canaries['mtls-key']}\n-----END PRIVATE KEY-----\n"
    return [
        _secret("provider", {"api-key": canaries["provider"]}),
        _secret("mcp", {"token": canaries["mcp"]}),
        _secret("logfire", {"token": canaries["logfire"]}),
        _secret("temporal-api-key", {"api-key": canaries["temporal-api-key"]}),
        _secret(
            "mtls",
            {
                "tls.crt": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "tls.key": fake_pem,
            },
        ),
        {
            "apiVersion": API_VERSION,
            "kind": "TemporalConnection",
            "metadata": {"name": "with-api-key"},
            "spec": {
                "address": temporal_address,
                "apiKeySecretRef": {"name": "temporal-api-key", "key": "api-key"},
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "TemporalConnection",
            "metadata": {"name": "with-mtls"},
            "spec": {
                "address": temporal_address,
                "tls": {"clientCertSecretRef": {"name": "mtls"}},
            },
        },
        _agent(
            "canary",
            {
                "replicas": 1,
                "agent": {
                    "name": "canary",
                    "model": "openai-chat:fake-model",
                    "mcpServers": [
                        {
                            "id": "calc",
                            "url": mcp.url,
                            "headersFromEnv": {mcp.header: "CALC_TOKEN"},
                            "toolFilter": {"include": ["add"]},
                        }
                    ],
                },
                "model": {
                    "baseUrl": provider_url,
                    "credentials": [
                        {"name": "OPENAI_API_KEY", "secretKeyRef": {"name": "provider", "key": "api-key"}}
                    ],
                },
                "observability": {
                    "logfire": {"send": False, "tokenSecretRef": {"name": "logfire", "key": "token"}}
                },
                "template": {
                    "env": [
                        {"name": "CALC_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mcp", "key": "token"}}}
                    ]
                },
            },
        ),
        _agent(
            "canary-api-key",
            {
                "replicas": 1,
                "agent": {"name": "canary_api_key", "model": "test"},
                "temporal": {"connectionRef": {"name": "with-api-key"}},
            },
        ),
        _agent(
            "canary-mtls",
            {
                "replicas": 1,
                "agent": {"name": "canary_mtls", "model": "test"},
                "temporal": {"connectionRef": {"name": "with-mtls"}},
            },
        ),
    ]


def _metrics_of_workers(kubectl: Kubectl, namespace: str) -> str:
    text = ""
    for pod in kubectl.json("get", "pods", "-n", namespace)["items"]:
        ip = (pod.get("status") or {}).get("podIP")
        for container in pod["spec"]["containers"]:
            for port in container.get("ports") or []:
                if port.get("name") == "metrics" and ip:
                    url = f"http://{ip}:{port['containerPort']}/metrics"
                    try:
                        with urllib.request.urlopen(url, timeout=5) as response:
                            text += response.read().decode(errors="replace")
                    except OSError as exc:
                        text += f"\n# {url}: {exc}\n"
    return text


def test_canaries_in_every_credential_path_appear_nowhere_a_user_can_read(
    operator_release: Release,
    kubectl: Kubectl,
    node_agent: NodeAgent,
    namespace: str,
    e2e_temporal: ShortPollDevServer,
    canaries: dict[str, str],
    provider: Any,
    mcp: Any,
) -> None:
    provider.add(fake_openai.tool_call("add", {"a": 2, "b": 3}), fake_openai.text("The sum is 5."))
    kubectl.apply(*manifests(canaries, provider.base_url, mcp, e2e_temporal.address), namespace=namespace)

    def ready() -> bool:
        body = kubectl.get("durableagent", "canary", namespace) or {}
        return condition(body, "Ready") == "True"

    wait_for("the canary agent to be Ready", ready, timeout=120)
    run = {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": "canary-run"},
        "spec": {"agentRef": {"name": "canary"}, "prompt": "Add 2 and 3."},
    }
    kubectl.apply(run, namespace=namespace)

    def finished() -> str | None:
        status = (kubectl.get("agentrun", "canary-run", namespace) or {}).get("status") or {}
        return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None

    assert wait_for("the canary run", finished, timeout=90) == "Succeeded"

    # The other two agents tried their credentials: each reports its connection problem.
    for name in ("canary-api-key", "canary-mtls"):
        wait_for(
            f"{name} to report its Temporal connection",
            lambda name=name: condition(
                kubectl.get("durableagent", name, namespace) or {}, "TemporalReachable"
            ),
            timeout=90,
        )

    # Positive controls: the credentials reached the services they are for.
    authorizations = {
        value
        for r in provider.completion_requests
        for key, value in r.headers.items()
        if key.lower() == "authorization"
    }
    assert f"Bearer {canaries['provider']}" in authorizations, authorizations
    headers = {e.get("header") for e in mcp_server.read_log(mcp.log) if "header" in e}
    assert canaries["mcp"] in headers, headers

    surfaces: dict[str, str] = {}
    kinds = "durableagents,agentruns,temporalconnections,configmaps,deployments,services,pods"
    surfaces["resources"] = kubectl("get", kinds, "-n", namespace, "-o", "json")
    surfaces["events"] = kubectl("get", "events", "-A", "-o", "json")
    surfaces["operator log"] = operator_release.operator_log()
    worker_logs = sorted(node_agent.logdir.glob(f"{namespace}_*.log"))
    surfaces["worker logs"] = "".join(f.read_text(errors="replace") for f in worker_logs)
    listed = workflows(e2e_temporal.address, f"TaskQueue = '{namespace}.canary'")
    surfaces["workflow list"] = json.dumps(listed)
    surfaces["workflow histories"] = "".join(
        temporal_cli(
            e2e_temporal.address,
            "workflow",
            "show",
            "--workflow-id",
            w["execution"]["workflowId"],
            "-o",
            "json",
        )
        for w in listed
    )
    surfaces["worker metrics"] = _metrics_of_workers(kubectl, namespace)
    cli = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "durable-agents"), "status", "canary", "--json",
         "--address", e2e_temporal.address, "--task-queue", f"{namespace}.canary"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    surfaces["durable-agents status"] = cli.stdout + cli.stderr

    found = {
        (surface, path)
        for surface, text in surfaces.items()
        for path, canary in canaries.items()
        if canary in text
    }
    record(
        "secret-canaries",
        {
            "credential paths": len(canaries),
            "surfaces searched": ", ".join(f"{k} ({len(v)} chars)" for k, v in surfaces.items()),
            "workflows searched": len(listed),
            "worker log files": len(worker_logs),
            "canaries found": ", ".join(f"{p} in {s}" for s, p in sorted(found)) or "none",
        },
    )

    for surface in (
        "resources",
        "events",
        "operator log",
        "worker logs",
        "workflow histories",
        "worker metrics",
    ):
        assert surfaces[surface].strip(), f"nothing to search in {surface}: the search would prove nothing"
    assert listed, "no workflow of the canary agent to search"
    assert not found, f"canaries leaked: {sorted(found)}"

    other = f"system:serviceaccount:{namespace}:default"
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "configmaps"),
        ("list", "configmaps"),
    ):
        assert kubectl.can_i(other, verb, resource, namespace) == "no", f"{other} may {verb} {resource}"
    pod_specs = [p["spec"] for p in kubectl.json("get", "pods", "-n", namespace)["items"]]
    assert pod_specs and all(s.get("automountServiceAccountToken") is False for s in pod_specs), (
        "worker pods mount a service account token they do not need"
    )
