"""Operator scale: N DurableAgents on a real control plane, one operator, one Temporal dev server.

Measured:
- time from creating N DurableAgents (one `kubectl create` of a List) until every one has status
  written (`status.observedGeneration == metadata.generation` and conditions present), and until every
  status also holds a Temporal reading (`TemporalReachable` no longer Unknown);
- the operator's peak RSS (VmHWM of its process);
- in a steady window of whole health intervals (after 2 intervals to settle): apiserver requests made
  by the operator (from the apiserver's audit log: user `admin`, user agent not a Kubernetes component's,
  kubectl's or this script's) and
  Temporal frontend requests (the dev server's `service_requests` metric; no workers run, so the operator
  is the only Temporal client) — each per agent per health interval, broken down by verb/resource and
  by operation, which is the formula.

The control plane is tests/cluster's binary (built by tests/cluster/build.sh, or DA_TESTCLUSTER_BIN) run
by tests/e2e/cluster.py. Agents have `replicas: 0` by default (`--replicas` to change) so that N worker
pods do not compete with the operator for two cores; there is no node agent. There is no baseline
operator to compare with: the table shows the goal in the baseline column.

Run: `.venv/bin/python -m bench.operator_scale [--quick] [--agents 50,500,2000]` (or BENCH_AGENTS).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._harness import (
    REPO_ROOT,
    VENV_BIN,
    WorkerProcess,
    cpu_seconds,
    dev_server,
    free_port,
    stop_on_sigterm,
    subprocess_env,
    workdir,
)
from bench._stats import Row, machine_line, markdown_table

__all__ = ["Scale", "count_audit", "operator_scale_rows", "parse_service_requests", "run"]

GOAL_SECONDS_500 = 60.0
"""Every status written within this long of creating N >= 500 agents at once."""
GOAL_RSS_MB = 300.0
GOAL_TEMPORAL_CALLS = 1.5
"""Temporal calls per agent per health interval, steady state."""
GOAL_APISERVER_CALLS = 1.0
"""apiserver requests per agent per health interval, steady state."""
HEALTH_INTERVAL = 10.0
"""The operator's default `DURABLE_AGENTS_HEALTH_INTERVAL` (seconds)."""
SETTLE_INTERVALS = 2
"""Health intervals waited after all statuses are written, before the steady-state window."""
BENCH_USER_AGENT = "durable-agents-bench/operator-scale"
NAMESPACE = "bench"
GROUP, VERSION, PLURAL = "durable-agents.dev", "v1alpha1", "durableagents"
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
"""


@dataclass
class Scale:
    """The result for one N."""

    agents: int
    seconds_to_status: float | None
    peak_rss_mb: float
    window_intervals: float
    seconds_to_health: float | None = None
    """Until every status also holds a Temporal reading (TemporalReachable no longer Unknown)."""
    cpu_create: float = 0.0
    """Operator CPU seconds from creating the agents to all statuses written."""
    cpu_window: float = 0.0
    """Operator CPU seconds during the steady window."""
    apiserver: collections.Counter[str] = field(default_factory=collections.Counter)
    temporal: collections.Counter[str] = field(default_factory=collections.Counter)
    event_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    """Reasons of the Events in the namespace at the end of the window (count of each, summed)."""
    warnings: collections.Counter[str] = field(default_factory=collections.Counter)
    """Messages of the TemporalUnreachable Events, digits written as N (so agents' names fold together)."""

    @property
    def window_cpu_share(self) -> float:
        """The operator's CPU use during the steady window, as a fraction of one core."""
        return self.cpu_window / (self.window_intervals * HEALTH_INTERVAL)

    def per_agent_interval(self, counter: collections.Counter[str]) -> float:
        """Requests per agent per health interval over the steady window."""
        return sum(counter.values()) / self.agents / self.window_intervals

    def formula(self, counter: collections.Counter[str], top: int = 4) -> str:
        """The main terms: `0.98 PATCH durableagents/status + ...` per agent per interval."""
        scale = self.agents * self.window_intervals
        terms = [f"{n / scale:.2f} {key}" for key, n in counter.most_common(top)]
        return " + ".join(terms) or "0"


def unavailable() -> str | None:
    """None when the operator and a control-plane binary are present, else why not."""
    missing = [
        m
        for m in ("durable_agents_operator.main", "durable_agents_cli.main")
        if not importlib.util.find_spec(m)
    ]
    if missing:
        return f"operator entry point not present yet: {', '.join(missing)}"
    if not (REPO_ROOT / "tests" / "e2e" / "cluster.py").exists():
        return "tests/e2e/cluster.py not present"
    return None


def _testcluster_binary() -> Path:
    override = os.environ.get("DA_TESTCLUSTER_BIN")
    if override:
        return Path(override)
    # build.sh reuses a cached binary at once; a cold build compiles Kubernetes (tens of minutes).
    result = subprocess.run(
        [str(REPO_ROOT / "tests" / "cluster" / "build.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"tests/cluster/build.sh failed (exit {result.returncode}): {result.stderr[-2000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def control_plane(work: Path) -> Iterator[Any]:
    """The e2e control plane with an audit log at `work/audit.log`."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    try:
        from e2e.cluster import ControlPlane  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO_ROOT / "tests"))
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_args = [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={work / 'audit.log'}",
        "--audit-log-maxbackup=0",
        "--audit-log-maxsize=2000",
    ]
    with ControlPlane(_testcluster_binary(), work / "cluster", extra_apiserver_args=audit_args) as plane:
        yield plane


def kubectl(plane: Any, *args: str, input: str | None = None) -> str:
    """Run kubectl against the control plane (admin)."""
    binary = shutil.which("kubectl", path=str(VENV_BIN)) or "kubectl"
    result = subprocess.run(
        [binary, f"--kubeconfig={plane.kubeconfig_path}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
    return result.stdout


def manifests(count: int, replicas: int, start: int = 0) -> dict[str, Any]:
    """A List of `count` minimal declarative DurableAgents (offline `test` model)."""
    items = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DurableAgent",
            "metadata": {"name": f"agent-{i:04d}", "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "agent": {"name": f"agent_{i:04d}", "model": "test"}},
        }
        for i in range(start, start + count)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _status_written(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    generation = item["metadata"].get("generation")
    return status.get("observedGeneration") == generation and bool(status.get("conditions"))


def _health_read(item: dict[str, Any]) -> bool:
    conditions = (item.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "TemporalReachable" and c.get("status") != "Unknown" for c in conditions)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


_SERVICE_REQUESTS = re.compile(r"^service_requests\{([^}]*)\}\s+([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_service_requests(metrics_text: str) -> collections.Counter[str]:
    """Frontend `service_requests` by operation from the Temporal server's Prometheus text."""
    counts: collections.Counter[str] = collections.Counter()
    for line in metrics_text.splitlines():
        match = _SERVICE_REQUESTS.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(1)))
        if labels.get("service_name", "frontend") != "frontend":
            continue
        # The server's own per-namespace workers long-poll through the frontend; no agent workers run.
        if labels.get("operation", "").startswith("Poll"):
            continue
        counts[labels.get("operation", "?")] += int(float(match.group(2)))
    return counts


def count_audit(lines: list[str], since: str, until: str) -> collections.Counter[str]:
    """Operator requests in the audit log received within [since, until) (RFC 3339 strings), by verb/resource.

    The operator is the `admin` user whose user agent is not one of the others using that user: the
    Kubernetes components (`.../kubernetes/...`: controller manager, scheduler, kubectl), the control
    plane's readiness checks (`Python-urllib`) and this benchmark.
    """
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event.get("user", {}).get("username") != "admin":
            continue
        agent = event.get("userAgent", "")
        if "kubernetes/" in agent or agent.startswith(("Python-urllib", BENCH_USER_AGENT)):
            continue
        if not since <= event.get("requestReceivedTimestamp", "") < until:
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{event.get('verb', '?').upper()} {resource}"] += 1
    return counts


def _rfc3339_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}Z"


async def _metrics(http: httpx.AsyncClient, url: str) -> collections.Counter[str]:
    return parse_service_requests((await http.get(url)).text)


async def measure(agents: list[int], replicas: int, quick: bool) -> list[Scale]:
    """Bring up a control plane, Temporal and the operator once; add agents up to each N in turn."""
    results: list[Scale] = []
    with workdir("bench-operator-") as work, dev_server(work) as temporal, control_plane(work) as plane:
        kubectl(plane, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        kubectl(plane, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(plane, "create", "namespace", NAMESPACE)
        metrics_port = _metrics_port(temporal.process.args)
        env = subprocess_env(
            {
                "KUBECONFIG": str(plane.kubeconfig_path),
                "DURABLE_AGENTS_TEMPORAL_ADDRESS": temporal.address,
                "DURABLE_AGENTS_HEALTH_INTERVAL": f"{HEALTH_INTERVAL:g}",
                "DURABLE_AGENTS_LIVENESS_PORT": str(free_port()),
                "DURABLE_AGENTS_BIND_HOST": "127.0.0.1",
            }
        )
        operator = WorkerProcess([str(VENV_BIN / "durable-agents"), "operator"], env, work / "operator.log")
        operator.start()
        profile = _profile_operator(operator.pid)
        list_url = f"{plane.server_url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        async with httpx.AsyncClient(
            verify=str(plane.ca_path),
            headers={"Authorization": f"Bearer {plane.admin_token}", "User-Agent": BENCH_USER_AGENT},
            timeout=30,
        ) as http:
            try:
                created = 0
                for target in agents:
                    began = time.monotonic()
                    cpu_began = cpu_seconds(operator.pid)
                    kubectl(
                        plane,
                        "create",
                        "-f",
                        "-",
                        input=json.dumps(manifests(target - created, replicas, created)),
                    )
                    created = target
                    seconds = health_seconds = None
                    while time.monotonic() - began < 600:
                        operator.check_alive()
                        items = (await http.get(list_url)).json()["items"]
                        if len(items) == target and all(_status_written(i) for i in items):
                            seconds = seconds or time.monotonic() - began
                            if all(_health_read(i) for i in items):
                                health_seconds = time.monotonic() - began
                                break
                        await asyncio.sleep(0.5)
                    cpu_created = cpu_seconds(operator.pid)
                    # Let one-off work after creation (first health reads, transition Events) pass, so
                    # the window shows the steady state.
                    await asyncio.sleep(SETTLE_INTERVALS * HEALTH_INTERVAL)
                    intervals = 2 if quick else 3
                    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                    before, since = await _metrics(http, metrics_url), _rfc3339_now()
                    cpu_window_began = cpu_seconds(operator.pid)
                    await asyncio.sleep(intervals * HEALTH_INTERVAL)
                    after, until = await _metrics(http, metrics_url), _rfc3339_now()
                    cpu_window = cpu_seconds(operator.pid) - cpu_window_began
                    audit = (work / "audit.log").read_text().splitlines()
                    events = (
                        await http.get(f"{plane.server_url}/api/v1/namespaces/{NAMESPACE}/events")
                    ).json()
                    reasons: collections.Counter[str] = collections.Counter()
                    warnings: collections.Counter[str] = collections.Counter()
                    for event in events["items"]:
                        reasons[event.get("reason", "?")] += event.get("count") or 1
                        if event.get("reason") == "TemporalUnreachable":
                            folded = re.sub(r"\d+", "N", event.get("message") or "")[:160]
                            warnings[folded] += event.get("count") or 1
                    results.append(
                        Scale(
                            agents=target,
                            seconds_to_status=seconds,
                            seconds_to_health=health_seconds,
                            peak_rss_mb=peak_rss_mb(operator.pid),
                            window_intervals=intervals,
                            cpu_create=cpu_created - cpu_began,
                            cpu_window=cpu_window,
                            apiserver=count_audit(audit, since, until),
                            temporal=after - before,
                            event_reasons=reasons,
                            warnings=warnings,
                        )
                    )
            finally:
                operator.stop()
                if profile is not None:
                    profile.wait()
    return results


def _profile_operator(pid: int) -> subprocess.Popen[bytes] | None:
    """With BENCH_PROFILE_OPERATOR=FILE, py-spy records the operator for its first 120 s into FILE.

    Collapsed stacks; summarize them with `bench.profile_worker.summarize_collapsed`.
    """
    output = os.environ.get("BENCH_PROFILE_OPERATOR")
    py_spy = shutil.which("py-spy")
    if not output:
        return None
    if py_spy is None:
        raise RuntimeError("BENCH_PROFILE_OPERATOR needs py-spy on PATH (see bench/profile_worker.py)")
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", "120", "--rate", "100", "--format", "raw",
         "--output", output, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _metrics_port(args: Any) -> int:
    argv = list(args)
    return int(argv[argv.index("--metrics-port") + 1])


def operator_scale_rows(results: list[Scale]) -> list[Row]:
    """Rows per N: time to status (goal 60 s from 500), peak RSS (goal 300 MB), calls per agent per interval
    (goals 1 apiserver, 1.5 Temporal)."""
    rows = []
    for scale in results:
        time_goal = f"<= {GOAL_SECONDS_500:g} s" if scale.agents >= 500 else ""
        seconds = scale.seconds_to_status
        rows.append(
            Row(
                benchmark=f"operator, {scale.agents} agents: create -> all status written",
                ours="> 600 s" if seconds is None else f"{seconds:.1f} s",
                baseline="no baseline",
                ratio=None,
                goal=time_goal,
                met=(seconds is not None and seconds <= GOAL_SECONDS_500) if time_goal else None,
                note=(f"{scale.agents / seconds:.1f} agents/s; " if seconds else "")
                + f"operator CPU {scale.cpu_create:.1f} s meanwhile; agents added on top of the previous N",
            )
        )
        health = scale.seconds_to_health
        rows.append(
            Row(
                benchmark=f"operator, {scale.agents} agents: create -> Temporal read into every status",
                ours="> 600 s" if health is None else f"{health:.1f} s",
                baseline="no baseline",
                ratio=None,
                goal="",
                met=None,
                note="a new agent's first status does not wait for Temporal; its health timer reads it",
            )
        )
        rows.append(
            Row(
                benchmark=f"operator, {scale.agents} agents: peak RSS",
                ours=f"{scale.peak_rss_mb:.0f} MB",
                baseline="no baseline",
                ratio=None,
                goal=f"<= {GOAL_RSS_MB:g} MB",
                met=scale.peak_rss_mb <= GOAL_RSS_MB,
            )
        )
        apiserver = scale.per_agent_interval(scale.apiserver)
        temporal = scale.per_agent_interval(scale.temporal)
        rows.append(
            Row(
                benchmark=f"operator, {scale.agents} agents: calls per agent per health interval",
                ours=f"apiserver {apiserver:.2f}, Temporal {temporal:.3f}",
                baseline="no baseline",
                ratio=None,
                goal=f"apiserver <= {GOAL_APISERVER_CALLS:g}, Temporal <= {GOAL_TEMPORAL_CALLS:g}",
                met=apiserver <= GOAL_APISERVER_CALLS and temporal <= GOAL_TEMPORAL_CALLS,
                note=f"apiserver: {scale.formula(scale.apiserver)}; "
                f"Temporal: {scale.formula(scale.temporal)} "
                f"(interval {HEALTH_INTERVAL:g} s, window {scale.window_intervals:g} intervals); "
                f"operator CPU {scale.window_cpu_share:.0%} of a core; "
                f"Events so far by reason: {_reasons(scale.event_reasons)}"
                + (f"; TemporalUnreachable said: {_reasons(scale.warnings)}" if scale.warnings else ""),
            )
        )
    return rows


def _reasons(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counter.most_common(5)) or "none"


def _agent_counts(quick: bool) -> list[int]:
    configured = os.environ.get("BENCH_AGENTS")
    if configured:
        return sorted(int(n) for n in configured.split(",") if n.strip())
    return [50] if quick else [50, 500, 2000]


async def run(quick: bool = False, *, agents: list[int] | None = None, replicas: int = 0) -> list[Row]:
    """Measure each N (50 in quick mode; 50, 500, 2000 otherwise); rows say why when it cannot run."""
    if (reason := unavailable()) is not None:
        return [Row("operator scale", "not measured", "no baseline", None, "", None, reason)]
    return operator_scale_rows(await measure(agents or _agent_counts(quick), replicas, quick))


def main() -> None:
    """Command line: `--agents 50,200,500`, `--replicas`, `--quick`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 agents, a 2-interval window")
    parser.add_argument("--agents", default=None, help="comma-separated N values (default 50,200,500)")
    parser.add_argument("--replicas", type=int, default=0, help="spec.replicas of every agent (default 0)")
    args = parser.parse_args()
    stop_on_sigterm()
    counts = sorted(int(n) for n in args.agents.split(",")) if args.agents else None
    start = machine_line()
    rows = asyncio.run(run(args.quick, agents=counts, replicas=args.replicas))
    print(markdown_table(rows))
    print(f"\nstart: {start}\nend:   {machine_line()}")


if __name__ == "__main__":
    main()
