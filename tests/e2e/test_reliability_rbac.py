"""RBAC least privilege, judged on what the operator really did: the apiserver's audit log of the session.

The session's control plane logs the metadata of every service-account request (`AUDIT_POLICY` in
conftest.py). This test runs after every other e2e test and reads the requests of the cluster-wide
operator's service account. Every request must have been allowed by the chart's ClusterRole (no 403),
and every grant of that ClusterRole must be either used in the log or needed for a reason the log
cannot show (`UNSEEN_NEEDS`, each with its reason). Grants outside both are unused privilege.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from .audit import audit_log as control_plane_audit_log
from .audit import requested_at, service_account_requests
from .cluster import ControlPlane
from .conftest import Kubectl, Release
from .reliability_figures import record

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.after_all_e2e]

Grant = tuple[str, str, str]  # (API group, resource[/subresource], verb)

CHILDREN = (
    ("", "configmaps"),
    ("", "services"),
    ("apps", "deployments"),
    ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"),  # the session's chart has networkPolicy.enabled
)
GROUP = "durable-agents.dev"

UNSEEN_NEEDS: dict[Grant, str] = {
    # Server-side apply of an object that does not exist yet is a PATCH the apiserver also authorizes as
    # create; the audit log records only the patch.
    **{(g, r, "create"): "server-side apply creates the child (authorized as create)" for g, r in CHILDREN},
    # The planner deletes children the spec no longer wants (a PDB when replicas drop below 2, the
    # metrics Service when Prometheus is off); the e2e scenarios may not go through every one.
    **{(g, r, "delete"): "the planner deletes children the spec no longer wants" for g, r in CHILDREN},
    ("", "secrets", "get"): "the operator reads a TemporalConnection's CA, client certificate and API key",
    # Only versioned agents do it, and no e2e scenario has one yet (tests/operator/test_operator_rollouts.py).
    **{
        (g, r, "list"): "versioned agents (spec.versioning.enabled) list their per-version children"
        for g, r in (("", "configmaps"), ("apps", "deployments"))
    },
    # Owner references with blockOwnerDeletion need it where OwnerReferencesPermissionEnforcement is on
    # (not in the test control plane).
    (GROUP, "durableagents/finalizers", "update"): "blockOwnerDeletion on the agent's children",
    (GROUP, "agentruns/finalizers", "update"): "blockOwnerDeletion on owned objects",
}
"""Grants the code needs that the session's scenarios may not show, each with the code path that uses it."""


def _allowed(event: dict[str, Any]) -> bool:
    """RBAC's decision (a 403 can also come from admission, e.g. a namespace being deleted)."""
    return (event.get("annotations") or {}).get("authorization.k8s.io/decision") == "allow"


def _grant(event: dict[str, Any]) -> Grant | None:
    ref = event.get("objectRef")
    if not ref:
        return None  # a non-resource URL (discovery, /version): no RBAC rule of ours is involved
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return (ref.get("apiGroup", ""), resource, event["verb"])


def _granted(kubectl: Kubectl, name: str) -> set[Grant]:
    rules = kubectl.json("get", "clusterrole", name)["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def test_operator_uses_only_what_the_chart_grants_and_the_chart_grants_only_what_is_used(
    control_plane: ControlPlane, operator_release: Release, kubectl: Kubectl
) -> None:
    audit_log = control_plane_audit_log(control_plane)
    assert audit_log.exists(), f"no audit log at {audit_log}: the control plane runs without AUDIT_POLICY"
    requests = service_account_requests(audit_log, operator_release.service_account)
    assert requests, f"no request of {operator_release.service_account} in the audit log"

    # While a restarted apiserver starts (test_reliability_apiserver_restart.py) its RBAC authorizer denies
    # requests until its caches are filled: not the chart's doing.
    starting = [(stopped, ready + 2.0) for stopped, ready in control_plane.restarts]

    def while_starting(event: dict[str, Any]) -> bool:
        return any(start <= requested_at(event) <= end for start, end in starting)

    denied = Counter(g for e in requests if (g := _grant(e)) and not _allowed(e) and not while_starting(e))
    denied_while_starting = sum(1 for e in requests if not _allowed(e) and while_starting(e))
    used = Counter(g for e in requests if (g := _grant(e)) and _allowed(e))
    refused_by_admission = sum(
        1 for e in requests if _allowed(e) and (e.get("responseStatus") or {}).get("code") == 403
    )
    # A namespaced release (test_watch_namespaces.py) must never have been allowed anything cluster-wide
    # but asking about its own permissions.
    scoped = [
        e
        for e in service_account_requests(audit_log)
        if e["user"]["username"].endswith("-durable-agents")
        and e["user"]["username"] != operator_release.service_account
    ]
    scoped_cluster_wide = sorted(
        {
            g
            for e in scoped
            if (g := _grant(e))
            and _allowed(e)
            and not (e.get("objectRef") or {}).get("namespace")
            and g[1] != "selfsubjectaccessreviews"
        }
    )
    granted = _granted(kubectl, operator_release.fullname)
    wildcards = sorted(g for g in granted if any("*" in part for part in g))
    needed = set(used) | set(UNSEEN_NEEDS)
    unused = sorted(granted - needed)
    # Every authenticated user may ask about its own permissions (system:basic-user): not the chart's grant.
    ungranted_use = sorted(g for g in set(used) - granted if g[1] != "selfsubjectaccessreviews")

    figures = {
        "operator requests in the audit log": len(requests),
        "grants in the ClusterRole": len(granted),
        "grants used in the log": len(granted & set(used)),
        "grants needed but not seen (reasoned)": len(granted & (set(UNSEEN_NEEDS) - set(used))),
        "unused grants": ", ".join("/".join(g) for g in unused) or "none",
        "denied requests (RBAC)": sum(denied.values()),
        "denied while a restarted apiserver started (ignored)": denied_while_starting,
        "refused by admission (namespace terminating)": refused_by_admission,
        "namespaced release: requests / allowed cluster-wide": f"{len(scoped)} / {len(scoped_cluster_wide)}",
        "used": ", ".join(f"{'/'.join(g)} x{n}" for g, n in sorted(used.items())),
    }
    record("rbac-least-privilege", figures)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))

    assert not wildcards, f"wildcard grants: {wildcards}"
    assert not denied, f"the operator was denied: {dict(denied)}"
    assert not ungranted_use, f"used without a grant (through an aggregated role?): {ungranted_use}"
    assert not unused, f"the chart grants what the operator never uses: {unused}"
    assert not scoped_cluster_wide, f"a namespaced release was allowed cluster-wide: {scoped_cluster_wide}"
