"""Fault matrix, the control plane under the operator: kube-apiserver (then etcd with it) restarted.

The operator keeps running (same process, no container restart) while the session's apiserver gets
SIGKILL and comes back on the same port and etcd data; then etcd and the apiserver both. Its watches
must recover by themselves, and no change may be lost:

- **a change the operator's watch could not see**: while the apiserver is down, a DurableAgent's
  `spec.replicas` (and `metadata.generation`, as the apiserver would) is changed by writing the object
  straight into etcd (custom resources are stored as JSON; etcd's v3 JSON gateway). When the apiserver
  is back the operator must reconcile it: the Deployment scaled, `observedGeneration` current;
- **changes right after it is back**: a new DurableAgent created, and an AgentRun started, as soon as
  /readyz answers: the agent gets its children and Ready, the run succeeds with one workflow.

The figures (down time; seconds from /readyz until the operator applied each change, and until Ready,
which also waits for the controller manager and scheduler to recover; operator restarts) are recorded.
CI: one apiserver and one etcd+apiserver restart, 3 s down; DA_RELIABILITY_LONG=1: two of each, 3 and
20 s down.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from typing import Any

import pytest

from .cluster import ControlPlane
from .conftest import Kubectl, Release, ShortPollDevServer
from .reliability_figures import record
from .support import condition, wait_for, workflows
from .test_reliability_operator_kill import agent_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

LONG = os.environ.get("DA_RELIABILITY_LONG", "") not in ("", "0")
OUTAGES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("kube-apiserver",), 3.0),
    (("etcd", "kube-apiserver"), 3.0),
    *(((("kube-apiserver",), 20.0), (("etcd", "kube-apiserver"), 20.0)) if LONG else ()),
)
RECONCILE_BOUND = 150.0
"""Seconds after /readyz within which every change must be reconciled: kopf's watch back-off (1, 1, 2, 3,
5, 8, 13, 21 s, then a new list) and the controller manager's own recovery included."""
AGENT = "steady"


def _etcd(control_plane: ControlPlane, call: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{control_plane.etcd_url}/v3/kv/{call}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def scale_in_etcd(control_plane: ControlPlane, namespace: str, name: str, replicas: int) -> None:
    """Change a DurableAgent's replicas behind the apiserver's back (it is down: nothing watches)."""
    key = base64.b64encode(f"/registry/durable-agents.dev/durableagents/{namespace}/{name}".encode()).decode()
    (kv,) = _etcd(control_plane, "range", {"key": key})["kvs"]
    obj = json.loads(base64.b64decode(kv["value"]))
    obj["spec"]["replicas"] = replicas
    obj["metadata"]["generation"] += 1
    value = base64.b64encode(json.dumps(obj).encode()).decode()
    _etcd(control_plane, "put", {"key": key, "value": value})


def _restarts(release: Release) -> int:
    return release.operator_pod()["status"]["containerStatuses"][0]["restartCount"]


def reconciled(kubectl: Kubectl, namespace: str, name: str, replicas: int, *, ready: bool = True) -> bool:
    """Whether the operator has applied the agent's spec (`observedGeneration` current, the Deployment's
    replicas) and, with *ready*, the workers are up and Ready reported (which also waits for the
    control plane's own controllers to recover)."""
    body = kubectl.get("durableagent", name, namespace) or {}
    deployment = kubectl.get("deployment", f"{name}-worker", namespace) or {}
    status = body.get("status") or {}
    applied = (
        body.get("spec", {}).get("replicas") == replicas
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and (deployment.get("spec") or {}).get("replicas") == replicas
    )
    return applied and (
        not ready or ((status.get("readyReplicas") or 0) == replicas and condition(body, "Ready") == "True")
    )


def test_operator_watches_recover_from_apiserver_and_etcd_restarts_without_losing_changes(
    control_plane: ControlPlane,
    operator_release: Release,
    kubectl: Kubectl,
    namespace: str,
    e2e_temporal: ShortPollDevServer,
) -> None:
    kubectl.apply(agent_manifest(AGENT, 1, 0), namespace=namespace)
    wait_for(f"{AGENT} Ready", lambda: reconciled(kubectl, namespace, AGENT, 1), timeout=120)
    pid, restarts = operator_release.operator_pid(), _restarts(operator_release)

    rounds: list[dict[str, Any]] = []
    replicas = 1
    for index, (components, down) in enumerate(OUTAGES):
        replicas = 2 if replicas == 1 else 1
        fresh, run = f"fresh-{index}", f"after-{index}"

        def change_behind_its_back(replicas: int = replicas) -> None:
            scale_in_etcd(control_plane, namespace, AGENT, replicas)

        outage = control_plane.restart(components, down=down, before_start=change_behind_its_back)
        back_at = time.monotonic()
        kubectl.apply(agent_manifest(fresh, 1, index), namespace=namespace)
        kubectl.apply(
            {
                "apiVersion": "durable-agents.dev/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": run},
                "spec": {"agentRef": {"name": AGENT}, "prompt": "What is the weather like in Paris?"},
            },
            namespace=namespace,
        )
        hidden = f"the change made in etcd while the apiserver was down ({AGENT} to {replicas} replicas)"
        wait_for(
            hidden,
            lambda r=replicas: reconciled(kubectl, namespace, AGENT, r, ready=False),
            timeout=RECONCILE_BOUND,
        )
        applied = time.monotonic() - back_at
        wait_for(
            f"{hidden}, Ready",
            lambda r=replicas: reconciled(kubectl, namespace, AGENT, r),
            timeout=RECONCILE_BOUND,
        )
        hidden_change = time.monotonic() - back_at
        wait_for(
            f"{fresh} Ready", lambda f=fresh: reconciled(kubectl, namespace, f, 1), timeout=RECONCILE_BOUND
        )
        created = time.monotonic() - back_at
        status = wait_for(
            f"AgentRun {run} to finish",
            lambda r=run: (
                s
                if (s := (kubectl.get("agentrun", r, namespace) or {}).get("status") or {}).get("phase")
                in ("Succeeded", "Failed")
                else None
            ),
            timeout=RECONCILE_BOUND,
        )
        assert status["phase"] == "Succeeded", status
        listed = workflows(e2e_temporal.address, f"WorkflowId = '{status['workflowId']}'")
        rounds.append(
            {
                "restarted": "+".join(components),
                "down (s)": round(outage, 1),
                "etcd-side change applied": round(applied, 1),
                "etcd-side change": round(hidden_change, 1),
                "new agent": round(created, 1),
                "new run": round(time.monotonic() - back_at, 1),
                "workflows": len(listed),
            }
        )

    restarted = operator_release.operator_pid() != pid or _restarts(operator_release) != restarts
    figures: dict[str, Any] = {"restarts": len(rounds), "operator restarted": restarted}
    for number, r in enumerate(rounds, 1):
        figures[f"{number}. {r['restarted']} down {r['down (s)']}s: /readyz -> reconciled (s)"] = (
            f"etcd-side change applied {r['etcd-side change applied']}, Ready {r['etcd-side change']}, "
            f"new agent Ready {r['new agent']}, "
            f"new run succeeded {r['new run']} ({r['workflows']} workflow)"
        )
    record("apiserver-restart" + ("-long" if LONG else ""), figures)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))
    assert not restarted, "the operator process was replaced: its watches must recover by themselves"
    assert all(r["workflows"] == 1 for r in rounds), rounds
