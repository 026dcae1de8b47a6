"""Smoke tests of the e2e infrastructure itself: control plane, RBAC, controllers and node agent."""

from __future__ import annotations

import json
import os
import signal
import ssl
from typing import Any

import httpx
import pytest

from .cluster import ControlPlane, free_port
from .conftest import Kubectl
from .nodeagent import NodeAgent
from .support import alive, pod_ready, wait_for

pytestmark = pytest.mark.e2e

# Serves the pod's name on every path, on the pod's own IP: replicas share the port.
WEB_SERVER = """\
import http.server, os, socketserver

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["POD_NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("serving on", os.environ["POD_IP"], os.environ["PORT"], flush=True)
socketserver.TCPServer((os.environ["POD_IP"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def container_status(kubectl: Kubectl, namespace: str, pod: str) -> dict[str, Any]:
    statuses = kubectl.json("get", "pod", pod, "-n", namespace).get("status", {}).get("containerStatuses")
    return statuses[0] if statuses else {}


def output_json(agent: NodeAgent, namespace: str, pod: str) -> dict[str, Any]:
    """The JSON line a test container printed (node agent marker lines skipped)."""
    lines = [line for line in agent.logs(pod, namespace=namespace).splitlines() if line.startswith("{")]
    assert lines, agent.logs(pod, namespace=namespace)
    return json.loads(lines[-1])


def simple_pod(
    name: str,
    script: str,
    restart_policy: str = "Always",
    container: dict[str, Any] | None = None,
    **pod_spec: Any,
) -> dict[str, Any]:
    """A one-container pod running ``python3 -c script``; *container* adds container fields."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
            **pod_spec,
            "containers": [
                {
                    "name": "main",
                    "image": "ignored:latest",
                    "command": ["python3", "-c", script],
                    **(container or {}),
                },
            ],
        },
    }


def test_control_plane_ready_with_rbac(control_plane: ControlPlane, kubectl: Kubectl, namespace: str) -> None:
    assert kubectl("get", "--raw", "/readyz").strip() == "ok"
    assert kubectl("auth", "can-i", "list", "pods", "-n", namespace).strip() == "yes"

    kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kubectl("create", "token", "nobody", "-n", namespace).strip()
    answer = kubectl("auth", "can-i", "list", "pods", "-n", namespace, f"--token={token}", check=False)
    assert answer.strip() == "no"
    response = httpx.get(
        f"{control_plane.server_url}/api/v1/namespaces/{namespace}/pods",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(control_plane.ca_path)),
    )
    assert response.status_code == 403, response.text


