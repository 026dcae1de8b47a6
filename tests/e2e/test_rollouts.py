"""Versioned rollouts on the real control plane: `spec.versioning.enabled` through kubectl.

One agent, one story: v1 serves; a long AgentRun sits in its slow tool; v2 is applied (two worker
Deployments, both in status); new AgentRuns run on v2 while the long one finishes on v1; the rollback
annotation makes v1 current at once and a second one (naming v2) rolls forward; v1 drains and its
Deployment is deleted. Which version ran a tool is read from the tool log in its pod's /tmp.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from durable_agents_api.resources import API_VERSION

from .conftest import Kubectl, Release
from .nodeagent import NodeAgent
from .support import condition, wait_for

pytestmark = pytest.mark.e2e

NAME = "rolled"
LONG_TOOL_SECONDS = 30
SUNSET = "3s"
TOOL_LOG = "/tmp/slow-tools.log"
"""In the pod's own /tmp (an emptyDir; the node agent gives each pod a directory of its own)."""


def _agent(instructions: str, seconds: float) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DurableAgent",
        "metadata": {"name": NAME},
        "spec": {
            "agent": {
                "name": NAME,
                "model": "test",
                "instructions": instructions,
                "toolsets": [{"id": "slow", "entrypoint": "slow_tools:toolset"}],
            },
            "versioning": {"enabled": True, "sunsetDelay": SUNSET},
            "template": {
                "env": [
                    {"name": "SLOW_TOOLS_LOG", "value": TOOL_LOG},
                    {"name": "SLOW_TOOLS_SECONDS", "value": str(seconds)},
                ]
            },
        },
    }


def _run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": NAME}, "prompt": "Process the item."},
    }


def _slow_tool(log: Path, event: str) -> bool:
    """Whether the slow tool logged `event` (start, end) in this log."""
    lines = log.read_text().splitlines() if log.exists() else []
    return any(line.split()[:2] == [event, "slow_step"] for line in lines)


def test_a_change_rolls_out_next_to_the_old_version_with_rollback_and_sunset(
    operator_release: Release, kubectl: Kubectl, node_agent: NodeAgent, namespace: str
) -> None:

    def status() -> dict[str, Any]:
        return (kubectl.get("durableagent", NAME, namespace) or {}).get("status") or {}

    def versions() -> dict[str, dict[str, Any]]:
        return {row["buildId"]: row for row in status().get("versions") or []}

    def deployments() -> set[str]:
        return {d["metadata"]["name"] for d in kubectl.json("get", "deployments", "-n", namespace)["items"]}

    def tool_log(build_id: str) -> Path | None:
        """The tool log of the version's (one) worker pod, once it runs; it stays after the pod is gone."""
        selector = f"durable-agents.dev/build-id={build_id}"
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
        try:
            volume = node_agent.volume_dir(pods[0]["metadata"]["name"], "tmp", namespace=namespace)
        except (IndexError, LookupError):
            return None
        return volume / Path(TOOL_LOG).name

    def phase(run: str) -> str | None:
        return ((kubectl.get("agentrun", run, namespace) or {}).get("status") or {}).get("phase")

    def events(reason: str) -> list[str]:
        items = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"reason={reason}")[
            "items"
        ]
        return [e["message"] for e in items]

    def annotate(value: str) -> None:
        kubectl("annotate", "durableagent", NAME, "-n", namespace, f"durable-agents.dev/rollback={value}")

    kubectl.apply(_agent("Be v1.", LONG_TOOL_SECONDS), namespace=namespace)
    v1 = wait_for("v1 current", lambda: status().get("currentVersion"), timeout=90)
    v1_log: Path = wait_for("v1's worker pod", lambda: tool_log(v1), timeout=30)
    kubectl.apply(_run("long"), namespace=namespace)
    wait_for("the long run inside v1's slow tool", lambda: _slow_tool(v1_log, "start"), timeout=60)

    applied = time.monotonic()
    kubectl.apply(_agent("Be v2.", 0.1), namespace=namespace)
    v2 = wait_for("v2 current", lambda: (c := status().get("currentVersion")) != v1 and c, timeout=90)
    rollout_seconds = time.monotonic() - applied
    assert deployments() == {f"{NAME}-worker-{v1}", f"{NAME}-worker-{v2}"}
    seen = versions()
    assert (seen[v2]["role"], seen[v1]["role"]) == ("current", "draining"), seen
    assert seen[v1]["pinnedOpenRuns"] == 1 and seen[v1]["replicas"] == 1, seen
    table = kubectl("get", "da", NAME, "-n", namespace).splitlines()
    assert v2 in table[1].split(), table  # the VERSION column

    def rollout_reason() -> str | None:
        return condition(kubectl.get("durableagent", NAME, namespace) or {}, "Rollout", "reason")

    def annotations() -> dict[str, str]:
        return (kubectl.get("durableagent", NAME, namespace) or {})["metadata"].get("annotations") or {}

    wait_for("routing handed to the task queue", lambda: rollout_reason() == "Complete", timeout=30)
    kubectl.apply(_run("fresh"), namespace=namespace)
    wait_for("the fresh run to succeed", lambda: phase("fresh") == "Succeeded", timeout=60)
    v2_log: Path = wait_for("v2's worker pod", lambda: tool_log(v2), timeout=30)
    assert _slow_tool(v2_log, "end") and not _slow_tool(v1_log, "end"), "the new run ran on v2"
    assert phase("long") == "Running"

    annotated = time.monotonic()
    annotate("previous")
    wait_for("rollback to v1", lambda: status().get("currentVersion") == v1, timeout=30)
    rollback_seconds = time.monotonic() - annotated
    assert status()["rollback"] == {"buildId": v1, "specBuildId": v2}
    wait_for("the annotation removed", lambda: "durable-agents.dev/rollback" not in annotations(), timeout=15)
    assert any(f"version {v1} becomes current at once" in m for m in events("VersionRolledBack"))
    forward = time.monotonic()
    annotate(v2)
    wait_for("roll forward to v2", lambda: status().get("currentVersion") == v2, timeout=30)
    forward_seconds = time.monotonic() - forward
    assert not status().get("rollback")

    wait_for("the long run to succeed", lambda: phase("long") == "Succeeded", timeout=LONG_TOOL_SECONDS + 30)
    finished = time.monotonic()
    assert _slow_tool(v1_log, "end"), "the long run finished on v1"
    wait_for("v1 drained", lambda: versions().get(v1, {}).get("role") in ("drained", None), timeout=30)
    drain_seconds = time.monotonic() - finished
    wait_for("v1's Deployment deleted", lambda: deployments() == {f"{NAME}-worker-{v2}"}, timeout=30)
    sunset_seconds = time.monotonic() - finished
    assert any(v1 in m for m in events("VersionSunset"))
    print(
        f"\ne2e rollout: apply -> new version current {rollout_seconds:.1f}s; rollback annotation -> "
        f"current {rollback_seconds:.1f}s, back {forward_seconds:.1f}s; last run finished -> drained "
        f"{drain_seconds:.1f}s, "
        f"Deployment deleted {sunset_seconds:.1f}s (sunsetDelay {SUNSET})"
    )
