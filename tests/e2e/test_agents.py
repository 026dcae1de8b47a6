"""examples/hello.yaml through kubectl: workers, runs, scaling and deletion on the real control plane.

The tests share one `hello` agent (module scope) and build on each other in file order: ready, run,
scale to three, delete. Each still checks its own starting point, so a failure names the right step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from durable_agents_runtime import demo

from .conftest import Kubectl, Release, ShortPollDevServer, create_namespace
from .nodeagent import NodeAgent
from .support import EXAMPLES, alive, condition, load_example, temporal_cli, wait_for, workflows

pytestmark = pytest.mark.e2e

PRINTER_COLUMNS = [
    "NAME", "READY", "REPLICAS", "WORKERS", "BACKLOG", "RUNNING", "FAILED", "AWAITING", "VERSION",
    "NEXT", "RUN", "AGE",
]  # fmt: skip


@dataclass(frozen=True)
class Agent:
    """A DurableAgent applied for the test module."""

    name: str
    namespace: str

    def get(self, kubectl: Kubectl) -> dict[str, Any]:
        found = kubectl.get("durableagent", self.name, self.namespace)
        assert found is not None, f"DurableAgent {self.namespace}/{self.name} is gone"
        return found


def wait_until_serving(kubectl: Kubectl, agent: Agent, workers: int, timeout: float = 120) -> dict[str, Any]:
    """Wait for Ready=True with exactly `workers` workers polling; return the DurableAgent."""

    def serving() -> dict[str, Any] | None:
        body = agent.get(kubectl)
        status = body.get("status") or {}
        ok = condition(body, "Ready") == "True" and status.get("workers") == workers
        return body if ok else None

    return wait_for(f"{agent.name} Ready with {workers} polling worker(s)", serving, timeout=timeout)


def worker_pods(kubectl: Kubectl, agent: Agent) -> list[dict[str, Any]]:
    selector = f"durable-agents.dev/agent={agent.name}"
    pods = kubectl.json("get", "pods", "-n", agent.namespace, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def owned_children(kubectl: Kubectl, agent: Agent, uid: str) -> dict[str, list[str]]:
    """Kind → names of the objects in the agent's namespace whose owner is the agent."""
    children: dict[str, list[str]] = {}
    for kind in ("configmaps", "deployments", "services", "networkpolicies"):
        for item in kubectl.json("get", kind, "-n", agent.namespace)["items"]:
            owners = item["metadata"].get("ownerReferences") or []
            if any(owner["uid"] == uid and owner.get("controller") for owner in owners):
                children.setdefault(kind, []).append(item["metadata"]["name"])
    return children