def test_deployment_runs_scales_and_is_garbage_collected(
    kubectl: Kubectl, node_agent: NodeAgent, namespace: str
) -> None:
    port = free_port()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "volumes": [{"name": "app", "configMap": {"name": "web-script"}}],
                    "containers": [
                        {
                            "name": "web",
                            "image": "example.invalid/web:1",
                            "command": ["python3", "/app/server.py"],
                            "env": [
                                {"name": "PORT", "value": str(port)},
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            ],
                            "ports": [{"name": "http", "containerPort": port}],
                            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": port},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }
    script = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-script"},
        "data": {"server.py": WEB_SERVER},
    }
    kubectl.apply(script, deployment, namespace=namespace)

    def web_pods(ready: int) -> list[dict[str, Any]] | None:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ok = [p for p in live if p["status"].get("phase") == "Running" and pod_ready(p)]
        return ok if len(ok) == ready == len(live) else None

    replica_sets = wait_for("the ReplicaSet", lambda: kubectl.json("get", "rs", "-n", namespace)["items"])
    assert replica_sets[0]["metadata"]["ownerReferences"][0]["name"] == "web"
    (pod,) = wait_for("one Running, Ready pod", lambda: web_pods(1))
    pod_name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == node_agent.node_name
    assert pod["status"]["podIP"] == node_agent.pod_ip(pod_name, namespace) != "127.0.0.1"
    first_pid = node_agent.pid(pod_name, namespace=namespace)

    kubectl("scale", "deployment", "web", "--replicas=2", "-n", namespace)
    pods = wait_for("two Running, Ready pods", lambda: web_pods(2))
    processes = node_agent.processes(namespace)
    pids = {processes[p["metadata"]["name"]]["web"] for p in pods}
    assert len(pids) == 2 and first_pid in pids
    assert all(alive(pid) for pid in pids)
    # Both replicas bind the same port, each on its own pod IP.
    answers = {
        p["status"]["podIP"]: httpx.get(f"http://{p['status']['podIP']}:{port}/", trust_env=False).text
        for p in pods
    }
    assert sorted(answers.values()) == sorted(p["metadata"]["name"] for p in pods)
    assert len(answers) == 2

    # A Service name in a container's args resolves to a ready pod behind it, port mapped.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    fetch = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
    client = simple_pod(
        "client",
        fetch,
        restart_policy="Never",
        container={"args": [f"http://web.{namespace}.svc.cluster.local:80/"]},
    )
    kubectl.apply(service, client, namespace=namespace)
    wait_for(
        "the client to succeed",
        lambda: kubectl.json("get", "pod", "client", "-n", namespace)["status"].get("phase") == "Succeeded",
    )
    log = node_agent.logs("client", namespace=namespace).splitlines()
    assert [line for line in log if not line.startswith("####")][-1] in answers.values()

    kubectl("delete", "deployment", "web", "-n", namespace)
    wait_for(
        "pods and ReplicaSet to be garbage-collected",
        lambda: (
            not (
                kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
                or kubectl.json("get", "rs", "-n", namespace)["items"]
            )
        ),
    )
    wait_for(
        "the processes to stop", lambda: not node_agent.processes(namespace) and not any(map(alive, pids))
    )


def test_failing_container_is_restarted(kubectl: Kubectl, node_agent: NodeAgent, namespace: str) -> None:
    crash = "import sys, time; print('boom', flush=True); time.sleep(0.3); sys.exit(3)"
    kubectl.apply(simple_pod("crasher", crash), namespace=namespace)

    def restarted_twice() -> dict[str, Any] | None:
        status = container_status(kubectl, namespace, "crasher")
        return status if status.get("restartCount", 0) >= 2 else None

    status = wait_for("restartCount >= 2", restarted_twice)
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert node_agent.logs("crasher", namespace=namespace).count("boom") >= 2


def test_killed_process_is_restarted(kubectl: Kubectl, node_agent: NodeAgent, namespace: str) -> None:
    kubectl.apply(simple_pod("sleeper", "import time; time.sleep(3600)"), namespace=namespace)
    pid = wait_for(
        "the sleeper process", lambda: node_agent.processes(namespace).get("sleeper", {}).get("main")
    )

    os.kill(pid, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        status = container_status(kubectl, namespace, "sleeper")
        return status if status.get("restartCount") == 1 and "running" in status["state"] else None

    status = wait_for("the restart after SIGKILL", restarted)
    assert status["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    assert node_agent.pid("sleeper", namespace=namespace) != pid


def test_restart_policies_end_in_terminal_phases(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        simple_pod("fails-once", "raise SystemExit(1)", restart_policy="Never"),
        simple_pod("succeeds", "print('done')", restart_policy="OnFailure"),
        namespace=namespace,
    )

    def phases() -> dict[str, str] | None:
        pods = kubectl.json("get", "pods", "-n", namespace)["items"]
        found = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
        return found if set(found.values()) <= {"Succeeded", "Failed"} and len(found) == 2 else None

    assert wait_for("terminal phases", phases) == {"fails-once": "Failed", "succeeds": "Succeeded"}
    assert container_status(kubectl, namespace, "fails-once")["restartCount"] == 0


def test_liveness_probe_failure_restarts_container(kubectl: Kubectl, namespace: str) -> None:
    port = free_port()
    # Healthy for two seconds, then failing.
    script = f"""
import http.server, os, socketserver, time
start = time.monotonic()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if time.monotonic() - start < 2 else 500)
        self.end_headers()
    def log_message(self, *args):
        pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer((os.environ["POD_IP"], {port}), Handler).serve_forever()
"""
    probe = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1, "failureThreshold": 2}
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    container = {"livenessProbe": probe, "env": [pod_ip]}
    kubectl.apply(simple_pod("flaky", script, container=container), namespace=namespace)
    wait_for(
        "a liveness restart",
        lambda: container_status(kubectl, namespace, "flaky").get("restartCount", 0) >= 1,
        timeout=30,
    )


def test_env_and_volumes_from_configmap_and_secret(
    kubectl: Kubectl, node_agent: NodeAgent, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"GREETING": "hello", "COLOR": "blue", "settings.yaml": "answer: 42\n"},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"PASSWORD": "s3cret", "API_TOKEN": "t0k3n"},
    }
    script = """
import json, os, sys
keys = ["GREETING_FROM_CM", "PLAIN", "SECRET_PASSWORD", "POD_NAME", "POD_NAMESPACE", "POD_IP", "NODE_NAME",
        "SA_NAME", "CM_COLOR", "API_TOKEN", "DA_VOLUME_CONFIG", "DA_VOLUME_TMP", "SCRATCH"]
result = {key: os.environ.get(key) for key in keys}
result["config_file"] = open(os.environ["CONFIG_FILE"]).read()
result["secret_file"] = open(sys.argv[1]).read()
print(json.dumps(result))
"""
    pod = simple_pod(
        "env-check",
        script,
        restart_policy="Never",
        volumes=[
            {"name": "config", "configMap": {"name": "settings"}},
            {"name": "secret", "secret": {"secretName": "creds"}},
            # A mount at /tmp must not disturb the agent's own paths (PATH, volume dirs) under /tmp.
            {"name": "tmp", "emptyDir": {}},
        ],
        container={
            "args": ["/etc/secret/PASSWORD"],
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "CM_"},
                {"secretRef": {"name": "creds"}},
            ],
            "env": [
                {
                    "name": "GREETING_FROM_CM",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "GREETING"}},
                },
                {"name": "PLAIN", "value": "plain-$(GREETING_FROM_CM)"},
                {
                    "name": "SECRET_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}},
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "CONFIG_FILE", "value": "/etc/config/settings.yaml"},
                {"name": "SCRATCH", "value": "/tmp/scratch"},
            ],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/config"},
                {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
    )
    kubectl.apply(config_map, secret, pod, namespace=namespace)
    wait_for(
        "env-check to succeed",
        lambda: (
            kubectl.json("get", "pod", "env-check", "-n", namespace)["status"].get("phase") == "Succeeded"
        ),
    )

    result = output_json(node_agent, namespace, "env-check")
    pod_ip = kubectl.json("get", "pod", "env-check", "-n", namespace)["status"]["podIP"]
    assert pod_ip.startswith("127.") and pod_ip != "127.0.0.1"
    volume_dir = result.pop("DA_VOLUME_CONFIG")
    assert volume_dir and os.path.isdir(volume_dir)
    tmp_dir = result.pop("DA_VOLUME_TMP")
    assert tmp_dir and os.path.isdir(tmp_dir)
    assert result.pop("SCRATCH") == f"{tmp_dir}/scratch"
    assert result == {
        "GREETING_FROM_CM": "hello",
        "PLAIN": "plain-hello",
        "SECRET_PASSWORD": "s3cret",
        "POD_NAME": "env-check",
        "POD_NAMESPACE": namespace,
        "POD_IP": pod_ip,
        "NODE_NAME": node_agent.node_name,
        "SA_NAME": "default",
        "CM_COLOR": "blue",
        "API_TOKEN": "t0k3n",
        "config_file": "answer: 42\n",
        "secret_file": "s3cret",
    }


