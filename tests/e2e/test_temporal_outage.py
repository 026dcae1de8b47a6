"""A Temporal that goes away and comes back: agents report TemporalUnreachable, then serve again.

The test has a dev server of its own (not the session's), reached through a TemporalConnection. It is
stopped, then started again on the same ports with the same sqlite file, as a restarted server would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer
from .support import API_VERSION, condition, wait_for, workflows

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[ShortPollDevServer]:
    with ShortPollDevServer(tmp_path / "temporal") as server:
        yield server


def manifests(address: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "TemporalConnection",
            "metadata": {"name": "own"},
            "spec": {"address": address, "namespace": "default"},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "DurableAgent",
            "metadata": {"name": "outage"},
            "spec": {
                "replicas": 1,
                "agent": {
                    "name": "outage",
                    "model": "test",
                    "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
                },
                "temporal": {"connectionRef": {"name": "own"}},
            },
        },
    ]


def agent_state(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    return kubectl.get("durableagent", "outage", namespace) or {}


def connection_reachable(kubectl: Kubectl, namespace: str) -> str | None:
    return condition(kubectl.get("temporalconnection", "own", namespace) or {}, "Reachable")


def test_temporal_outage_degrades_agents_and_recovery_makes_them_ready(
    operator_release: Release, kubectl: Kubectl, namespace: str, own_temporal: ShortPollDevServer
) -> None:
    kubectl.apply(*manifests(own_temporal.address), namespace=namespace)

    def ready() -> bool:
        body = agent_state(kubectl, namespace)
        return condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == 1

    wait_for("the agent to be Ready on its own Temporal", ready, timeout=120)
    ports = own_temporal.port, own_temporal.http_port, own_temporal.metrics_port
    own_temporal.stop()

    def unreachable() -> dict[str, Any] | None:
        body = agent_state(kubectl, namespace)
        degraded = condition(body, "Degraded") == "True"
        return body if degraded and condition(body, "Degraded", "reason") == "TemporalUnreachable" else None

    body = wait_for("Degraded with reason TemporalUnreachable", unreachable, timeout=60)
    assert condition(body, "Ready") == "False"
    assert condition(body, "Ready", "reason") == "TemporalUnreachable"
    assert condition(body, "TemporalReachable") == "False"
    assert f"{namespace}.outage" in (condition(body, "TemporalReachable", "message") or ""), body["status"]
    wait_for(
        "the TemporalConnection to report Reachable=False",
        lambda: connection_reachable(kubectl, namespace) == "False",
        timeout=30,
    )
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=outage")
    assert "TemporalUnreachable" in events, events

    port, http_port, metrics_port = ports
    restarted = ShortPollDevServer(
        own_temporal.state_dir, port=port, http_port=http_port, metrics_port=metrics_port
    )
    with restarted:
        wait_for("the agent to be Ready again", ready, timeout=120)
        body = agent_state(kubectl, namespace)
        assert condition(body, "Degraded") == "False"
        assert condition(body, "TemporalReachable") == "True"
        wait_for(
            "the TemporalConnection to report Reachable=True",
            lambda: connection_reachable(kubectl, namespace) == "True",
            timeout=30,
        )
        # It serves runs again, on the same server state.
        run = {
            "apiVersion": API_VERSION,
            "kind": "AgentRun",
            "metadata": {"name": "after-outage"},
            "spec": {"agentRef": {"name": "outage"}, "prompt": "Weather in Tokyo?"},
        }
        kubectl.apply(run, namespace=namespace)

        def run_phase() -> str | None:
            status = (kubectl.get("agentrun", "after-outage", namespace) or {}).get("status") or {}
            return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None

        assert wait_for("the run after the outage", run_phase, timeout=60) == "Succeeded"
        assert workflows(restarted.address, f"TaskQueue = '{namespace}.outage'")
