"""`durable-agents gateway --in-cluster` refuses what it cannot serve before it connects anywhere: a
manifest or connection flags next to it, a bad `DURABLE_AGENTS_*` setting (named), and no Kubernetes
(told where one comes from). Each is a usage error (exit 2) on one line of stderr. `durable-agents
operator` without Kubernetes says the same (one `load_kube_configuration` error for both)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def gateway(*args: str, env: dict[str, str] | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_AGENTS_", "KUBERNETES_"))}
    base |= {"HOME": str(home), "KUBECONFIG": str(home / "missing-kubeconfig")}
    return subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", "gateway", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args", [("--in-cluster", "examples/hello.yaml"), ("--in-cluster", "--address", "127.0.0.1:7233")]
)
def test_in_cluster_takes_no_manifest_and_no_connection_flags(args: tuple[str, ...], tmp_path: Path) -> None:
    result = gateway(*args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--in-cluster serves the cluster's DurableAgents" in result.stderr
    assert "leave out MANIFEST, --address and --namespace" in result.stderr


def test_without_manifests_or_in_cluster_the_gateway_says_what_to_name(tmp_path: Path) -> None:
    result = gateway(home=tmp_path)
    assert result.returncode == 2
    assert "name the MANIFEST files of the agents to serve (or --in-cluster in a cluster)" in result.stderr


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    result = gateway("--in-cluster", env={"DURABLE_AGENTS_HEALTH_INTERVAL": "often"}, home=tmp_path)
    assert result.returncode == 2
    assert "invalid operator settings" in result.stderr and "DURABLE_AGENTS_HEALTH_INTERVAL" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_kubernetes_it_says_where_the_configuration_comes_from(tmp_path: Path) -> None:
    result = gateway("--in-cluster", home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cannot reach Kubernetes" in result.stderr and "service account" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_operator_without_kubernetes_says_the_same_where_the_configuration_comes_from(
    tmp_path: Path,
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_AGENTS_", "KUBERNETES_"))}
    result = subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", "operator"],
        capture_output=True,
        text=True,
        env=base | {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing-kubeconfig")},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot reach Kubernetes" in result.stderr and "KUBECONFIG" in result.stderr
    assert "Traceback" not in result.stderr