@pytest.fixture(scope="module")
def hello(operator_release: Release, kubectl: Kubectl, node_agent: NodeAgent) -> Iterator[Agent]:
    """examples/hello.yaml, applied as a user would, in a namespace of its own."""
    namespace = create_namespace(kubectl)
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "hello.yaml"))
    yield Agent(load_example("hello.yaml")["metadata"]["name"], namespace)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_hello_example_becomes_ready_with_a_polling_worker(
    hello: Agent, kubectl: Kubectl, node_agent: NodeAgent, e2e_temporal: ShortPollDevServer
) -> None:
    body = wait_until_serving(kubectl, hello, workers=1)
    status = body["status"]
    assert condition(body, "Degraded") == "False"
    assert condition(body, "TemporalReachable") == "True"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["taskQueue"] == f"{hello.namespace}.{hello.name}"
    assert status["readyReplicas"] == 1

    children = owned_children(kubectl, hello, body["metadata"]["uid"])
    assert set(children) == {"configmaps", "deployments", "services", "networkpolicies"}, children

    (pod,) = worker_pods(kubectl, hello)
    pid = node_agent.pid(pod["metadata"]["name"], "worker", namespace=hello.namespace)
    # The console script runs under the venv's Python: [python, .../durable-agents, worker].
    command = [arg.decode() for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    assert command[-1] == "worker" and command[-2].endswith("/durable-agents"), command
    log = node_agent.logs(pod["metadata"]["name"], "worker", namespace=hello.namespace)
    assert f"polling task queue {status['taskQueue']} at {e2e_temporal.address}" in log, log

    table = kubectl("get", "da", "-n", hello.namespace).splitlines()
    assert table[0].split() == PRINTER_COLUMNS, table
    assert table[1].split()[:8] == [hello.name, "True", "1", "1", "0", "0", "0", "0"], table


def test_agent_run_succeeds_with_output_and_usage_and_temporal_lists_it(
    hello: Agent, kubectl: Kubectl, e2e_temporal: ShortPollDevServer
) -> None:
    wait_until_serving(kubectl, hello, workers=1)
    run = load_example("hello-run.yaml")
    kubectl("apply", "-n", hello.namespace, "-f", str(EXAMPLES / "hello-run.yaml"))
    name = run["metadata"]["name"]

    def finished() -> dict[str, Any] | None:
        body = kubectl.get("agentrun", name, hello.namespace)
        phase = ((body or {}).get("status") or {}).get("phase")
        return body if phase in ("Succeeded", "Failed") else None

    body = wait_for(f"AgentRun {name} to finish", finished, timeout=60)
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    # The demo model reads the city from the prompt, calls both demo tools, and answers from their results.
    output = status["output"]
    assert demo.get_weather("Paris") in output and demo.get_local_time("Paris") in output, output
    assert status["outputSize"] == len(status["output"].encode()) and not status["outputTruncated"]
    usage = status["usage"]
    assert usage["requests"] == 2 and usage["toolCalls"] == 2, usage
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0, usage
    assert status["workflowId"] == f"agentrun-{body['metadata']['uid']}"

    (listed,) = workflows(e2e_temporal.address, f"WorkflowId = '{status['workflowId']}'")
    assert listed["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED", listed
    assert listed["taskQueue"] == f"{hello.namespace}.{hello.name}"
    assert listed["type"]["name"] == "DurableAgentRun"


def test_agent_runs_naming_a_session_are_its_turns_in_order(
    hello: Agent, kubectl: Kubectl, e2e_temporal: ShortPollDevServer
) -> None:
    wait_until_serving(kubectl, hello, workers=1)
    names = ["chat-turn-1", "chat-turn-2"]

    def run(name: str, prompt: str) -> dict[str, Any]:
        return {
            "apiVersion": "durable-agents.dev/v1alpha1",
            "kind": "AgentRun",
            "metadata": {"name": name},
            "spec": {"agentRef": {"name": hello.name}, "prompt": prompt, "session": "kube-chat"},
        }

    def finished(name: str) -> dict[str, Any] | None:
        body = kubectl.get("agentrun", name, hello.namespace)
        phase = ((body or {}).get("status") or {}).get("phase")
        return body if phase in ("Succeeded", "Failed") else None

    statuses = []
    for name, prompt in zip(names, ["Weather in Paris?", "And in Rome?"], strict=True):
        kubectl.apply(run(name, prompt), namespace=hello.namespace)
        body = wait_for(f"AgentRun {name} to finish", lambda n=name: finished(n), timeout=60)
        statuses.append(body["status"])

    assert [s["phase"] for s in statuses] == ["Succeeded", "Succeeded"], statuses
    assert [s["turn"] for s in statuses] == [1, 2]
    assert demo.get_weather("Rome") in statuses[1]["output"], statuses[1]
    session_id = f"session:{hello.namespace}.{hello.name}:kube-chat"
    assert {s["workflowId"] for s in statuses} == {session_id}
    (listed,) = workflows(e2e_temporal.address, f"WorkflowId = '{session_id}'")
    assert listed["status"] == "WORKFLOW_EXECUTION_STATUS_RUNNING", listed
    assert listed["type"]["name"] == "DurableAgentSession"


def test_scaling_to_three_replicas_gives_three_polling_workers(
    hello: Agent, kubectl: Kubectl, node_agent: NodeAgent, e2e_temporal: ShortPollDevServer
) -> None:
    wait_until_serving(kubectl, hello, workers=1)
    kubectl("scale", "da", hello.name, "--replicas=3", "-n", hello.namespace)

    body = wait_until_serving(kubectl, hello, workers=3)
    assert condition(body, "Ready", "reason") == "AllWorkersPolling"
    assert body["status"]["readyReplicas"] == 3 and body["spec"]["replicas"] == 3
    pods = worker_pods(kubectl, hello)
    assert len(pods) == 3
    # Three processes, each probed and bound on its own pod IP.
    pids = {node_agent.pid(p["metadata"]["name"], "worker", namespace=hello.namespace) for p in pods}
    assert len(pids) == 3 and all(map(alive, pids))
    assert len({p["status"]["podIP"] for p in pods}) == 3
    # Temporal sees each of these processes poll (a worker's identity is `<pid>@<host>`).
    queue = ["--task-queue", body["status"]["taskQueue"]]
    described = temporal_cli(e2e_temporal.address, "task-queue", "describe", *queue, "-o", "json")
    polling = {poller["identity"].split("@")[0] for poller in json.loads(described)["pollers"]}
    assert {str(pid) for pid in pids} <= polling, (pids, polling)


def test_the_workers_network_policy_selects_them_opens_what_the_spec_needs_and_follows_spec_changes(
    hello: Agent, kubectl: Kubectl, e2e_temporal: ShortPollDevServer
) -> None:
    """The session's chart has networkPolicy.enabled: the operator makes `<agent>-worker` itself."""
    replicas = hello.get(kubectl)["spec"].get("replicas", 1)  # the scaling test may have run first
    wait_until_serving(kubectl, hello, workers=replicas)
    policy = kubectl.json("get", "networkpolicy", f"{hello.name}-worker", "-n", hello.namespace)
    pods = worker_pods(kubectl, hello)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for pod in pods:
        assert selector.items() <= pod["metadata"]["labels"].items(), (selector, pod["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    temporal_port = int(e2e_temporal.address.rsplit(":", 1)[1])
    opened = [(p["port"], p.get("protocol")) for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert {(53, "UDP"), (53, "TCP"), (temporal_port, "TCP"), (443, "TCP")} <= set(opened), opened

    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}
    patch = {"spec": {"template": {"egress": [extra]}}}
    kubectl("patch", "da", hello.name, "-n", hello.namespace, "--type=merge", "-p", json.dumps(patch))

    def patched() -> bool:
        live = kubectl.json("get", "networkpolicy", f"{hello.name}-worker", "-n", hello.namespace)
        return extra in live["spec"]["egress"]

    wait_for("the agent's spec.template.egress in its workers' NetworkPolicy", patched, timeout=60)
    # An egress change is the policy's alone: the worker keeps running.
    assert {p["metadata"]["uid"] for p in worker_pods(kubectl, hello)} == {p["metadata"]["uid"] for p in pods}


def test_deleting_agent_removes_its_objects_and_stops_its_workers(
    hello: Agent, kubectl: Kubectl, node_agent: NodeAgent
) -> None:
    body = hello.get(kubectl)
    children = owned_children(kubectl, hello, body["metadata"]["uid"])
    assert set(children) == {"configmaps", "deployments", "services", "networkpolicies"}, children
    pids = set()
    for processes in node_agent.processes(hello.namespace).values():
        pids |= set(processes.values())
    assert pids

    kubectl("delete", "da", hello.name, "-n", hello.namespace, "--timeout=60s")

    def all_gone() -> bool:
        return not (
            owned_children(kubectl, hello, body["metadata"]["uid"])
            or kubectl.json("get", "replicasets", "-n", hello.namespace)["items"]
            or kubectl.json("get", "pods", "-n", hello.namespace)["items"]
        )

    wait_for(
        "garbage collection of the ConfigMap, Deployment, Service, NetworkPolicy and pods",
        all_gone,
        timeout=90,
    )
    wait_for(
        "the worker processes to stop",
        lambda: not node_agent.processes(hello.namespace) and not any(map(alive, pids)),
        timeout=60,
    )


def test_a_new_agent_whose_service_belongs_to_someone_else_reports_the_conflict_and_leaves_nothing(
    operator_release: Release, kubectl: Kubectl
) -> None:
    # A new agent is applied without reading its objects first (server-side apply without force); the
    # API server's refusal of a second controller must still end in ObjectConflict, with nothing built.
    namespace = create_namespace(kubectl, "conflict")
    manifest = load_example("hello.yaml")
    name = manifest["metadata"]["name"]
    kubectl("create", "configmap", "owner", "-n", namespace)
    owner = kubectl.json("get", "configmap", "owner", "-n", namespace)["metadata"]
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["uid"],
        "controller": True,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-metrics", "namespace": namespace, "ownerReferences": [reference]},
        "spec": {"ports": [{"name": "other", "port": 1234}], "selector": {"app": "other"}},
    }
    kubectl.apply(service, namespace=namespace)
    try:
        kubectl.apply(manifest, namespace=namespace)

        def conflict() -> dict[str, Any] | None:
            body = kubectl.get("durableagent", name, namespace) or {}
            ready = [c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == "Ready"]
            return ready[0] if ready and ready[0]["reason"] == "ObjectConflict" else None

        ready = wait_for("Ready=False with reason ObjectConflict", conflict, timeout=60)
        assert f"{name}-metrics" in ready["message"], ready
        uid = kubectl.json("get", "durableagent", name, "-n", namespace)["metadata"]["uid"]
        assert owned_children(kubectl, Agent(name, namespace), uid) == {}
        after = kubectl.json("get", "service", f"{name}-metrics", "-n", namespace)
        assert [ref["uid"] for ref in after["metadata"]["ownerReferences"]] == [owner["uid"]]
        assert [p["port"] for p in after["spec"]["ports"]] == [1234]
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
