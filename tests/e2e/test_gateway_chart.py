"""The chart's gateway on the real control plane: `gateway.enabled` deploys `durable-agents gateway
--in-cluster` next to the operator (the session's release, tests/e2e/conftest.py). It serves the
DurableAgents the apiserver lists, with the Ready condition the operator wrote, and lets RBAC decide:
tokens of service accounts bound to the chart's viewer and approver ClusterRoles, checked by the gateway
with TokenReview and SubjectAccessReview.

One approval agent (tests/runtime/approval_agents.py, on every pod's PYTHONPATH) named `files`, like the
agents of other tests, so it is addressed with its namespace. A service account with create on agentruns
starts a run through the gateway; the viewer reads it and its pending call but may not decide (403); the
approver decides; the run completes; a token the apiserver does not know gets 401; an account with no
role sees no agent.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from .conftest import Kubectl, Release, create_namespace
from .support import condition, pod_ready, wait_for
from .test_approvals import AGENT

pytestmark = pytest.mark.e2e

RUNNER_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: agent-runner, namespace: {ns}}}
rules:
  - apiGroups: [durable-agents.dev]
    resources: [durableagents, agentruns]
    verbs: [get, list, create]
"""


def _account(kubectl: Kubectl, namespace: str, name: str, *, role: str | None, cluster_role: bool) -> str:
    """A service account bound (in `namespace`) to `role`, and a token of it."""
    kubectl("create", "serviceaccount", name, "-n", namespace)
    if role is not None:
        kind = "--clusterrole" if cluster_role else "--role"
        subject = f"--serviceaccount={namespace}:{name}"
        kubectl("create", "rolebinding", name, f"{kind}={role}", subject, "-n", namespace)
    return kubectl("create", "token", name, "-n", namespace, "--duration=10m").strip()


def _gateway_url(release: Release, kubectl: Kubectl) -> str:
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=gateway"

    def ready() -> str | None:
        pods = kubectl.json("get", "pods", "-n", release.namespace, "-l", selector)["items"]
        ready = [p for p in pods if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
        return ready[0]["status"]["podIP"] if ready else None

    pod_ip = wait_for(f"the gateway pod of release {release.name}", ready, timeout=90)
    return f"http://{pod_ip}:8780"


def test_the_charts_gateway_serves_the_clusters_agents_and_rbac_decides_who_may_decide(
    operator_release: Release, kubectl: Kubectl
) -> None:
    namespace = create_namespace(kubectl, "gateway")
    kubectl("apply", "-f", "-", input=RUNNER_ROLE.format(ns=namespace))
    viewer = _account(
        kubectl, namespace, "viewer", role=f"{operator_release.fullname}-viewer", cluster_role=True
    )
    approver = _account(
        kubectl, namespace, "approver", role=f"{operator_release.fullname}-approver", cluster_role=True
    )
    runner = _account(kubectl, namespace, "runner", role="agent-runner", cluster_role=False)
    stranger = _account(kubectl, namespace, "stranger", role=None, cluster_role=False)
    kubectl.apply(copy.deepcopy(AGENT), namespace=namespace)
    wait_for(
        "the agent to be Ready",
        lambda: condition(kubectl.get("durableagent", "files", namespace) or {}, "Ready") == "True",
        timeout=120,
    )
    url = _gateway_url(operator_release, kubectl)
    here = {"namespace": namespace}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:

        def listed() -> dict[str, Any] | None:
            answer = http.get("/api/agents", headers=bearer(viewer))
            assert answer.status_code == 200, answer.text
            mine = [a for a in answer.json() if a["namespace"] == namespace]
            return mine[0] if mine and mine[0]["ready"] and mine[0]["operator_status"] == "Ready" else None

        # The catalog lists every few seconds, and the worker's first poll makes it ready.
        agent = wait_for("the gateway to list the agent as ready", listed, timeout=60, interval=0.5)
        unseen = http.get("/api/agents", headers=bearer(stranger))
        unknown = http.get("/api/agents", headers=bearer("not-a-token"))
        refused_start = http.post(
            "/api/agents/files/runs", params=here, json={"prompt": "x"}, headers=bearer(viewer)
        )
        started = http.post(
            "/api/agents/files/runs", params=here, json={"prompt": "tidy up"}, headers=bearer(runner)
        )
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]

        def pending() -> list[dict[str, Any]]:
            answer = http.get(f"/api/runs/{run_id}/approvals", headers=bearer(viewer))
            assert answer.status_code == 200, answer.text
            return answer.json()

        [waiting] = wait_for("the run's pending call", pending, timeout=90, interval=0.5)
        decision = {"decisions": [{"tool_call_id": waiting["call"]["tool_call_id"], "approve": True}]}
        denied = http.post(f"/api/runs/{run_id}/decisions", json=decision, headers=bearer(viewer))
        approved = http.post(f"/api/runs/{run_id}/decisions", json=decision, headers=bearer(approver))
        assert approved.status_code == 200, approved.text

        def finished() -> dict[str, Any] | None:
            run = http.get(f"/api/runs/{run_id}", headers=bearer(viewer)).json()
            return run if run["status"] == "completed" else None

        run = wait_for("the approved run to complete", finished, timeout=90, interval=0.5)

    assert agent["workers"] >= 1 and agent["task_queue"]
    assert unseen.status_code == 200 and namespace not in {a["namespace"] for a in unseen.json()}
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthenticated"
    assert refused_start.status_code == 403
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert waiting["namespace"] == namespace and waiting["call"]["tool_name"] == "delete_file"
    assert run["output"] == "model was told: deleted a.txt"
