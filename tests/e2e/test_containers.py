"""The product on a real node: pods from the images, in containers, under restricted Pod Security.

One module-scoped cluster: the Go-built control plane (its apiserver on the node's bridge address), plus
``ContainerNode`` (containerd + runc, the upstream kubelet and kube-proxy, a bridge CNI network, cluster
DNS) with the images of ``make images`` imported. The chart is installed as a user would: operator and
Temporal dev server from the images, the operator finding Temporal by the chart's Service name. Every
namespace enforces ``pod-security.kubernetes.io/enforce=restricted``.

At the end the node is stopped and the host checked: sysctls, iptables chains, mounts, cgroups, links
and network namespaces as found (a leftover fails the module's teardown).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .cluster import NODE_CONTROLLERS, ControlPlane
from .conftest import BUILD_SCRIPT, CHART, HELM_SCRIPT, Helm, Kubectl, _find_kubectl
from .containernode import GATEWAY, NODE_NAME, ContainerNode
from .support import API_VERSION, REPO_ROOT, condition, load_example, pod_ready, temporal_cli, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.node]

IMAGES_SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"
TEST_MODULES_IMAGE = "localhost/durable-agents/runtime-tests:dev"
RELEASE = "durable-agents"
OPERATOR_NAMESPACE = "durable-agents"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
SLOW_SECONDS = 8
# The worker Deployment's default memory limit (operator/durable_agents_operator/builders/deployment.py).
WORKER_MEMORY_LIMIT = 1024 * 1024 * 1024


@dataclass
class RealCluster:
    plane: ControlPlane
    node: ContainerNode
    kubectl: Kubectl
    helm: Helm
    runtime_image: str
    operator_image: str
    workdir: Path

    def diagnostics(self) -> str:
        """Pods, events and container logs (through the kubelet) of every namespace, and the node's logs."""
        parts = [
            self.kubectl("get", "pods,deployments,durableagents,agentruns", "-A", "-o", "wide", check=False)
        ]
        parts.append(self.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False)[-8000:])
        pods = self.kubectl.run("get", "pods", "-A", "-o", "json").stdout
        for pod in json.loads(pods or '{"items": []}')["items"]:
            meta = pod["metadata"]
            logs = self.kubectl(
                "logs", "-n", meta["namespace"], meta["name"], "--all-containers", check=False
            )
            parts.append(f"=== logs {meta['namespace']}/{meta['name']}\n{logs[-4000:]}")
        for component in ("kubelet", "containerd", "kube-proxy"):
            log = self.node.log_dir / f"{component}.log"
            if log.exists():
                parts.append(f"=== {log}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def namespace(self, name: str) -> str:
        """A namespace enforcing the restricted Pod Security standard, with its default service account."""
        self.kubectl("create", "namespace", name)
        self.kubectl(
            "label", "namespace", name, RESTRICTED, "pod-security.kubernetes.io/enforce-version=latest"
        )
        wait_for(
            f"the default service account of {name}",
            lambda: self.kubectl("get", "sa", "default", "-n", name, "--ignore-not-found", "-o", "name"),
            timeout=30,
        )
        return name


def _script(path: Path, *args: str, timeout: float) -> str:
    """Run one of the repo's build scripts; its last stdout line(s), or a failure naming the script."""
    result = subprocess.run(
        ["bash", str(path), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{path.name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-5000:]}")
    return result.stdout


def _build_test_modules_image(runtime_image: str, workdir: Path) -> str:
    """The runtime image plus tests/runtime/slow_tools.py on PYTHONPATH (a test-only toolset)."""
    container = subprocess.run(
        ["buildah", "from", runtime_image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        for command in (
            ["buildah", "copy", container, str(REPO_ROOT / "tests/runtime/slow_tools.py"), "/app/tests/"],
            ["buildah", "config", "--env", "PYTHONPATH=/app/tests", container],
            ["buildah", "commit", "--quiet", container, TEST_MODULES_IMAGE],
        ):
            subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return TEST_MODULES_IMAGE


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    if os.geteuid() != 0:
        pytest.fail("the real-node tier needs root (containerd, kubelet, iptables); run make test as root")
    started = time.monotonic()
    testcluster = Path(_script(BUILD_SCRIPT, timeout=3000).strip().splitlines()[-1])
    kubelet = Path(_script(BUILD_SCRIPT, "kubelet", timeout=3000).strip().splitlines()[-1])
    kube_proxy = Path(_script(BUILD_SCRIPT, "kube-proxy", timeout=3000).strip().splitlines()[-1])
    runtime_image, operator_image = _script(IMAGES_SCRIPT, timeout=3000).strip().splitlines()[-2:]
    helm_binary = _script(HELM_SCRIPT, timeout=1200).strip().splitlines()[-1]
    workdir = tmp_path_factory.mktemp("real-node")
    tests_image = _build_test_modules_image(runtime_image, workdir)
    prepared = time.monotonic()

    # A SIGTERM (CI's time limit, a `kill`) must still run the clean-up below, as Ctrl-C does.
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    host = None
    plane = ControlPlane(
        testcluster,
        workdir / "control-plane",
        controllers=NODE_CONTROLLERS,
        bind_address=GATEWAY,
        # Logs and exec go to the kubelet at the node's address: its name resolves nowhere.
        extra_apiserver_args=["--kubelet-preferred-address-types=InternalIP"],
    )
    node = ContainerNode(
        workdir / "node",
        kubelet=kubelet,
        kube_proxy=kube_proxy,
        kubeconfig=plane.kubeconfig_path,
        images=(runtime_image, operator_image, tests_image),
    )
    try:
        host = ContainerNode.prepare_host(node.workdir)
        plane.start()
        node.start(host, server_url=plane.server_url, admin_token=plane.admin_token, ca_path=plane.ca_path)
        print(
            f"\nreal node: binaries+images {prepared - started:.1f}s, control plane "
            f"{plane.start_seconds:.1f}s, node {node.timings}"
        )
        kubectl = Kubectl(_find_kubectl(), plane.kubeconfig_path)
        yield RealCluster(
            plane,
            node,
            kubectl,
            Helm(helm_binary, plane.kubeconfig_path),
            runtime_image,
            operator_image,
            workdir,
        )
    finally:
        try:
            # Stops every pod first (through the apiserver), then restores the host: before the plane.
            node.stop(host)
        finally:
            plane.stop()
            signal.signal(signal.SIGTERM, previous)


def _repo_tag(image: str) -> tuple[str, str]:
    repository, tag = image.rsplit(":", 1)
    return repository, tag


@pytest.fixture(scope="module")
def release(real: RealCluster) -> str:
    """The chart installed as a user would, with the operator and a Temporal dev pod from the images."""
    real.namespace(OPERATOR_NAMESPACE)
    operator_repo, operator_tag = _repo_tag(real.operator_image)
    runtime_repo, runtime_tag = _repo_tag(real.runtime_image)
    values = {
        "image": {"repository": operator_repo, "tag": operator_tag, "pullPolicy": "Never"},
        "runtimeImage": {"repository": runtime_repo, "tag": runtime_tag, "pullPolicy": "Never"},
        "operator": {"healthInterval": 2},
        "networkPolicy": {"enabled": True},
    }
    values_file = real.workdir / "values.json"
    values_file.write_text(json.dumps(values))
    started = time.monotonic()
    real.helm(
        "install", RELEASE, str(CHART), "-n", OPERATOR_NAMESPACE, "-f", str(values_file),
        "--wait", "--timeout", "240s",
    )  # fmt: skip
    print(f"\nhelm install --wait on the real node: {time.monotonic() - started:.1f}s")
    return RELEASE


def _pods(real: RealCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = real.kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _agent(real: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    return real.kubectl.get("durableagent", name, namespace) or {}


def _serving(
    real: RealCluster, namespace: str, name: str, workers: int, timeout: float = 180
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = _agent(real, namespace, name)
        ready = condition(body, "Ready") == "True" and (body.get("status") or {}).get("workers") == workers
        return body if ready else None

    return wait_for(f"DurableAgent {namespace}/{name} Ready with {workers} worker(s)", check, timeout=timeout)


def _run_phase(real: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    return (real.kubectl.get("agentrun", name, namespace) or {}).get("status") or {}


def _finished(real: RealCluster, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        f"AgentRun {namespace}/{name} to finish",
        lambda: (s := _run_phase(real, namespace, name)).get("phase") in ("Succeeded", "Failed") and s,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def hello(real: RealCluster, release: str) -> str:
    """Namespace with examples/hello.yaml applied and Ready."""
    namespace = real.namespace("e2e-real-hello")
    manifest = load_example("hello.yaml")
    real.kubectl.apply(manifest, namespace=namespace)
    _serving(real, namespace, "hello", workers=1)
    return namespace


def test_chart_runs_operator_and_temporal_from_the_images_under_restricted(
    real: RealCluster, release: str
) -> None:
    pods = real.kubectl.json("get", "pods", "-n", OPERATOR_NAMESPACE)["items"]
    by_component = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods}
    assert set(by_component) >= {"operator", "temporal-dev"}, list(by_component)
    expected = {"operator": real.operator_image, "temporal-dev": real.runtime_image}
    for component, image in expected.items():
        pod = by_component[component]
        assert pod_ready(pod), pod["status"]
        assert pod["spec"]["nodeName"] == NODE_NAME
        status = pod["status"]["containerStatuses"][0]
        # The kubelet reports the image containerd ran, by digest: the imported image, not a process.
        assert status["image"].endswith(image.split("/", 1)[1]), status
        assert status["imageID"].startswith("sha256:") or "@sha256:" in status["imageID"], status
        assert status["containerID"].startswith("containerd://"), status
    namespace = real.kubectl.json("get", "namespace", OPERATOR_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # helm test: a pod from the operator image reaches the operator through its Service name
    # (cluster DNS, then kube-proxy's rules from the cluster IP to the pod).
    output = real.helm("test", RELEASE, "-n", OPERATOR_NAMESPACE, "--timeout", "120s")
    assert "Succeeded" in output, output
    policies = real.kubectl.json("get", "networkpolicies", "-n", OPERATOR_NAMESPACE)["items"]
    assert {p["metadata"]["name"] for p in policies} >= {
        f"{RELEASE}-operator",
        f"{RELEASE}-temporal-dev",
    }, [p["metadata"]["name"] for p in policies]


def test_restricted_namespace_rejects_a_root_pod(real: RealCluster, release: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "c", "image": real.runtime_image, "securityContext": {"runAsUser": 0}}]
        },
    }
    result = real.kubectl.run("apply", "-n", OPERATOR_NAMESPACE, "-f", "-", input=json.dumps(pod))
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr


def test_agent_is_ready_and_a_run_succeeds_in_containers(real: RealCluster, hello: str) -> None:
    pods = _pods(real, hello, "durable-agents.dev/agent=hello")
    assert len(pods) == 1 and pod_ready(pods[0])
    container = pods[0]["spec"]["containers"][0]
    assert container["image"] == real.runtime_image
    # Defaults the operator sets when spec.template.resources says nothing.
    assert container["resources"]["limits"]["memory"] == "1Gi", container["resources"]
    assert "cpu" in container["resources"]["requests"], container["resources"]
    # The worker dials the chart's Temporal by its Service name, as given: cluster DNS and kube-proxy
    # carry it to the dev server's pod.
    (config_map,) = real.kubectl.json(
        "get", "configmaps", "-n", hello, "-l", "durable-agents.dev/agent=hello"
    )["items"]
    config = json.loads(config_map["data"]["runtime.json"])
    assert config["temporal"]["address"] == f"{RELEASE}-temporal.{OPERATOR_NAMESPACE}.svc:7233", config[
        "temporal"
    ]
    real.kubectl.apply(load_example("hello-run.yaml"), namespace=hello)
    status = _finished(real, hello, "hello-paris")
    assert status["phase"] == "Succeeded", status
    assert "Paris" in status["output"], status


def test_worker_container_is_confined_and_kubectl_logs_and_exec_work(real: RealCluster, hello: str) -> None:
    pod = _pods(real, hello, "durable-agents.dev/agent=hello")[0]["metadata"]["name"]
    logs = real.kubectl("logs", "-n", hello, pod)
    assert logs.strip(), "kubectl logs returned nothing"

    def exec_(*command: str) -> subprocess.CompletedProcess[str]:
        return real.kubectl.run("exec", "-n", hello, pod, "--", *command)

    ident = exec_("id")
    assert ident.returncode == 0, ident.stderr
    assert ident.stdout.startswith("uid=10001(app) gid=10001(app)"), ident.stdout
    # readOnlyRootFilesystem, enforced by the runtime: a write to / fails inside the container...
    write = exec_("python", "-c", "open('/probe', 'w')")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, (write.returncode, write.stderr)
    # ... while the /tmp emptyDir is writable.
    assert exec_("python", "-c", "open('/tmp/probe', 'w').write('x')").returncode == 0
    # No capabilities at all, and no way to gain any.
    status = exec_("cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000", fields["CapEff"]
    assert fields["CapBnd"].strip() == "0000000000000000", fields["CapBnd"]
    assert fields["NoNewPrivs"].strip() == "1"
    # The runtime image goes without the operator's dependencies, and says so when asked to be one.
    assert exec_("python", "-c", "import kubernetes").returncode != 0
    operator = exec_("durable-agents", "operator")
    assert operator.returncode != 0 and "durable-agents[operator]" in operator.stderr, operator.stderr
    # The memory limit is the kernel's, in the container's cgroup (v1 on this host).
    limit = exec_("cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert limit.returncode == 0, limit.stderr
    assert int(limit.stdout) == WORKER_MEMORY_LIMIT, limit.stdout


def test_kubectl_scale_adds_polling_workers(real: RealCluster, hello: str) -> None:
    real.kubectl("scale", "durableagent", "hello", "-n", hello, "--replicas=2")
    _serving(real, hello, "hello", workers=2)
    pods = _pods(real, hello, "durable-agents.dev/agent=hello")
    assert len(pods) == 2 and all(pod_ready(p) for p in pods)
    assert len({p["status"]["podIP"] for p in pods}) == 2, "each pod has its own network namespace"


SLOW_AGENT = {
    "apiVersion": API_VERSION,
    "kind": "DurableAgent",
    "metadata": {"name": "slow"},
    "spec": {
        "replicas": 1,
        "agent": {
            "name": "slow",
            "model": "test",
            "toolsets": [{"id": "slow", "entrypoint": "slow_tools:toolset"}],
        },
        "template": {
            "image": TEST_MODULES_IMAGE,
            "env": [
                {"name": "SLOW_TOOLS_LOG", "value": "/tmp/slow-tools.log"},
                {"name": "SLOW_TOOLS_SECONDS", "value": str(SLOW_SECONDS)},
            ],
        },
    },
}


def _tool_log(real: RealCluster, namespace: str, pod: str) -> list[tuple[str, str, int]]:
    result = real.kubectl.run("exec", "-n", namespace, pod, "--", "cat", "/tmp/slow-tools.log")
    if result.returncode != 0:
        return []
    return [(e, t, int(p)) for e, t, p in (line.split() for line in result.stdout.splitlines())]


def test_worker_container_killed_mid_tool_call_run_still_succeeds(real: RealCluster, release: str) -> None:
    namespace = real.namespace("e2e-real-slow")
    real.kubectl.apply(SLOW_AGENT, namespace=namespace)
    _serving(real, namespace, "slow", workers=1)
    pod = _pods(real, namespace, "durable-agents.dev/agent=slow")[0]
    name = pod["metadata"]["name"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    real.kubectl.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "AgentRun",
            "metadata": {"name": "crash"},
            "spec": {"agentRef": {"name": "slow"}, "prompt": "Process the item."},
        },
        namespace=namespace,
    )
    wait_for(
        "the slow tool to start in the worker container",
        lambda: any(e == "start" and t == "slow_step" for e, t, _ in _tool_log(real, namespace, name)),
        timeout=90,
        interval=0.5,
    )
    # Kill only once the model's first request and the fast tool are completed in the history, so only
    # the slow tool is in flight. The host reaches the dev server's pod on the bridge.
    temporal_pod = _pods(real, OPERATOR_NAMESPACE, "app.kubernetes.io/component=temporal-dev")[0]
    address = f"{temporal_pod['status']['podIP']}:7233"
    workflow_id = wait_for(
        "the run's workflow id", lambda: _run_phase(real, namespace, "crash").get("workflowId")
    )

    def completed_activities() -> int:
        history = json.loads(
            temporal_cli(address, "workflow", "show", "--workflow-id", workflow_id, "-o", "json")
        )
        return sum(1 for e in history["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")

    wait_for(
        "two completed activities",
        lambda: completed_activities() >= 2,
        timeout=SLOW_SECONDS - 2,
        interval=0.2,
    )
    # SIGKILL the container's process through the runtime, as an OOM kill or a node fault would.
    real.node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
    status = _finished(real, namespace, "crash", timeout=180)
    assert status["phase"] == "Succeeded", status
    assert "slow:" in status["output"], status
    container = real.kubectl.json("get", "pod", name, "-n", namespace)["status"]["containerStatuses"][0]
    assert container["restartCount"] == 1, container
    assert container["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL, container
    starts = Counter(t for e, t, _ in _tool_log(real, namespace, name) if e == "start")
    # The emptyDir survives the container restart; the slow tool ran again, the fast one did not.
    assert starts == {"fast_step": 1, "slow_step": 2}, starts


def test_deleting_the_agent_removes_its_pods_and_containers(real: RealCluster, hello: str) -> None:
    pods = _pods(real, hello, "durable-agents.dev/agent=hello")
    ids = [p["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://") for p in pods]
    assert ids
    real.kubectl("delete", "durableagent", "hello", "-n", hello, "--wait=true", "--timeout=60s")

    def gone() -> bool:
        selector = "durable-agents.dev/agent=hello"
        left = real.kubectl("get", "deployments,configmaps,pods", "-n", hello, "-l", selector, "-o", "name")
        tasks = real.node.ctr("tasks", "list", "--quiet")
        return not left.strip() and not any(i in tasks for i in ids)

    wait_for("the agent's Deployment, ConfigMap, pods and containers to be gone", gone, timeout=90)
