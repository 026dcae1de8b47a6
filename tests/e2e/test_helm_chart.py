"""The Helm chart on a real control plane: the operator runs as a pod under its own service account."""

from __future__ import annotations

import pytest

from .conftest import Helm, Kubectl, Release
from .nodeagent import NodeAgent
from .support import service_account_of

pytestmark = pytest.mark.e2e


def test_chart_runs_operator_under_its_service_account_and_helm_test_passes(
    operator_release: Release, helm: Helm, kubectl: Kubectl, node_agent: NodeAgent
) -> None:
    release = operator_release
    pod = release.operator_pod()
    assert pod["spec"]["serviceAccountName"] == release.fullname
    pid = node_agent.pid(pod["metadata"]["name"], "operator", namespace=release.namespace)
    # The process holds a token of the release's service account, bound to its pod, and nothing else.
    assert service_account_of(pid) == release.service_account
    log = release.operator_log()
    assert "all namespaces" in log, log
    assert "may not" not in log, log  # its start-up permission check found nothing missing

    # What that account may do is what the chart grants: its resources and children, no more.
    user = release.service_account
    assert kubectl.can_i(user, "patch", "durableagents.durable-agents.dev") == "yes"
    assert kubectl.can_i(user, "patch", "deployments.apps") == "yes"
    assert kubectl.can_i(user, "list", "secrets") == "no"
    assert kubectl.can_i(user, "create", "pods") == "no"

    status = helm("status", release.name, "-n", release.namespace)
    assert "STATUS: deployed" in status
    tested = helm("test", release.name, "-n", release.namespace, "--timeout", "120s")
    assert "Phase:          Succeeded" in tested, tested
