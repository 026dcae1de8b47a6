"""Fault matrix, the operator itself: SIGKILLed at seeded points while agents and runs change under it.

Each round makes one to three seeded changes in one namespace — DurableAgents created, scaled (through
the scale subresource or `spec.replicas`), changed (instructions and a pod env value) and deleted, and
AgentRuns started on a long-lived agent — then SIGKILLs the operator process after a seeded delay (so the
kill lands inside the reconciles the changes started), half of the time makes one more change while no
operator runs, and waits for everything to converge after the restart:

- every DurableAgent: `status.observedGeneration` current, Ready True, Degraded False, as many ready
  replicas as `spec.replicas`;
- its children exactly as desired: the ConfigMap (with the current instructions), the Deployment (the
  replicas and env value asked for), the metrics Service, a PodDisruptionBudget only from two replicas,
  each controlled by the agent; no object or worker pod left of a deleted agent (no orphans);
- every AgentRun Running or Succeeded with its workflow id, and exactly one Temporal workflow per AgentRun
  (listed by the id the operator derives), none that belongs to no AgentRun.

At the end every run must have succeeded. The figures (kills, resources, convergence time after each
kill, orphans and duplicate workflows, both goal 0) are recorded. CI: 6 kills; DA_RELIABILITY_LONG=1: 25.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import Kubectl, Release, ShortPollDevServer, create_namespace
from .reliability_figures import record
from .support import API_VERSION, condition, workflows

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

LONG = os.environ.get("DA_RELIABILITY_LONG", "") not in ("", "0")
SEED = int(os.environ.get("DA_RELIABILITY_SEED", "1302"))
KILLS = 25 if LONG else 6
RUNNER = "runner"
"""The agent runs are started on: changed and scaled, never deleted (so every run can finish)."""
EXTRAS = ("a0", "a1", "a2")
"""Agents that come and go."""
CONVERGE_BOUND = 150.0
"""Seconds a round may take to converge after the kill (operator restart, worker start, health read)."""
LABEL_AGENT = "durable-agents.dev/agent"
CHILD_KINDS = "configmaps,deployments,services,poddisruptionbudgets,networkpolicies"


def agent_manifest(name: str, replicas: int, mark: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DurableAgent",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "agent": {
                "name": name.replace("-", "_"),  # an agent name is an identifier
                "model": "python:durable_agents_runtime.demo:model",
                "instructions": f"You are a concise travel assistant [mark {mark}].",
                "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
            },
            "template": {"env": [{"name": "MARK", "value": str(mark)}]},
        },
    }


def run_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": RUNNER}, "prompt": "What is the weather like in Paris?"},
    }


@dataclass
class Desired:
    replicas: int
    mark: int


@dataclass
class Fleet:
    """What the test asked for in its namespace, and the seeded changes that ask for more."""

    kubectl: Kubectl
    namespace: str
    rng: random.Random
    agents: dict[str, Desired] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    marks: int = 0
    done: Counter[str] = field(default_factory=Counter)

    def kube(self, *args: str) -> None:
        self.kubectl(*args, "-n", self.namespace)

    def create(self, name: str, replicas: int) -> None:
        self.marks += 1
        self.kubectl.apply(agent_manifest(name, replicas, self.marks), namespace=self.namespace)
        self.agents[name] = Desired(replicas, self.marks)
        self.done["create"] += 1

    def scale(self, name: str, replicas: int) -> None:
        if self.rng.random() < 0.5:
            self.kube("scale", "durableagent", name, f"--replicas={replicas}")
        else:
            patch = json.dumps({"spec": {"replicas": replicas}})
            self.kube("patch", "durableagent", name, "--type=merge", "-p", patch)
        self.agents[name].replicas = replicas
        self.done["scale"] += 1

    def change(self, name: str) -> None:
        self.marks += 1
        desired = self.agents[name]
        self.kubectl.apply(agent_manifest(name, desired.replicas, self.marks), namespace=self.namespace)
        desired.mark = self.marks
        self.done["change"] += 1

    def delete(self, name: str) -> None:
        self.kube("delete", "durableagent", name, "--wait=false")
        del self.agents[name]
        self.done["delete"] += 1

    def start_run(self) -> None:
        name = f"run-{len(self.runs)}"
        self.kubectl.apply(run_manifest(name), namespace=self.namespace)
        self.runs.append(name)
        self.done["run"] += 1

    def random_change(self) -> None:
        """One seeded change: create, scale, change or delete an agent, or start a run."""
        live = [n for n in EXTRAS if n in self.agents]
        absent = [n for n in EXTRAS if n not in self.agents]
        choices = (
            ["run", "run", "scale", "change"] + (["create"] if absent else []) + (["delete"] if live else [])
        )
        choice = self.rng.choice(choices)
        if choice == "run":
            self.start_run()
        elif choice == "create":
            self.create(self.rng.choice(absent), self.rng.choice((0, 1, 1, 2)))
        elif choice == "delete":
            self.delete(self.rng.choice(live))
        else:
            name = self.rng.choice([RUNNER, *live])
            if choice == "change":
                self.change(name)
            else:
                low = 1 if name == RUNNER else 0
                self.scale(
                    name, self.rng.choice([r for r in range(low, 3) if r != self.agents[name].replicas])
                )


@dataclass
class Observation:
    """Why the namespace has not converged (empty: it has), and the orphans and duplicates it holds."""

    problems: list[str]
    orphans: list[str]
    duplicates: list[str]


def _controlled_by(obj: dict[str, Any], uid: str) -> bool:
    return any(
        o.get("uid") == uid and o.get("controller") for o in obj["metadata"].get("ownerReferences") or []
    )


def observe(fleet: Fleet, temporal_address: str) -> Observation:
    ns, kubectl = fleet.namespace, fleet.kubectl
    items = kubectl.json("get", f"durableagents,agentruns,{CHILD_KINDS},pods", "-n", ns)["items"]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], {})[item["metadata"]["name"]] = item
    agents, runs = by_kind.get("DurableAgent", {}), by_kind.get("AgentRun", {})
    problems: list[str] = []
    orphans: list[str] = []

    for name, want in fleet.agents.items():
        body = agents.get(name)
        if body is None:
            problems.append(f"DurableAgent {name} missing")
            continue
        uid, status = body["metadata"]["uid"], body.get("status") or {}
        if status.get("observedGeneration") != body["metadata"]["generation"]:
            generations = f"{status.get('observedGeneration')} of {body['metadata']['generation']}"
            problems.append(f"{name}: observedGeneration {generations}")
        if condition(body, "Ready") != "True" or condition(body, "Degraded") != "False":
            ready = f"{condition(body, 'Ready')} ({condition(body, 'Ready', 'reason')})"
            problems.append(f"{name}: Ready {ready}, Degraded {condition(body, 'Degraded')}")
        if (status.get("readyReplicas") or 0) != want.replicas:
            problems.append(f"{name}: {status.get('readyReplicas')} ready replicas of {want.replicas}")
        expected = {
            ("ConfigMap", f"{name}-runtime"),
            ("Deployment", f"{name}-worker"),
            ("Service", f"{name}-metrics"),
            ("NetworkPolicy", f"{name}-worker"),  # the session's chart has networkPolicy.enabled
            *([("PodDisruptionBudget", f"{name}-worker")] if want.replicas >= 2 else []),
        }
        for kind, child in sorted(expected):
            obj = by_kind.get(kind, {}).get(child)
            if obj is None or not _controlled_by(obj, uid) or obj["metadata"].get("deletionTimestamp"):
                problems.append(f"{name}: {kind} {child} missing or not controlled by the agent")
        config = by_kind.get("ConfigMap", {}).get(f"{name}-runtime")
        if config and f"[mark {want.mark}]" not in json.dumps(config.get("data")):
            problems.append(f"{name}: ConfigMap without the instructions of mark {want.mark}")
        deployment = by_kind.get("Deployment", {}).get(f"{name}-worker")
        if deployment:
            spec = deployment["spec"]
            env = {
                e["name"]: e.get("value")
                for c in spec["template"]["spec"]["containers"]
                for e in c.get("env") or []
            }
            if spec.get("replicas") != want.replicas or env.get("MARK") != str(want.mark):
                seen = f"replicas {spec.get('replicas')}, MARK {env.get('MARK')}"
                problems.append(f"{name}: Deployment {seen}; want {want.replicas}, {want.mark}")

    for kind, objects in by_kind.items():
        if kind in ("DurableAgent", "AgentRun"):
            continue
        for obj_name, obj in objects.items():
            owner = (obj["metadata"].get("labels") or {}).get(LABEL_AGENT)
            if owner is None:
                continue  # not an agent's (kube-root-ca.crt)
            body = agents.get(owner)
            if owner not in fleet.agents or body is None:
                orphans.append(f"{kind} {obj_name} (agent {owner} deleted)")
            elif kind != "Pod" and not _controlled_by(obj, body["metadata"]["uid"]):
                orphans.append(f"{kind} {obj_name} (agent {owner})")
    for name in agents:
        if name not in fleet.agents:
            problems.append(f"DurableAgent {name} still exists after its deletion")

    ids: dict[str, str] = {}
    for name in fleet.runs:
        body = runs.get(name)
        if body is None:
            problems.append(f"AgentRun {name} missing")
            continue
        status = body.get("status") or {}
        ids[f"agentrun-{body['metadata']['uid']}"] = name
        if (
            status.get("phase") not in ("Running", "Succeeded")
            or status.get("workflowId") != f"agentrun-{body['metadata']['uid']}"
        ):
            problems.append(
                f"AgentRun {name}: phase {status.get('phase')}, workflow {status.get('workflowId')}"
            )
    listed = [
        w
        for w in workflows(temporal_address, "WorkflowId STARTS_WITH 'agentrun-'")
        if w["taskQueue"].startswith(f"{ns}.")
    ]
    per_id = Counter(w["execution"]["workflowId"] for w in listed)
    duplicates = [f"{ids.get(wid, wid)}: {n} workflows" for wid, n in per_id.items() if n > 1]
    orphans += [f"workflow {wid} of no AgentRun" for wid in per_id if wid not in ids]
    problems += [f"AgentRun {name}: no workflow" for wid, name in ids.items() if wid not in per_id]
    return Observation(problems + orphans + duplicates, orphans, duplicates)


def converge(fleet: Fleet, temporal_address: str, since: float) -> tuple[float | None, Observation]:
    """Seconds from *since* until the namespace converged (None: not within the bound), and the last
    observation."""
    while True:
        seen = observe(fleet, temporal_address)
        if not seen.problems:
            return time.monotonic() - since, seen
        if time.monotonic() - since > CONVERGE_BOUND:
            return None, seen
        time.sleep(0.5)


def test_operator_killed_at_random_points_every_resource_converges(
    operator_release: Release, kubectl: Kubectl, e2e_temporal: ShortPollDevServer
) -> None:
    rng = random.Random(SEED)
    fleet = Fleet(kubectl, create_namespace(kubectl), rng)
    address = e2e_temporal.address
    fleet.create(RUNNER, 1)
    fleet.create(EXTRAS[0], 1)
    fleet.create(EXTRAS[1], 0)
    seconds, seen = converge(fleet, address, time.monotonic())
    assert seconds is not None, "the initial agents did not converge:\n  " + "\n  ".join(seen.problems)

    convergence: list[float] = []
    orphans: list[str] = []
    duplicates: list[str] = []
    while_down = 0
    try:
        for _ in range(KILLS):
            pid = operator_release.operator_pid()
            for _ in range(rng.randint(1, 3)):
                fleet.random_change()
            time.sleep(rng.uniform(0.0, 1.5))
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            if rng.random() < 0.5:
                fleet.random_change()  # made while no operator runs
                while_down += 1
            seconds, seen = converge(fleet, address, killed_at)
            orphans += seen.orphans
            duplicates += seen.duplicates
            assert seconds is not None, (
                f"not converged {CONVERGE_BOUND:g}s after kill {len(convergence) + 1}:\n  "
                + "\n  ".join(seen.problems)
            )
            assert operator_release.operator_pid() != pid, "the operator process was not replaced"
            convergence.append(seconds)
        deadline = time.monotonic() + 120
        phases: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            phases = {
                i["metadata"]["name"]: (i.get("status") or {}).get("phase")
                for i in kubectl.json("get", "agentruns", "-n", fleet.namespace)["items"]
            }
            if all(p in ("Succeeded", "Failed") for p in phases.values()):
                break
            time.sleep(1.0)
        final = observe(fleet, address)
    finally:
        figures = {
            "seed": SEED,
            "kills": len(convergence),
            "changes": dict(fleet.done),
            "changes made while the operator was down": while_down,
            "DurableAgents created": fleet.done["create"],
            "AgentRuns": len(fleet.runs),
            "convergence after kill p50 (s)": round(statistics.median(convergence), 1)
            if convergence
            else None,
            "convergence after kill max (s)": round(max(convergence), 1) if convergence else None,
            "convergence after each kill (s)": " ".join(f"{c:.1f}" for c in convergence),
            "orphans": len(orphans),
            "duplicate workflows": len(duplicates),
        }
        record("operator-kill" + ("-long" if LONG else ""), figures)
        print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))
        kubectl("delete", "namespace", fleet.namespace, "--wait=false", check=False)

    assert not orphans and not final.orphans, orphans + final.orphans
    assert not duplicates and not final.duplicates, duplicates + final.duplicates
    assert not final.problems, final.problems
    assert phases == dict.fromkeys(fleet.runs, "Succeeded"), phases
