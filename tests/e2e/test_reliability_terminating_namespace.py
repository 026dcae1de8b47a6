"""A namespace deleted with an agent, its workers and runs in flight: the operator lets it go.

While a namespace terminates, the apiserver refuses new content in it (403 with the cause
`NamespaceTerminating`) but still accepts writes to what exists, and the namespace controller waits for
the pods to stop first (here the workers drain a slow tool call). Once the operator has been told the
namespace is terminating it must stop writing there: no status patches, no Events (each refused), no
retried reconcile, no advice to grant RBAC; none of its requests after the namespace is gone; no crash.
The figures (the operator's requests into the terminating namespace, by kind and answer) are recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from .audit import audit_log, requested_at, service_account_requests
from .cluster import ControlPlane
from .conftest import Kubectl, Release, create_namespace
from .nodeagent import NodeAgent
from .reliability_figures import record
from .support import wait_for
from .test_resilience import SlowAgent, run_manifest, run_status, serving, slow_agent_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

AGENT_KINDS = ("durableagents", "agentruns", "temporalconnections")

RUNS = 2
DRAIN_SECONDS = 20
"""The slow tool's duration: the workers drain it, so the namespace stays terminating about this long."""
QUIET_AFTER_GONE = 10.0
"""Seconds watched after the namespace is gone: more than a few health intervals and run polls."""
MAX_REFUSED = 4
"""Refused requests (4xx) allowed into the terminating namespace: the one that tells the operator, and
a few already in flight."""


def _code(event: dict[str, Any]) -> int:
    return (event.get("responseStatus") or {}).get("code", 0)


def _terminating(event: dict[str, Any]) -> bool:
    causes = ((event.get("responseStatus") or {}).get("details") or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)


def _what(event: dict[str, Any]) -> str:
    ref = event["objectRef"]
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{event['verb']} {ref.get('resource')}{sub} {ref.get('name', '')} -> {_code(event)}"


def _restarts(release: Release) -> int:
    return release.operator_pod()["status"]["containerStatuses"][0]["restartCount"]


def test_operator_stops_writing_into_a_terminating_namespace(
    operator_release: Release, kubectl: Kubectl, node_agent: NodeAgent, control_plane: ControlPlane
) -> None:
    namespace = create_namespace(kubectl)
    agent = SlowAgent(namespace)
    manifest = slow_agent_manifest()
    for env in manifest["spec"]["template"]["env"]:
        if env["name"] == "SLOW_TOOLS_SECONDS":
            env["value"] = str(DRAIN_SECONDS)
    kubectl.apply(manifest, namespace=namespace)
    serving(kubectl, agent, workers=1)
    names = [f"doomed-{i}" for i in range(RUNS)]
    kubectl.apply(*(run_manifest(n) for n in names), namespace=namespace)
    wait_for(
        "every run to be Running",
        lambda: all(run_status(kubectl, namespace, n).get("phase") == "Running" for n in names),
        timeout=60,
    )
    time.sleep(2.0)  # inside the slow tool: the worker's drain keeps the namespace terminating
    pid, restarts = operator_release.operator_pid(), _restarts(operator_release)

    deleted_at = time.time()
    kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(
        f"namespace {namespace} to be Terminating",
        lambda: kubectl.json("get", "namespace", namespace)["status"].get("phase") == "Terminating",
        timeout=30,
        interval=0.2,
    )
    # A spec change the reconcile cannot complete there: two replicas need a new PodDisruptionBudget.
    kubectl("scale", "durableagent", agent.name, "-n", namespace, "--replicas=2")
    wait_for(
        f"namespace {namespace} to be gone",
        lambda: not kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name").strip(),
        timeout=180,
        interval=0.5,
    )
    gone_at = time.time()
    time.sleep(QUIET_AFTER_GONE)

    requests = [
        e
        for e in service_account_requests(audit_log(control_plane), operator_release.service_account)
        if (e.get("objectRef") or {}).get("namespace") == namespace and requested_at(e) >= deleted_at
    ]
    told = next((requested_at(e) for e in requests if _terminating(e)), None)
    refused = [e for e in requests if _code(e) >= 400]
    # After the first NamespaceTerminating answer: what the operator still wrote. kopf's own bookkeeping on
    # the resources (finalizers, annotations: patches without a subresource) lets the deletion finish.
    writes_after = [
        e
        for e in requests
        if told is not None
        and requested_at(e) > told + 1.0
        and e["verb"] in ("create", "patch", "update")
        and (e["objectRef"].get("subresource") or e["objectRef"].get("resource") not in AGENT_KINDS)
    ]
    after_gone = [e for e in requests if requested_at(e) > gone_at + 2.0]
    log = operator_release.operator_log()
    ns_lines = [line for line in log.splitlines() if namespace in line]
    rbac_advice = [line for line in ns_lines if "Grant it in the operator's RBAC" in line]
    crashes = [line for line in log.splitlines() if "Traceback" in line or "Unhandled" in line]
    restarted = _restarts(operator_release) != restarts or operator_release.operator_pid() != pid
    figures = {
        "operator requests into the namespace after its deletion": len(requests),
        "refused": dict(Counter(_code(e) for e in refused)),
        "writes after the first NamespaceTerminating answer": dict(Counter(map(_what, writes_after))),
        "requests after it was gone": len(after_gone),
        "log lines advising an RBAC grant": len(rbac_advice),
        "namespace gone after (s)": round(gone_at - deleted_at, 1),
        "operator restarted": restarted,
    }
    record("terminating-namespace", figures)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))
    print("\n".join(f"{requested_at(e) - deleted_at:6.1f}s {_what(e)}" for e in requests))

    assert not restarted, "the operator restarted while the namespace was deleted"
    assert not crashes, crashes
    assert told is not None, "the operator was never refused by the terminating namespace (scenario broken)"
    assert len(refused) <= MAX_REFUSED, f"{len(refused)} refused:\n" + "\n".join(map(_what, refused))
    assert not writes_after, "writes after the namespace said it terminates:\n" + "\n".join(
        map(_what, writes_after)
    )
    assert not rbac_advice, rbac_advice
    assert not after_gone, "requests after the namespace was gone:\n" + "\n".join(map(_what, after_gone))
