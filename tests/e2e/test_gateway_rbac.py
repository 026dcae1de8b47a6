"""The gateway in a cluster: Kubernetes decides who may do what. Service-account tokens from the real
control plane, checked by `KubeAuthorizer` with TokenReview and SubjectAccessReview; a real gateway, the
e2e Temporal dev server and a real worker whose run waits for an approval.

A viewer (get/list on the agents and runs) reads the run but gets 403 deciding it; an approver (create on
toolapprovals, as for a ToolApproval object) decides it; a token the apiserver does not know gets 401."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import ENV_BIND_HOST, ENV_HEALTH_PORT, ENV_METRICS_PORT, READINESS_PATH
from durable_agents_runtime.client import AgentsClient
from durable_agents_runtime.devserver import free_port
from durable_agents_runtime.gateway import AgentEntry, Gateway, GatewayServer, StaticCatalog, build_app

from .conftest import Kubectl, ShortPollDevServer, create_namespace
from .support import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
GROUP = "durable-agents.dev"
ROLES = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: agents-viewer, namespace: {ns}}}
rules:
  - apiGroups: ["{group}"]
    resources: [durableagents, agentruns, toolapprovals]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: agents-approver, namespace: {ns}}}
rules:
  - apiGroups: ["{group}"]
    resources: [durableagents, agentruns, toolapprovals]
    verbs: [get, list, watch]
  - apiGroups: ["{group}"]
    resources: [toolapprovals]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: viewer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: agents-viewer}}
subjects: [{{kind: ServiceAccount, name: viewer, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: approver, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: agents-approver}}
subjects: [{{kind: ServiceAccount, name: approver, namespace: {ns}}}]
"""


def _kube_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    from durable_agents_operator.kube import KubeClient

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return KubeClient.from_configuration(configuration, field_manager="gateway-e2e")


class LazyKube:
    """A KubeClient built on first use, in the gateway's own event loop (its connections belong there)."""

    def __init__(self, kubeconfig: Path) -> None:
        self._kubeconfig = kubeconfig
        self._client: Any = None

    async def create_review(self, path: str, review: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            self._client = _kube_client(self._kubeconfig)
        return await self._client.create_review(path, review)


@pytest.fixture
def worker(e2e_temporal: ShortPollDevServer, tmp_path: Path) -> Iterator[RuntimeConfig]:
    """A worker of the approval agent `files` (tests/runtime/approval_agents.py) on its own task queue."""
    cfg = RuntimeConfig.model_validate(
        {
            "agent": {
                "name": "files",
                "model": "python:approval_agents:deleting",
                "toolsets": [{"id": "files", "entrypoint": "approval_agents:files"}],
            },
            "temporal": {
                "address": e2e_temporal.address,
                "namespace": e2e_temporal.namespace,
                "taskQueue": f"files-{uuid.uuid4().hex[:8]}",
            },
            "approvals": {"tools": [{"toolset": "files", "tool": "delete_*"}]},
        }
    )
    path = tmp_path / "runtime.json"
    path.write_text(cfg.to_json())
    health = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    env.update(
        {
            "PYTHONPATH": str(REPO / "tests" / "runtime"),
            ENV_BIND_HOST: "127.0.0.1",
            ENV_HEALTH_PORT: str(health),
            ENV_METRICS_PORT: str(free_port()),
        }
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable_agents_cli", "worker", "--config", str(path)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{health}{READINESS_PATH}", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the worker's readiness", ready, timeout=120, interval=0.2)
        yield cfg
    finally:
        process.kill()
        process.wait()


def _token(kubectl: Kubectl, namespace: str, account: str) -> str:
    kubectl("create", "serviceaccount", account, "-n", namespace)
    return kubectl("create", "token", account, "-n", namespace, "--duration=10m").strip()


def test_a_viewer_token_reads_but_may_not_approve_and_an_approver_token_may(
    kubectl: Kubectl, kubeconfig: Path, e2e_temporal: ShortPollDevServer, worker: RuntimeConfig
) -> None:
    from durable_agents_operator.gateway_auth import KubeAuthorizer

    namespace = create_namespace(kubectl, "gateway")
    kubectl("apply", "-f", "-", input=ROLES.format(ns=namespace, group=GROUP))
    viewer, approver = _token(kubectl, namespace, "viewer"), _token(kubectl, namespace, "approver")

    async def connect() -> AgentsClient:
        return await AgentsClient.connect(address=e2e_temporal.address, namespace=e2e_temporal.namespace)

    catalog = StaticCatalog([AgentEntry("files", namespace, worker.temporal.task_queue, "files")])
    authorizer = KubeAuthorizer(LazyKube(kubeconfig), cache_seconds=0)
    server = GatewayServer(build_app(Gateway(connect, catalog, authorizer)), port=0)
    server.start_in_thread()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            as_viewer = {"Authorization": f"Bearer {viewer}"}
            as_approver = {"Authorization": f"Bearer {approver}"}
            # Starting a run needs create on agentruns, which neither role grants.
            refused_start = http.post("/api/agents/files/runs", json={"prompt": "tidy up"}, headers=as_viewer)
            run_id = f"run-{uuid.uuid4()}"
            started = time.monotonic()

            async def start() -> None:
                agents = await connect()
                await agents.start_run(worker.temporal.task_queue, "tidy up", run_id=run_id)

            asyncio.run(start())

            def pending() -> list[dict[str, Any]]:
                answer = http.get(f"/api/runs/{run_id}/approvals", headers=as_viewer)
                assert answer.status_code == 200, answer.text
                return answer.json()

            [approval] = wait_for("the run's pending call", pending, timeout=60, interval=0.3)
            decision = {"decisions": [{"tool_call_id": approval["call"]["tool_call_id"], "approve": True}]}
            unknown = http.get("/api/approvals", headers={"Authorization": "Bearer not-a-token"})
            denied = http.post(f"/api/runs/{run_id}/decisions", json=decision, headers=as_viewer)
            approved = http.post(f"/api/runs/{run_id}/decisions", json=decision, headers=as_approver)

            def finished() -> dict[str, Any] | None:
                run = http.get(f"/api/runs/{run_id}", headers=as_viewer).json()
                return run if run["status"] == "completed" else None

            run = wait_for("the approved run to complete", finished, timeout=60, interval=0.3)
    finally:
        server.stop_thread()

    assert refused_start.status_code == 403
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthenticated"
    assert denied.status_code == 403
    assert denied.json() == {
        "error": {
            "code": "forbidden",
            "message": "this token is not allowed to do that: ask for a role that grants it",
        }
    }
    assert approved.status_code == 200, approved.text
    assert run["output"] == "model was told: deleted a.txt"
    # Who decided is the approver's service account, as the apiserver named it.
    [decided] = asyncio.run(_decided(connect, run_id))
    assert (decided.decision, decided.decided_by) == (
        "Approve",
        f"system:serviceaccount:{namespace}:approver",
    )
    assert time.monotonic() - started < 120


async def _decided(connect: Any, run_id: str) -> Any:
    agents = await connect()
    return (await agents.result(run_id)).decided_calls
