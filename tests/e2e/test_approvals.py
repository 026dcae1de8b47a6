"""Approving a tool call with kubectl on the real control plane: the chart's roles decide who may, its
admission policies record who did.

One agent whose `delete_file` calls need approval (tests/runtime/approval_agents.py, on every pod's
PYTHONPATH) and one AgentRun of it. People are impersonated users (`kubectl --as`): the apiserver then
authorizes and admits the request as that user, with the chart's RBAC and admission policies.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer, create_namespace
from .support import condition, temporal_cli, wait_for

pytestmark = pytest.mark.e2e

APPROVER, VIEWER, STRANGER = "alice", "victor", "mallory"
GROUP = "toolapprovals.durable-agents.dev"

AGENT = {
    "apiVersion": "durable-agents.dev/v1alpha1",
    "kind": "DurableAgent",
    "metadata": {"name": "files"},
    "spec": {
        "replicas": 1,
        "agent": {
            "name": "files",
            "model": "python:approval_agents:deleting",
            "toolsets": [{"id": "files", "entrypoint": "approval_agents:files"}],
        },
        "approvals": {"tools": [{"toolset": "files", "tool": "delete_*"}], "timeout": "10m"},
    },
}
RUN = {
    "apiVersion": "durable-agents.dev/v1alpha1",
    "kind": "AgentRun",
    "metadata": {"name": "tidy"},
    "spec": {"agentRef": {"name": "files"}, "prompt": "tidy up"},
}


def approval(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "durable-agents.dev/v1alpha1",
        "kind": "ToolApproval",
        "metadata": {"name": name},
        "spec": {"runRef": {"name": "tidy"}, **spec},
    }


def create_as(kubectl: Kubectl, user: str, manifest: dict[str, Any], namespace: str, directory: Path) -> Any:
    """`kubectl create -f FILE --as USER`, as a person would (the result, whatever its exit code)."""
    path = directory / f"{manifest['metadata']['name']}.yaml"
    path.write_text(json.dumps(manifest))
    return kubectl.run("create", "-f", str(path), "-n", namespace, f"--as={user}")


def payload_data(value: Any) -> list[str]:
    """The base64 `data` of every payload inside a history event (as `temporal workflow show -o json`)."""
    if isinstance(value, dict):
        own = [value["data"]] if isinstance(value.get("data"), str) and "metadata" in value else []
        return own + [d for item in value.values() for d in payload_data(item)]
    if isinstance(value, list):
        return [d for item in value for d in payload_data(item)]
    return []


def bind(kubectl: Kubectl, user: str, role: str, namespace: str) -> None:
    name = f"{user}-{role.rsplit('-', 1)[-1]}"
    kubectl("create", "rolebinding", name, f"--clusterrole={role}", f"--user={user}", "-n", namespace)


def test_an_approver_approves_with_kubectl_others_are_refused_and_the_decider_is_recorded(
    operator_release: Release, kubectl: Kubectl, e2e_temporal: ShortPollDevServer, tmp_path: Path
) -> None:
    namespace = create_namespace(kubectl)
    roles = f"{operator_release.fullname}-approver", f"{operator_release.fullname}-viewer"
    bind(kubectl, APPROVER, roles[0], namespace)
    bind(kubectl, VIEWER, roles[1], namespace)
    kubectl.apply(AGENT, RUN, namespace=namespace)

    # The run waits, and says so where kubectl looks.
    waited = kubectl.run(
        "wait", "--for=condition=AwaitingApproval", "agentrun/tidy", "-n", namespace, "--timeout=120s"
    )
    assert waited.returncode == 0, waited.stderr
    run = kubectl.get("agentrun", "tidy", namespace)
    assert run is not None
    assert run["status"]["phase"] == "AwaitingApproval"
    [pending] = run["status"]["pendingApprovals"]
    assert (pending["toolName"], pending["kind"], json.loads(pending["argsPreview"])) == (
        "delete_file",
        "approval",
        {"path": "a.txt"},
    )
    call_id = pending["toolCallId"]
    table = kubectl("get", "agentrun", "tidy", "-n", namespace).splitlines()
    assert table[0].split()[:4] == ["NAME", "AGENT", "PHASE", "WAITING"], table
    assert table[1].split()[:4] == ["tidy", "files", "AwaitingApproval", "delete_file"], table
    requested = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=ApprovalRequested")
    assert f"delete_file ({call_id}) waits for approval" in requested, requested
    wait_for(
        "the agent to count its waiting run",
        lambda: (
            ((kubectl.get("durableagent", "files", namespace) or {}).get("status") or {}).get(
                "awaitingApproval"
            )
            == 1
        ),
        timeout=60,
    )
    header = kubectl("get", "da", "files", "-n", namespace).splitlines()[0].split()
    assert "AWAITING" in header, header
    # The same count as a Prometheus gauge on the operator's /metrics (its pod IP, the chart's port).
    pod_ip = operator_release.operator_pod()["status"]["podIP"]
    with urllib.request.urlopen(f"http://{pod_ip}:9090/metrics", timeout=10) as response:
        metrics = response.read().decode()
    gauge = f'durable_agents_runs_awaiting_decision{{namespace="{namespace}",agent="files"}} 1'
    assert gauge in metrics.splitlines(), metrics

    # Who may decide is RBAC: a stranger and a viewer get 403 from the apiserver; the viewer may read.
    approve = approval("approve-delete", toolCallId=call_id, decision="Approve")
    for user in (STRANGER, VIEWER):
        refused = create_as(kubectl, user, approve, namespace, tmp_path)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr and f'User "{user}" cannot create resource "toolapprovals"' in (
            refused.stderr
        ), refused.stderr
    assert kubectl.can_i(VIEWER, "get", "agentruns.durable-agents.dev", namespace) == "yes"
    assert kubectl.can_i(APPROVER, "create", GROUP, namespace) == "yes"
    assert kubectl.can_i(APPROVER, "update", "agentruns.durable-agents.dev", namespace) == "no"
    assert kubectl.can_i(APPROVER, "create", GROUP, "default") == "no"  # bound in this namespace only

    # Who decided is the apiserver's word: deciding under another name is refused.
    impostor = create_as(kubectl, APPROVER, approval("as-bob", **approve["spec"], decidedBy="bob"), namespace,
                         tmp_path)  # fmt: skip
    assert impostor.returncode != 0
    assert "spec.decidedBy must be the name you are authenticated as (alice)" in impostor.stderr, (
        impostor.stderr
    )
    assert "you may not decide as bob" in impostor.stderr
    # A malformed ToolApproval is refused by the apiserver, naming the field.
    both = approval("both", toolCallId=call_id, all=True, decision="Approve")
    malformed = create_as(kubectl, APPROVER, both, namespace, tmp_path)
    assert malformed.returncode != 0 and "spec.toolCallId" in malformed.stderr, malformed.stderr
    no_answer = create_as(kubectl, APPROVER, approval("no-answer", toolCallId=call_id), namespace, tmp_path)
    assert no_answer.returncode != 0 and "spec.decision" in no_answer.stderr, no_answer.stderr

    # An unknown call id: admitted (it is well-formed), refused by the run, nothing changed.
    unknown = create_as(kubectl, APPROVER, approval("unknown", toolCallId="no-such-call", decision="Approve"),
                        namespace, tmp_path)  # fmt: skip
    assert unknown.returncode == 0, unknown.stderr
    refused_status = wait_for(
        "the unknown call's ToolApproval to be refused",
        lambda: (
            ((kubectl.get("toolapproval", "unknown", namespace) or {}).get("status") or {}).get("phase")
            == "Refused"
            and kubectl.get("toolapproval", "unknown", namespace)
        ),
        timeout=60,
    )["status"]
    assert "no pending call 'no-such-call'" in refused_status["message"], refused_status
    assert call_id in refused_status["message"]  # it names the call that does wait
    run = kubectl.get("agentrun", "tidy", namespace)
    assert run is not None and run["status"]["phase"] == "AwaitingApproval"
    assert [p["toolCallId"] for p in run["status"]["pendingApprovals"]] == [call_id]
    assert not run["status"].get("decisions")

    # The approver approves with kubectl create -f; the apiserver fills in who.
    created = create_as(kubectl, APPROVER, approve, namespace, tmp_path)
    assert created.returncode == 0, created.stderr
    body = kubectl.get("toolapproval", "approve-delete", namespace)
    assert body is not None and body["spec"]["decidedBy"] == APPROVER

    def finished() -> dict[str, Any] | None:
        found = kubectl.get("agentrun", "tidy", namespace) or {}
        return found if (found.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = wait_for("the approved run to finish", finished, timeout=90)["status"]
    assert done["phase"] == "Succeeded", done
    assert done["output"] == "model was told: deleted a.txt"
    [record] = done["decisions"]
    assert (record["toolCallId"], record["decision"], record["decidedBy"], record["toolApproval"]) == (
        call_id,
        "Approve",
        APPROVER,
        "approve-delete",
    )
    assert done["pendingApprovals"] == []
    assert condition({"status": done}, "AwaitingApproval") == "False"
    applied = kubectl.get("toolapproval", "approve-delete", namespace)
    assert applied is not None and applied["status"]["phase"] == "Applied", applied.get("status")
    assert applied["status"]["decidedBy"] == APPROVER
    # ... and in the workflow history (the decide Update's input).
    history = temporal_cli(
        e2e_temporal.address, "workflow", "show", "--workflow-id", done["workflowId"], "-o", "json"
    )
    accepted = [e for e in json.loads(history)["events"] if e["eventType"].endswith("UPDATE_ACCEPTED")]
    inputs = [json.loads(base64.b64decode(data)) for data in payload_data(accepted)]
    assert [i.get("decided_by") for i in inputs] == [APPROVER], inputs
    decided = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=ToolCallApproved")
    assert f"{APPROVER} approved {call_id}" in decided, decided
    wait_for(
        "the agent to count no waiting run",
        lambda: (
            ((kubectl.get("durableagent", "files", namespace) or {}).get("status") or {}).get(
                "awaitingApproval"
            )
            == 0
        ),
        timeout=60,
    )
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