def test_process_acts_as_its_service_account(kubectl: Kubectl, node_agent: NodeAgent, namespace: str) -> None:
    rbac = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
        },
    ]
    # The same fallback kopf's login uses: in-cluster config first, then KUBECONFIG.
    script = """
import json, os
from kubernetes import client, config
try:
    config.load_incluster_config()
except config.ConfigException:
    config.load_kube_config()
namespace = open(os.path.join(os.environ["DA_SERVICEACCOUNT_DIR"], "namespace")).read()
review = client.AuthenticationV1Api().create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                                  "kind": "SelfSubjectReview"})
result = {"namespace": namespace, "user": review.status.user_info.username,
          "pods": len(client.CoreV1Api().list_namespaced_pod(namespace).items)}
try:
    client.CoreV1Api().list_namespaced_secret(namespace)
    result["secrets"] = "allowed"
except client.ApiException as error:
    result["secrets"] = error.status
print(json.dumps(result))
"""
    kubectl.apply(*rbac, namespace=namespace)
    kubectl.apply(
        simple_pod("whoami", script, restart_policy="Never", serviceAccountName="reader"), namespace=namespace
    )
    wait_for(
        "whoami to succeed",
        lambda: kubectl.json("get", "pod", "whoami", "-n", namespace)["status"].get("phase") == "Succeeded",
    )

    assert output_json(node_agent, namespace, "whoami") == {
        "namespace": namespace,
        "user": f"system:serviceaccount:{namespace}:reader",
        "pods": 1,
        "secrets": 403,
    }
