"""Peer linter: kube-score on the rendered chart and on the worker objects the operator's builders generate.

kube-score is installed by scripts/install-kube-score.sh (`go install` from the Go module proxy, once per
machine; `make tools` runs it). Every check it grades below "OK" must be fixed in the product or listed in
`WAIVERS` with the reason it does not apply; a waiver nothing triggers any more is stale and fails too.
Passed and failed counts (before waivers) are recorded with the suite's figures.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_report import record

from durable_agents_api.resources import DurableAgent
from durable_agents_operator.builders import resolve_temporal
from durable_agents_operator.builders.agent_objects import build_agent_objects
from durable_agents_operator.builders.networkpolicy import WorkerPolicy
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.settings import OperatorSettings

pytestmark = [pytest.mark.reliability]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "durable-agents"
INSTALL = REPO / "scripts" / "install-kube-score.sh"

# kube-score grades: 1 critical, 5 warning, 7 almost OK, 10 OK.
PASSING_GRADE = 7

OPERATOR, TEMPORAL, HELM_TEST, GATEWAY, WORKER = (
    "da-durable-agents",
    "da-durable-agents-temporal",
    "da-durable-agents-test-healthz",
    "da-durable-agents-gateway",
    "hello-worker",
)
CHART_PODS = (OPERATOR, TEMPORAL, HELM_TEST, GATEWAY)
ALL_PODS = (*CHART_PODS, WORKER)
NO_CPU_LIMIT = (
    "CPU limits are left out on purpose: a throttled worker or operator misses heartbeats and health "
    "reads; CPU requests and memory limits are set instead"
)
PULL_POLICY = (
    "IfNotPresent is the default for tagged images (values image.pullPolicy / spec.template."
    "imagePullPolicy set Always for mutable tags); Always would make every restart depend on the registry"
)
EPHEMERAL = (
    "the containers write only logs and small emptyDirs (the dev Temporal's sqlite is its state); no "
    "measurement sizes an ephemeral-storage limit yet, and a wrong one evicts the pod and its state"
)

# (object name, check id, text in the finding) → why it does not apply. Keep each reason true; delete a
# waiver when the product changes so that it no longer applies (stale waivers fail the test).
WAIVERS: dict[tuple[str, str, str], str] = {
    **{(name, "container-resources", "CPU limit is not set"): NO_CPU_LIMIT for name in ALL_PODS},
    **{(name, "container-image-pull-policy", "not set to Always"): PULL_POLICY for name in ALL_PODS},
    **{(name, "container-ephemeral-storage-request-and-limit", "Ephemeral"): EPHEMERAL for name in ALL_PODS},
    (HELM_TEST, "pod-networkpolicy", "NetworkPolicy"): "the `helm test` hook pod lives for one request",
    **{
        (name, "pod-probes-identical", "same readiness and liveness"): "one health endpoint per process "
        "(kopf's liveness, the dev server's system info); a single replica has no traffic to route away"
        for name in (OPERATOR, TEMPORAL)
    },
    (GATEWAY, "pod-probes-identical", "same readiness and liveness"): "/healthz answers while the gateway "
    "serves; a Temporal or apiserver outage is answered per request (503 naming the cause), which a "
    "failing readiness probe would hide behind a Service with no endpoints",
    (GATEWAY, "deployment-replicas", "few replicas"): "one by default so a trial install stays small; the "
    "gateway keeps no state, so gateway.replicas scales it",
    **{
        (name, "deployment-strategy", "update strategy"): "Recreate on purpose: kopf runs standalone (two "
        "operators must never overlap) and two dev servers must never share one sqlite file"
        for name in (OPERATOR, TEMPORAL)
    },
    **{
        (name, "deployment-replicas", "few replicas"): "one replica by design (standalone kopf; the dev "
        "Temporal is one process on one sqlite file)"
        for name in (OPERATOR, TEMPORAL)
    },
}

# Scanned as a hardened install runs it: with the chart's NetworkPolicies (off by default, since only a CNI
# that enforces them makes them mean anything).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {"networkPolicy": {"enabled": True}, "gateway": {"enabled": True}},
    "external-temporal": {
        "temporal": {"dev": {"enabled": False}, "address": "temporal.example:7233"},
        "networkPolicy": {"enabled": True},
    },
}


def _kube_score() -> str:
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        pytest.fail(f"{INSTALL} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def _helm() -> str:
    helm = REPO / ".venv" / "bin" / "helm"
    if not helm.exists():
        pytest.fail("helm not found in .venv/bin: run scripts/install-helm.sh (make tools does)")
    return str(helm)


def _rendered_chart(tmp: Path) -> list[dict[str, Any]]:
    documents = []
    for name, values in VALUE_SETS.items():
        values_file = tmp / f"{name}.json"
        values_file.write_text(json.dumps(values))
        output = subprocess.run(
            [_helm(), "template", "da", str(CHART), "-n", "durable-agents", "-f", str(values_file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"},
        ).stdout
        documents += [d for d in yaml.safe_load_all(output) if d]
    return documents


def _worker_objects() -> list[dict[str, Any]]:
    """What the operator applies for examples/hello.yaml with three replicas (so a PDB too), as an
    operator of a chart with `networkPolicy.enabled` does (so the workers' NetworkPolicy too)."""
    manifest = yaml.safe_load((REPO / "examples" / "hello.yaml").read_text())
    manifest["metadata"] |= {"namespace": "team-a", "uid": "0c1d4e5f-0000-4000-8000-000000000001"}
    manifest["metadata"]["generation"] = 1
    manifest["spec"]["replicas"] = 3
    agent = DurableAgent.model_validate(manifest)
    temporal = resolve_temporal(
        agent, connection=None, default=ConnectionParams(address="temporal:7233", namespace="default")
    )
    policy = WorkerPolicy(egress=OperatorSettings().worker_egress)
    objects = build_agent_objects(
        agent, temporal=temporal, default_image="durable-agents:1.0", worker_policy=policy
    )
    return list(objects.manifests)


Finding = tuple[str, str, str]  # (object name, check id, comments)


def _findings(kube_score: str, documents: list[dict[str, Any]], tmp: Path) -> tuple[int, list[Finding]]:
    """(checks passed, [(object name, check id, comments) of each check graded below PASSING_GRADE])."""
    scanned = tmp / "objects.yaml"
    scanned.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run(
        [kube_score, "score", "-o", "json", str(scanned)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode not in (0, 1):  # 1: some check failed
        pytest.fail(f"kube-score failed ({result.returncode}): {result.stderr}")
    passed, failed = 0, []
    for obj in json.loads(result.stdout):
        where = obj["object_meta"]["name"]
        for check in obj["checks"]:
            if check.get("skipped"):
                continue
            if check["grade"] >= PASSING_GRADE:
                passed += 1
                continue
            comments = "; ".join(
                f"{c.get('path', '')} {c.get('summary', '')}".strip() for c in check.get("comments") or []
            )
            failed.append((where, check["check"]["id"], comments))
    return passed, failed


def test_chart_and_worker_objects_pass_kube_score_or_are_waived_with_a_reason(tmp_path: Path) -> None:
    kube_score = _kube_score()
    documents = _rendered_chart(tmp_path) + _worker_objects()
    passed, failed = _findings(kube_score, documents, tmp_path)

    def waiver(finding: Finding) -> tuple[str, str, str] | None:
        name, check, comments = finding
        return next((w for w in WAIVERS if w[0] == name and w[1] == check and w[2] in comments), None)

    waived = [f for f in failed if waiver(f) is not None]
    unwaived = [f for f in failed if waiver(f) is None]
    stale = sorted(set(WAIVERS) - {waiver(f) for f in waived})
    by_check = Counter(f[1] for f in failed)
    record(
        "peer-linter",
        {
            "scanner": "kube-score " + Path(kube_score).parent.name.removeprefix("kube-score-"),
            "objects scanned": len(documents),
            "checks passed": passed,
            "checks failed (before waivers)": len(failed),
            "failed by check": ", ".join(f"{k} {n}" for k, n in sorted(by_check.items())) or "none",
            "waived": len(waived),
            "unwaived": len(unwaived),
        },
    )

    assert not unwaived, "kube-score findings to fix or waive:\n" + "\n".join(
        f"- {where}: {check}: {comment}" for where, check, comment in unwaived
    )
    assert not stale, f"waivers nothing triggers any more (delete them): {stale}"
