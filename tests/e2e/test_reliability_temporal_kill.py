"""Fault matrix, Temporal under the operator: the dev server SIGKILLed while AgentRuns are in flight.

`test_temporal_outage.py` stops an idle server gracefully. Here a dev server of the test's own gets SIGKILL
while a batch of AgentRuns is inside a slow tool call (tests/runtime/slow_tools.py), stays down, and comes
back on the same ports and sqlite file. While it is down the agent must report Degraded /
TemporalUnreachable; after it is back, the same operator process (no restart) must report Ready again and
every AgentRun must succeed, each with exactly one workflow. The figures (time to report the outage, time
to Ready after the restart, time until every run succeeded) are recorded, not asserted.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer
from .reliability_figures import record
from .support import API_VERSION, condition, wait_for, workflows

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

LONG = os.environ.get("DA_RELIABILITY_LONG", "") not in ("", "0")
RUNS = 12 if LONG else 5
SLOW_SECONDS = 4
DOWN_SECONDS = 6


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[ShortPollDevServer]:
    with ShortPollDevServer(tmp_path / "temporal") as server:
        yield server


def manifests(address: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "TemporalConnection",
            "metadata": {"name": "killed"},
            "spec": {"address": address, "namespace": "default"},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "DurableAgent",
            "metadata": {"name": "survivor"},
            "spec": {
                "replicas": 1,
                "agent": {
                    "name": "survivor",
                    "model": "test",
                    "toolsets": [{"id": "slow", "entrypoint": "slow_tools:toolset"}],
                },
                "temporal": {"connectionRef": {"name": "killed"}},
                "template": {
                    "env": [
                        {"name": "SLOW_TOOLS_LOG", "value": "/tmp/slow-tools.log"},
                        {"name": "SLOW_TOOLS_SECONDS", "value": str(SLOW_SECONDS)},
                    ]
                },
            },
        },
    ]


def run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": "survivor"}, "prompt": "Process the item."},
    }


def test_temporal_killed_with_runs_in_flight_degrades_then_every_run_succeeds_once(
    operator_release: Release, kubectl: Kubectl, namespace: str, own_temporal: ShortPollDevServer
) -> None:
    def agent() -> dict[str, Any]:
        return kubectl.get("durableagent", "survivor", namespace) or {}

    def ready() -> bool:
        body = agent()
        return condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == 1

    operator_pid = operator_release.operator_pid()
    kubectl.apply(*manifests(own_temporal.address), namespace=namespace)
    wait_for("the agent to be Ready on its own Temporal", ready, timeout=120)

    names = [f"in-flight-{i}" for i in range(RUNS)]
    kubectl.apply(*(run(n) for n in names), namespace=namespace)

    def phases() -> dict[str, str | None]:
        items = kubectl.json("get", "agentruns", "-n", namespace)["items"]
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}

    wait_for(
        "every AgentRun to be Running",
        lambda: all(p == "Running" for p in phases().values()) and len(phases()) == RUNS,
        timeout=60,
    )
    time.sleep(1.0)  # inside the slow tool (it takes SLOW_SECONDS)

    ports = own_temporal.port, own_temporal.http_port, own_temporal.metrics_port
    assert own_temporal.pid is not None
    os.kill(own_temporal.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    own_temporal.stop()

    def unreachable() -> bool:
        body = agent()
        return (
            condition(body, "Degraded") == "True"
            and condition(body, "Degraded", "reason") == "TemporalUnreachable"
        )

    wait_for("Degraded with reason TemporalUnreachable", unreachable, timeout=60)
    reported_after = time.monotonic() - killed_at
    assert all(p in ("Running", "Pending") for p in phases().values()), (
        f"runs ended while their Temporal was down: {phases()}"
    )
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - killed_at)))

    port, http_port, metrics_port = ports
    restarted = ShortPollDevServer(
        own_temporal.state_dir, port=port, http_port=http_port, metrics_port=metrics_port
    )
    with restarted:
        restarted_at = time.monotonic()
        down = restarted_at - killed_at
        wait_for("the agent to be Ready again", ready, timeout=120)
        ready_after = time.monotonic() - restarted_at

        def all_done() -> dict[str, str | None] | None:
            current = phases()
            return current if all(p in ("Succeeded", "Failed") for p in current.values()) else None

        final = wait_for("every AgentRun to finish", all_done, timeout=180)
        done_after = time.monotonic() - restarted_at
        found = workflows(restarted.address, f"TaskQueue = '{namespace}.survivor'")
        degraded_after = condition(agent(), "Degraded")

    same_operator = operator_release.operator_pid() == operator_pid
    figures = {
        "AgentRuns in flight": RUNS,
        "Temporal down (s)": round(down, 1),
        "SIGKILL -> Degraded/TemporalUnreachable (s)": round(reported_after, 1),
        "restart -> Ready (s)": round(ready_after, 1),
        "restart -> every run finished (s)": round(done_after, 1),
        "succeeded": sum(1 for p in final.values() if p == "Succeeded"),
        "workflows on the task queue": len(found),
        "operator restarted": not same_operator,
    }
    record("temporal-kill-operator" + ("-long" if LONG else ""), figures)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))

    assert same_operator, "the operator process was replaced: it must recover without a restart"
    assert final == dict.fromkeys(names, "Succeeded"), final
    assert len(found) == RUNS, f"{len(found)} workflows for {RUNS} AgentRuns: {found}"
    assert degraded_after == "False", "still Degraded after Temporal came back and every run finished"
