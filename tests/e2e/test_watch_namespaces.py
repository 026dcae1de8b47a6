"""Namespaced mode, with the chart's own Temporal dev server.

A second release (`watchNamespaces`, `temporal.dev.enabled=true`) gets Roles only in the namespaces it
watches. It serves examples/hello.yaml in one of them on the Temporal pod it installed; where it has no
rights (a namespace it was never given, and one whose RoleBinding was removed) nothing is reconciled, and
the operator's log names the namespace it may not use.

The session's cluster-wide operator would reconcile the same namespaces, so it is scaled to zero for this
test and back afterwards. Kept last in the suite (file order) because it does that.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .cluster import free_port
from .conftest import (
    HEALTH_INTERVAL_SECONDS,
    Helm,
    Kubectl,
    Release,
    create_namespace,
    install_release,
)
from .nodeagent import NodeAgent
from .support import EXAMPLES, condition, load_example, pod_ready, temporal_cli, wait_for

pytestmark = pytest.mark.e2e

SCOPED_RELEASE = "scoped"


def scale_operator(kubectl: Kubectl, release: Release, replicas: int) -> None:
    kubectl("scale", "deployment", release.fullname, f"--replicas={replicas}", "-n", release.namespace)
    if replicas == 0:
        wait_for(
            f"the operator of {release.name} to stop",
            lambda: (
                not release.operator_pods()
                # Only the operator's: the release's gateway keeps running.
                and not any(
                    "operator" in containers
                    for containers in release.node_agent.processes(release.namespace).values()
                )
            ),
            timeout=60,
        )
    else:
        release.operator_pod()


@pytest.fixture
def only_scoped_operator(operator_release: Release, kubectl: Kubectl) -> Iterator[None]:
    """The session's cluster-wide operator stopped for the test, then started again."""
    scale_operator(kubectl, operator_release, 0)
    try:
        yield
    finally:
        scale_operator(kubectl, operator_release, 1)


def temporal_pod(kubectl: Kubectl, release: Release) -> dict[str, Any]:
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=temporal-dev"

    def ready() -> dict[str, Any] | None:
        pods = kubectl.json("get", "pods", "-n", release.namespace, "-l", selector)["items"]
        return next((p for p in pods if pod_ready(p)), None)

    return wait_for("the Temporal dev pod to be ready", ready, timeout=60)


@dataclass(frozen=True)
class Scoped:
    """The namespaced release and the namespaces around it."""

    release: Release
    temporal_port: int
    watched: str
    revoked: str
    unwatched: str

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.watched, self.revoked, self.unwatched, self.release.namespace)


@pytest.fixture
def scoped(
    only_scoped_operator: None, helm: Helm, kubectl: Kubectl, node_agent: NodeAgent, tmp_path: Path
) -> Iterator[Scoped]:
    """A release watching two namespaces, with the chart's Temporal dev server; a third is left out."""
    watched, revoked, unwatched, release_namespace = (create_namespace(kubectl) for _ in range(4))
    # The dev server listens on all addresses: free ports keep it clear of other servers.
    ports = {"port": free_port(), "httpPort": free_port(), "metricsPort": free_port()}
    try:
        release = install_release(
            helm,
            kubectl,
            node_agent,
            tmp_path,
            name=SCOPED_RELEASE,
            namespace=release_namespace,
            values={
                "watchNamespaces": [watched, revoked],
                "temporal": {"dev": {"enabled": True, **ports}},
                "operator": {"healthInterval": HEALTH_INTERVAL_SECONDS},
            },
        )
        yield Scoped(release, ports["port"], watched, revoked, unwatched)
    finally:
        helm.run("uninstall", SCOPED_RELEASE, "-n", release_namespace, "--wait", "--timeout", "120s")
        for namespace in (watched, revoked, unwatched, release_namespace):
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_namespaced_operator_serves_its_namespace_only_on_the_charts_temporal(
    scoped: Scoped, helm: Helm, kubectl: Kubectl, node_agent: NodeAgent
) -> None:
    release, watched, revoked, unwatched = scoped.release, scoped.watched, scoped.revoked, scoped.unwatched
    # The chart's Temporal dev pod serves on its pod IP; the operator got that address for the Service
    # name the chart gave it.
    temporal = temporal_pod(kubectl, release)
    address = f"{temporal['status']['podIP']}:{scoped.temporal_port}"
    assert "SERVING" in temporal_cli(address, "operator", "cluster", "health")
    tested = helm("test", release.name, "-n", release.namespace, "--timeout", "120s")
    assert "Phase:          Succeeded" in tested, tested

    # Someone removes the operator's RoleBinding in one watched namespace; the operator restarts.
    kubectl("delete", "rolebinding", release.fullname, "-n", revoked)
    operator = release.operator_pod()
    os.kill(release.operator_pid(), signal.SIGKILL)

    def restarted() -> bool:
        pod = kubectl.get("pod", operator["metadata"]["name"], release.namespace) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1 and statuses[0].get("ready", False)

    wait_for("the operator's restart", restarted, timeout=60)

    for namespace in (watched, revoked, unwatched):
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "hello.yaml"))
    name = load_example("hello.yaml")["metadata"]["name"]

    def serving() -> bool:
        body = kubectl.get("durableagent", name, watched) or {}
        return condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == 1

    wait_for("the agent in the watched namespace to be Ready", serving, timeout=120)
    kubectl("apply", "-n", watched, "-f", str(EXAMPLES / "hello-run.yaml"))
    run = load_example("hello-run.yaml")["metadata"]["name"]
    wait_for(
        "the run on the chart's Temporal to succeed",
        lambda: (
            ((kubectl.get("agentrun", run, watched) or {}).get("status") or {}).get("phase") == "Succeeded"
        ),
        timeout=60,
    )
    worker_log = "".join(
        node_agent.logs(pod, "worker", namespace=watched) for pod in node_agent.processes(watched)
    )
    assert f"at {address}" in worker_log, worker_log

    # Several health intervals later, nothing happened where the operator has no rights.
    time.sleep(3 * HEALTH_INTERVAL_SECONDS)
    for namespace in (revoked, unwatched):
        body = kubectl.get("durableagent", name, namespace)
        assert body is not None and not body.get("status"), body
        assert kubectl.json("get", "deployments", "-n", namespace)["items"] == []
    user = release.service_account
    assert kubectl.can_i(user, "patch", "durableagents.durable-agents.dev", watched) == "yes"
    for namespace in (revoked, unwatched):
        assert kubectl.can_i(user, "list", "durableagents.durable-agents.dev", namespace) == "no"
        assert kubectl.can_i(user, "create", "deployments.apps", namespace) == "no"
    assert kubectl.can_i(user, "list", "durableagents.durable-agents.dev") == "no"  # all namespaces

    log = release.operator_log()
    assert f"namespaces {watched}, {revoked}" in log, log
    assert f"in namespace {revoked} the operator may not" in log, log
    assert unwatched not in log, log
