"""Processes killed with SIGKILL in the middle of a run: a worker during a slow tool call, the operator.

The agent's toolset is tests/runtime/slow_tools.py (importable in every pod: the node agent puts its
directory on PYTHONPATH): the `test` model calls `fast_step` and `slow_step` at once, and each tool
appends `start|end <tool> <pid>` to the file named by SLOW_TOOLS_LOG, here in the worker pod's /tmp
emptyDir, which survives container restarts as in a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import LIVE_WITHIN_SECONDS, Kubectl, Release, ShortPollDevServer, create_namespace
from .nodeagent import NodeAgent
from .support import API_VERSION, condition, temporal_cli, wait_for, workflows

pytestmark = pytest.mark.e2e

SLOW_SECONDS = 6
AGENT = "slow"


@dataclass(frozen=True)
class SlowAgent:
    """The slow-tool agent of this module, with one worker replica."""

    namespace: str
    name: str = AGENT

    @property
    def task_queue(self) -> str:
        return f"{self.namespace}.{self.name}"


def slow_agent_manifest() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DurableAgent",
        "metadata": {"name": AGENT},
        "spec": {
            "replicas": 1,
            "agent": {
                "name": AGENT,
                "model": "test",
                "toolsets": [{"id": "slow", "entrypoint": "slow_tools:toolset"}],
            },
            "template": {
                "env": [
                    {"name": "SLOW_TOOLS_LOG", "value": "/tmp/slow-tools.log"},
                    {"name": "SLOW_TOOLS_SECONDS", "value": str(SLOW_SECONDS)},
                ]
            },
        },
    }


def run_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": AGENT}, "prompt": "Process the item."},
    }


def serving(kubectl: Kubectl, agent: SlowAgent, workers: int, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = kubectl.get("durableagent", agent.name, agent.namespace) or {}
        ok = condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == workers
        return body if ok else None

    return wait_for(f"{agent.name} Ready with {workers} polling worker(s)", check, timeout=timeout)


def run_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return ((kubectl.get("agentrun", name, namespace) or {}).get("status")) or {}


def worker_pod(kubectl: Kubectl, agent: SlowAgent) -> dict[str, Any]:
    selector = f"durable-agents.dev/agent={agent.name}"
    pods = kubectl.json("get", "pods", "-n", agent.namespace, "-l", selector)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in live]
    return live[0]


def tool_log(node_agent: NodeAgent, agent: SlowAgent, pod: str) -> list[tuple[str, str, int]]:
    path = node_agent.volume_dir(pod, "tmp", namespace=agent.namespace) / "slow-tools.log"
    if not path.exists():
        return []
    return [
        (event, tool, int(pid))
        for event, tool, pid in (line.split() for line in path.read_text().splitlines())
    ]


def completed_activities(address: str, workflow_id: str) -> int:
    events = json.loads(temporal_cli(address, "workflow", "show", "--workflow-id", workflow_id, "-o", "json"))
    return sum(1 for e in events["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")


@pytest.fixture(scope="module")
def slow(operator_release: Release, kubectl: Kubectl, node_agent: NodeAgent) -> Iterator[SlowAgent]:
    namespace = create_namespace(kubectl)
    kubectl.apply(slow_agent_manifest(), namespace=namespace)
    yield SlowAgent(namespace)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_worker_killed_mid_tool_call_run_still_succeeds_and_agent_recovers(
    slow: SlowAgent, kubectl: Kubectl, node_agent: NodeAgent, e2e_temporal: ShortPollDevServer
) -> None:
    serving(kubectl, slow, workers=1)
    pod = worker_pod(kubectl, slow)["metadata"]["name"]
    first = node_agent.pid(pod, "worker", namespace=slow.namespace)
    kubectl.apply(run_manifest("crash"), namespace=slow.namespace)

    wait_for(
        "the slow tool to start on the worker",
        lambda: ("start", "slow_step", first) in tool_log(node_agent, slow, pod),
        timeout=60,
    )
    workflow_id = wait_for(
        "the run's workflow id", lambda: run_status(kubectl, slow.namespace, "crash").get("workflowId")
    )
    # The first model request and the fast tool are completed in the history; only the slow tool is in flight.
    wait_for(
        "two completed activities",
        lambda: completed_activities(e2e_temporal.address, workflow_id) >= 2,
        timeout=SLOW_SECONDS - 1,
        interval=0.1,
    )
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()

    seen: set[tuple[str | None, str | None, str | None]] = set()

    def finished() -> dict[str, Any] | None:
        body = kubectl.get("durableagent", slow.name, slow.namespace) or {}
        seen.add((condition(body, "Ready"), condition(body, "Ready", "reason"), condition(body, "Degraded")))
        status = run_status(kubectl, slow.namespace, "crash")
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for("the run to finish after the kill", finished, timeout=120, interval=0.5)
    recovery = time.monotonic() - killed_at
    assert status["phase"] == "Succeeded", status
    assert "fast:" in status["output"] and "slow:" in status["output"], status["output"]

    log = tool_log(node_agent, slow, pod)
    second = node_agent.pid(pod, "worker", namespace=slow.namespace)
    starts = Counter(tool for event, tool, _ in log if event == "start")
    assert starts == {"fast_step": 1, "slow_step": 2}, log  # completed activities are not run again
    assert ("end", "slow_step", second) in log and ("end", "slow_step", first) not in log, log

    container = kubectl.json("get", "pod", pod, "-n", slow.namespace)["status"]["containerStatuses"][0]
    assert container["restartCount"] == 1
    assert container["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    # One replica: while its only worker restarts the agent is rolling out, not degraded.
    assert all(degraded != "True" for _, _, degraded in seen), seen
    # The dead worker keeps its poller entry in Temporal; it stops counting after the live window.
    body = serving(kubectl, slow, workers=1, timeout=LIVE_WITHIN_SECONDS + 30)
    assert condition(body, "Degraded") == "False"
    print(
        f"\nworker kill -9 → run succeeded after {recovery:.1f}s (slow tool {SLOW_SECONDS}s); states: {seen}"
    )


def test_operator_killed_mid_run_starts_each_workflow_once_and_catches_up(
    slow: SlowAgent,
    operator_release: Release,
    kubectl: Kubectl,
    node_agent: NodeAgent,
    e2e_temporal: ShortPollDevServer,
) -> None:
    serving(kubectl, slow, workers=1)
    operator = operator_release.operator_pod()
    restarts = operator["status"]["containerStatuses"][0]["restartCount"]
    kubectl.apply(run_manifest("during-restart"), namespace=slow.namespace)
    wait_for(
        "the run to be Running",
        lambda: run_status(kubectl, slow.namespace, "during-restart").get("phase") == "Running",
        timeout=30,
        interval=0.1,
    )

    os.kill(operator_release.operator_pid(), signal.SIGKILL)
    # Created while no operator runs: the restarted operator must start it, once.
    kubectl.apply(run_manifest("while-down"), namespace=slow.namespace)

    def restarted() -> bool:
        pod = kubectl.get("pod", operator["metadata"]["name"], operator_release.namespace) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) > restarts and statuses[0].get("ready", False)

    wait_for("the operator's restart", restarted, timeout=60)
    for name in ("during-restart", "while-down"):
        wait_for(
            f"AgentRun {name} to succeed",
            lambda name=name: run_status(kubectl, slow.namespace, name).get("phase") == "Succeeded",
            timeout=90,
        )
    for name in ("during-restart", "while-down"):
        uid = kubectl.json("get", "agentrun", name, "-n", slow.namespace)["metadata"]["uid"]
        started = workflows(e2e_temporal.address, f"WorkflowId STARTS_WITH 'agentrun-{uid}'")
        assert len(started) == 1, started
        assert started[0]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    # Every workflow on the agent's queue belongs to one AgentRun of this module.
    runs = kubectl.json("get", "agentruns", "-n", slow.namespace)["items"]
    on_queue = workflows(e2e_temporal.address, f"TaskQueue = '{slow.task_queue}'")
    assert sorted(w["execution"]["workflowId"] for w in on_queue) == sorted(
        f"agentrun-{r['metadata']['uid']}" for r in runs
    )
