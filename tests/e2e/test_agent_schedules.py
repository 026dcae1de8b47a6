"""examples/scheduled.yaml through kubectl: its schedules become Temporal Schedules that fire on the real
worker, the status and `kubectl get` show the next run, and deleting the agent deletes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer, create_namespace
from .nodeagent import NodeAgent
from .support import condition, load_example, temporal_cli, wait_for

pytestmark = pytest.mark.e2e


def schedule_ids(address: str, namespace: str) -> set[str]:
    output = temporal_cli(address, "schedule", "list", "-o", "jsonl")
    ids = {json.loads(line)["scheduleId"] for line in output.splitlines() if line.strip()}
    return {i for i in ids if i.startswith(f"schedule:{namespace}/")}


def test_a_manifests_schedules_fire_on_the_cluster_and_go_away_with_the_agent(
    operator_release: Release, kubectl: Kubectl, node_agent: NodeAgent, e2e_temporal: ShortPollDevServer
) -> None:
    namespace, address = create_namespace(kubectl), e2e_temporal.address
    manifest = load_example("scheduled.yaml")
    name = manifest["metadata"]["name"]
    # The example's second schedule, unpaused and every 2 s, so it fires during the test.
    manifest["spec"]["schedules"][1].update(intervals=[{"every": "2s"}], paused=False)
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    expected = {f"schedule:{namespace}/{name}/morning", f"schedule:{namespace}/{name}/hourly-rome"}

    def fired() -> dict[str, Any] | None:
        body = kubectl.get("durableagent", name, namespace) or {}
        entries = {s["name"]: s for s in (body.get("status") or {}).get("schedules") or []}
        rome = entries.get("hourly-rome") or {}
        return body if rome.get("lastRunPhase") == "Succeeded" and "morning" in entries else None

    body = wait_for("a scheduled run to succeed", fired, timeout=120)
    assert condition(body, "SchedulesSynced") == "True"
    assert body["status"]["nextScheduledRun"]
    # Temporal's schedule listing is eventually consistent: give it a moment.
    wait_for("temporal schedule list to show both", lambda: schedule_ids(address, namespace) == expected)
    row = kubectl("get", "da", name, "-n", namespace, "--no-headers").split()
    assert any(cell.startswith(body["status"]["nextScheduledRun"][:4]) for cell in row), row  # Next Run

    kubectl("delete", "da", name, "-n", namespace, "--timeout=60s")
    wait_for("the schedules to be deleted", lambda: not schedule_ids(address, namespace), timeout=30)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
