"""TemporalConnections whose credentials come from Kubernetes Secrets, on the real control plane, through a
real TLS terminator (nginx, tests/tls_proxy.py) in front of the session's Temporal dev server.

- mTLS: the CA in an Opaque Secret (`caSecretRef`), the client certificate in a `kubernetes.io/tls`
  Secret (`clientCertSecretRef`). The operator's health read and AgentRun start and the worker all go
  through the proxy, which refuses clients without a certificate of its CA.
- API key (the way Temporal Cloud takes one): the key in a Secret (`apiKeySecretRef`), sent as
  `authorization: Bearer`; a connection with a wrong key shows `TemporalReachable=False` naming
  `spec.apiKeySecretRef`, and the key appears in no status, Event, ConfigMap or process argv.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tls_proxy import Certificates, TlsProxy

from .conftest import Kubectl, Release, ShortPollDevServer, create_namespace
from .nodeagent import NodeAgent
from .support import API_VERSION, condition, load_example, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def api_key() -> str:
    return f"tck-{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def proxies(
    e2e_temporal: ShortPollDevServer,
    pki: Certificates,
    api_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, TlsProxy]]:
    base = tmp_path_factory.mktemp("tls-proxies")
    mtls = TlsProxy(base / "mtls", upstream=e2e_temporal.address, certs=pki, mode="mtls")
    keyed = TlsProxy(
        base / "api-key", upstream=e2e_temporal.address, certs=pki, mode="api-key", api_key=api_key
    )
    with mtls, keyed:
        yield {"mtls": mtls, "api-key": keyed}


def _secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": kind,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _connection(name: str, address: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "TemporalConnection",
        "metadata": {"name": name},
        "spec": {"address": address, "namespace": "default", **spec},
    }


def _agent(name: str, connection: str) -> dict[str, Any]:
    manifest = load_example("hello.yaml")
    manifest["metadata"] = {"name": name}
    manifest["spec"]["agent"]["name"] = name
    manifest["spec"]["temporal"] = {"connectionRef": {"name": connection}}
    return manifest


def _run(agent: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": f"{agent}-run"},
        "spec": {"agentRef": {"name": agent}, "prompt": "What is the weather like in Paris?"},
    }


def _succeeded(kubectl: Kubectl, namespace: str, run: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status = ((kubectl.get("agentrun", run, namespace) or {}).get("status")) or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(f"AgentRun {run} to finish", finished, timeout=120)
    assert status["phase"] == "Succeeded", status
    return status


def _ready(kubectl: Kubectl, namespace: str, agent: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = kubectl.get("durableagent", agent, namespace) or {}
        ok = condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == 1
        return body if ok else None

    try:
        return wait_for(f"{agent} Ready with a polling worker through the proxy", ready, timeout=150)
    except AssertionError as exc:
        status = (kubectl.get("durableagent", agent, namespace) or {}).get("status")
        pods = kubectl("get", "pods", "-n", namespace, "-o", "wide")
        raise AssertionError(f"{exc}; its status: {json.dumps(status, indent=1)}\n{pods}") from None


def test_an_mtls_connection_from_secrets_serves_an_agent_through_a_verifying_proxy(
    operator_release: Release, kubectl: Kubectl, proxies: dict[str, TlsProxy], pki: Certificates
) -> None:
    namespace = create_namespace(kubectl, "mtls")
    proxy = proxies["mtls"]
    kubectl.apply(
        _secret("temporal-ca", {"ca.crt": pki.ca.cert_pem}),
        _secret(
            "temporal-client",
            {"tls.crt": pki.client.cert_pem, "tls.key": pki.client.key_pem},
            "kubernetes.io/tls",
        ),
        _connection(
            "secure",
            proxy.address,
            tls={
                "caSecretRef": {"name": "temporal-ca", "key": "ca.crt"},
                "clientCertSecretRef": {"name": "temporal-client"},
            },
        ),
        _agent("hello", "secure"),
        namespace=namespace,
    )
    body = _ready(kubectl, namespace, "hello")
    kubectl.apply(_run("hello"), namespace=namespace)
    status = _succeeded(kubectl, namespace, "hello-run")

    assert condition(body, "TemporalReachable") == "True"
    assert "Paris" in status["output"]
    wait_for(
        "the TemporalConnection to report Reachable",
        lambda: (
            condition(kubectl.get("temporalconnection", "secure", namespace) or {}, "Reachable") == "True"
        ),
        timeout=60,
    )
    # Everything went through the proxy: the worker's polls, the operator's start of the AgentRun.
    access = (proxy.directory / "access.log").read_text()
    for call in ("PollWorkflowTaskQueue", "StartWorkflowExecution"):
        assert f'/temporal.api.workflowservice.v1.WorkflowService/{call} HTTP/2.0" 200' in access, call


def test_an_api_key_from_a_secret_is_sent_as_a_bearer_and_a_wrong_one_is_named_without_leaking(
    operator_release: Release,
    kubectl: Kubectl,
    node_agent: NodeAgent,
    proxies: dict[str, TlsProxy],
    pki: Certificates,
    api_key: str,
) -> None:
    namespace = create_namespace(kubectl, "api-key")
    proxy = proxies["api-key"]
    wrong = f"tck-wrong-{uuid.uuid4().hex}"
    ca = {"caSecretRef": {"name": "temporal-ca", "key": "ca.crt"}}
    kubectl.apply(
        _secret("temporal-ca", {"ca.crt": pki.ca.cert_pem}),
        _secret("cloud-key", {"api-key": api_key.encode()}),
        _secret("stale-key", {"api-key": wrong.encode()}),
        _connection("cloud", proxy.address, tls=ca, apiKeySecretRef={"name": "cloud-key", "key": "api-key"}),
        _connection("stale", proxy.address, tls=ca, apiKeySecretRef={"name": "stale-key", "key": "api-key"}),
        _agent("hello", "cloud"),
        _agent("refused", "stale"),
        namespace=namespace,
    )
    _ready(kubectl, namespace, "hello")
    kubectl.apply(_run("hello"), namespace=namespace)
    status = _succeeded(kubectl, namespace, "hello-run")
    assert "Paris" in status["output"]

    def refused() -> dict[str, Any] | None:
        body = kubectl.get("durableagent", "refused", namespace) or {}
        return body if condition(body, "TemporalReachable") == "False" else None

    body = wait_for("the agent on the wrong key to be unreachable", refused, timeout=90)
    message = condition(body, "TemporalReachable", "message") or ""
    assert "refused the API key" in message and "spec.apiKeySecretRef of TemporalConnection stale" in message

    # Neither key appears anywhere a user reads, nor in any process's argv.
    readable = json.dumps(
        [
            kubectl.json("get", kind, "-n", namespace)
            for kind in (
                "durableagents",
                "agentruns",
                "temporalconnections",
                "events",
                "configmaps",
                "deployments",
            )
        ]
    )
    for key in (api_key, wrong):
        assert key not in readable
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert key.encode() not in cmdline.read_bytes(), f"{cmdline} holds an API key"
            except OSError:
                continue  # the process ended
    logs = "".join(f.read_text(errors="replace") for f in node_agent.logdir.glob("*.log"))
    assert "polling task queue" in logs  # the logs searched are the pods' (the operator's, the workers')
    assert wrong not in logs and api_key not in logs
