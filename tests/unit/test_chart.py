"""The Helm chart: lint, render, and check what it renders (offline Kubernetes schemas, RBAC, security)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "durable-agents"
KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "agents-system"

MTLS_TEMPORAL = {
    "address": "temporal-frontend.temporal:7233",
    "tls": {
        "enabled": True,
        "secretName": "temporal-client",
        "caFile": "ca.crt",
        "clientCertFile": "tls.crt",
        "clientKeyFile": "tls.key",
    },
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "external-temporal": {
        "temporal": {
            "address": "prod.tmprl.example.com:7233",
            "namespace": "prod",
            "apiKeySecret": {"name": "temporal-cloud", "key": "api-key"},
            "tls": {"enabled": True, "serverName": "prod.tmprl.example.com", "secretName": "temporal-ca"},
        }
    },
    "network-policy-digest": {
        "networkPolicy": {"enabled": True},
        "watchNamespaces": ["team-a"],
        "image": {"repository": "registry.example.com/da/operator", "digest": "sha256:" + "a" * 64},
        "runtimeImage": {"repository": "registry.example.com/da/runtime", "tag": "0.1.0"},
    },
    "gateway": {"gateway": {"enabled": True}, "networkPolicy": {"enabled": True}},
    "gateway-namespaced": {
        "gateway": {"enabled": True, "port": 9000},
        "watchNamespaces": ["team-a", "team-b"],
    },
    "gateway-mtls": {"gateway": {"enabled": True}, "temporal": MTLS_TEMPORAL},
    "mtls": {"temporal": MTLS_TEMPORAL},
}


def helm_binary() -> str:
    for candidate in (REPO / ".venv" / "bin" / "helm", shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "helm not found: run scripts/install-helm.sh (make test does) to install it into .venv/bin/helm"
    )


def helm(*args: str, tmp: Path, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm with `tmp` as its home (config, cache), optionally with a values file."""
    command = [helm_binary(), *args]
    if values:
        values_file = tmp / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    # A clean environment: no user's helm config, cache or kube context leaks into the result.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "HELM_NAMESPACE": NAMESPACE}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    with tempfile.TemporaryDirectory() as tmp:
        result = helm(
            "template", "da", str(CHART), "--namespace", NAMESPACE, values=VALUE_SETS[name], tmp=Path(tmp)
        )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(name: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(name) if doc["kind"] == kind]


def one(name: str, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in objects(name, kind)
        if component is None or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{name}: expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def operator_env(name: str) -> dict[str, Any]:
    container = one(name, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def pod_specs(name: str) -> list[tuple[str, dict[str, Any]]]:
    specs = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in objects(name, "Deployment")]
    return specs + [(p["metadata"]["name"], p["spec"]) for p in objects(name, "Pod")]


# --- lint and render ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_chart_lints_cleanly(name: str, tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART), values=VALUE_SETS[name], tmp=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_are_valid_kubernetes_objects(name: str) -> None:
    kinds = set()
    for doc in rendered(name):
        # Offline OpenAPI schemas of the core types, strict: unknown fields are errors too.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        kinds.add(doc["kind"])
    assert {"Deployment", "Service", "ServiceAccount", "Pod"} <= kinds
    assert {"ClusterRole", "Role"} & kinds


def test_crds_ship_in_the_chart_crds_directory(tmp_path: Path) -> None:
    result = helm("template", "da", str(CHART), "--include-crds", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    crds = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "agentruns.durable-agents.dev",
        "durableagents.durable-agents.dev",
        "temporalconnections.durable-agents.dev",
        "toolapprovals.durable-agents.dev",
    ]


# --- values.schema.json and template checks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_value", "complaint"),
    [
        ("replicaCount=abc", "replicaCount"),
        ("replicaCount=2", "replicaCount"),
        ("watchNamespaces[0]=Team_A", "watchNamespaces"),
        ("operator.livenessPort=http", "livenessPort"),
        ("temporal.adress=temporal:7233", "adress"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("gateway.port=http", "port"),
        ("gateway.enabeld=true", "enabeld"),
    ],
)
def test_values_schema_rejects_bad_values(set_value: str, complaint: str, tmp_path: Path) -> None:
    # The complaint names the value (helm's wording differs between releases).
    result = helm("lint", str(CHART), "--set", set_value, tmp=tmp_path)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_api_key_and_mtls_together_fail_with_a_fix(tmp_path: Path) -> None:
    values = {"temporal": {**VALUE_SETS["mtls"]["temporal"], "apiKeySecret": {"name": "k", "key": "api-key"}}}
    result = helm("template", "da", str(CHART), values=values, tmp=tmp_path)
    assert result.returncode != 0
    assert "exclude each other" in result.stderr


# --- operator Deployment --------------------------------------------------------------------------------


def test_operator_runs_one_replica_recreated_with_a_kopf_liveness_probe() -> None:
    deployment = one("default", "Deployment", "operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["durable-agents", "operator"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}


def test_operator_settings_come_from_values_and_the_downward_api() -> None:
    env = operator_env("default")
    assert env["DURABLE_AGENTS_BIND_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["DURABLE_AGENTS_LIVENESS_PORT"] == "8080"
    assert env["DURABLE_AGENTS_HEALTH_INTERVAL"] == "10"
    assert env["DURABLE_AGENTS_WATCH_NAMESPACES"] == ""
    assert env["DURABLE_AGENTS_WORKER_IMAGE"] == "ghcr.io/durable-agents/runtime:0.1.0"
    assert env["DURABLE_AGENTS_TEMPORAL_NAMESPACE"] == "default"
    assert "DURABLE_AGENTS_TEMPORAL_API_KEY" not in env


def test_every_container_runs_restricted() -> None:
    for name in VALUE_SETS:
        for pod, spec in pod_specs(name):
            assert spec["securityContext"]["runAsNonRoot"] is True, pod
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True, pod
                assert context["readOnlyRootFilesystem"] is True, pod
                assert context["allowPrivilegeEscalation"] is False, pod
                assert context["capabilities"] == {"drop": ["ALL"]}, pod
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}, pod
                assert "command" in container, f"{pod}: containers name their command"


# --- Temporal: dev server or a real one -----------------------------------------------------------------


def test_dev_temporal_server_runs_by_default_and_the_operator_points_at_it() -> None:
    deployment = one("default", "Deployment", "temporal-dev")
    service = one("default", "Service", "temporal-dev")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:4] == ["temporal", "server", "start-dev", "--headless"]
    # Not the pod IP: the dev server dials its internal services on 127.0.0.1 whatever --ip says.
    assert command[command.index("--ip") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "7233"
    assert "--http-port" in command and "--metrics-port" in command
    assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    data = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {}}
    assert command[command.index("--db-filename") + 1].startswith("/data/")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    address = operator_env("default")["DURABLE_AGENTS_TEMPORAL_ADDRESS"]
    assert address == f"{service['metadata']['name']}.{NAMESPACE}.svc:7233"


def test_a_real_temporal_turns_the_dev_server_off_and_brings_its_credentials() -> None:
    assert not [
        d for d in rendered("external-temporal") if "temporal-dev" in str(d["metadata"].get("labels"))
    ]
    env = operator_env("external-temporal")
    assert env["DURABLE_AGENTS_TEMPORAL_ADDRESS"] == "prod.tmprl.example.com:7233"
    assert env["DURABLE_AGENTS_TEMPORAL_NAMESPACE"] == "prod"
    assert env["DURABLE_AGENTS_TEMPORAL_API_KEY"] == {
        "secretKeyRef": {"name": "temporal-cloud", "key": "api-key"}
    }
    assert env["DURABLE_AGENTS_TEMPORAL_TLS"] == "true"
    assert env["DURABLE_AGENTS_TEMPORAL_TLS_SERVER_NAME"] == "prod.tmprl.example.com"


def test_mtls_files_come_from_a_mounted_secret() -> None:
    env = operator_env("mtls")
    spec = one("mtls", "Deployment", "operator")["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "temporal-tls")
    assert mount["readOnly"] is True
    assert {"name": "temporal-tls", "secret": {"secretName": "temporal-client"}} in spec["volumes"]
    for variable, key in (("CA_FILE", "ca.crt"), ("CERT_FILE", "tls.crt"), ("KEY_FILE", "tls.key")):
        assert env[f"DURABLE_AGENTS_TEMPORAL_TLS_{variable}"] == f"{mount['mountPath']}/{key}"
    assert "DURABLE_AGENTS_TEMPORAL_API_KEY" not in env


# --- RBAC -----------------------------------------------------------------------------------------------

CLUSTER_SCOPED = {("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_no_rbac_rule_uses_a_wildcard() -> None:
    for name in VALUE_SETS:
        for doc in rendered(name):
            for rule in doc.get("rules", []):
                for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                    assert not any("*" in item for item in rule.get(field, [])), f"{name}: {rule}"


# What kopf needs beyond the operator's own requests (preflight.REQUIRED): cluster-wide resource scanning,
# and blockOwnerDeletion on owner references where OwnerReferencesPermissionEnforcement is on.
KOPF_AND_OWNER_REFERENCES = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("durable-agents.dev", "durableagents/finalizers", "update"),
    ("durable-agents.dev", "agentruns/finalizers", "update"),
}


USER_ROLES = ("approver", "viewer")
OTHER_ROLES = (*USER_ROLES, "gateway")


def operator_cluster_roles(name: str) -> list[dict[str, Any]]:
    """The ClusterRoles granted to the operator (not the approver and viewer roles for people)."""
    return [
        r
        for r in objects(name, "ClusterRole")
        if r["metadata"]["labels"].get("app.kubernetes.io/component") not in OTHER_ROLES
    ]


def operator_cluster_role(name: str) -> dict[str, Any]:
    (role,) = operator_cluster_roles(name)
    return role


def test_cluster_mode_grants_exactly_what_the_operator_checks_for_at_start_up_and_kopf_needs() -> None:
    from durable_agents_operator.preflight import REQUIRED

    granted = grants(operator_cluster_role("default")["rules"])
    needed = {(group, resource, verb) for group, resource, verbs in REQUIRED for verb in verbs}
    assert not needed - granted, f"the ClusterRole lacks {sorted(needed - granted)}"
    # Least privilege: nothing the code does not use (no pods, no update verbs, no namespaces).
    assert granted == needed | KOPF_AND_OWNER_REFERENCES, sorted(granted - needed - KOPF_AND_OWNER_REFERENCES)
    assert {verb for group, resource, verb in granted if resource == "secrets"} == {"get"}
    binding = one("default", "ClusterRoleBinding")
    account = one("default", "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert (
        one("default", "Deployment", "operator")["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("external-temporal", {"temporal_api_key": "k"}),
        (
            "mtls",
            {"temporal_tls_ca_file": "/ca", "temporal_tls_cert_file": "/c", "temporal_tls_key_file": "/k"},
        ),
    ],
)
def test_a_default_connection_with_credentials_adds_exactly_the_secret_writes_the_operator_checks_for(
    name: str, settings: dict[str, str]
) -> None:
    from durable_agents_operator.preflight import REQUIRED, required
    from durable_agents_operator.settings import OperatorSettings

    granted = grants(operator_cluster_role(name)["rules"])
    needed = {
        (group, resource, verb)
        for group, resource, verbs in required(OperatorSettings.model_validate(settings))
        for verb in verbs
    }
    assert granted == needed | KOPF_AND_OWNER_REFERENCES
    assert {verb for group, resource, verb in granted if resource == "secrets"} == {"get", "create", "patch"}
    assert required(OperatorSettings()) == REQUIRED  # no credentials: Secrets are only read


def test_namespaced_mode_grants_roles_only_in_the_listed_namespaces() -> None:
    roles = objects("namespaced", "Role")
    bindings = objects("namespaced", "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    cluster_grants = grants(operator_cluster_role("default")["rules"])
    assert grants(roles[0]["rules"]) == cluster_grants - {
        (g, r, v) for g, r, v in cluster_grants if (g, r) in CLUSTER_SCOPED
    }
    for cluster_role in operator_cluster_roles("namespaced"):
        resources = {(g, r) for g, r, _ in grants(cluster_role["rules"])}
        assert resources <= CLUSTER_SCOPED, (
            f"namespaced mode grants {resources - CLUSTER_SCOPED} cluster-wide"
        )
    assert operator_env("namespaced")["DURABLE_AGENTS_WATCH_NAMESPACES"] == "team-a,team-b"


# --- approvals: admission policies and the roles for people ---------------------------------------------


def by_component(name: str, component: str) -> dict[str, Any]:
    (role,) = [
        r
        for r in objects(name, "ClusterRole")
        if r["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return role


def test_the_approver_may_create_toolapprovals_and_read_runs_and_the_viewer_only_reads() -> None:
    group = "durable-agents.dev"
    approver = grants(by_component("default", "approver")["rules"])
    viewer = grants(by_component("default", "viewer")["rules"])
    assert (group, "toolapprovals", "create") in approver
    assert {(group, "agentruns", v) for v in ("get", "list", "watch")} <= approver
    # Deciding is creating a ToolApproval: no role for people changes a run, an agent or a decision.
    for verb in ("update", "patch", "delete"):
        assert not {g for g in approver | viewer if g[2] == verb}
    assert not any(resource.endswith("/status") for _, resource, _ in approver | viewer)
    assert {verb for _, _, verb in viewer} == {"get", "list", "watch"}
    assert {(group, "toolapprovals", "get"), (group, "agentruns", "get")} <= viewer


def test_the_decider_policy_refuses_another_name_and_the_filling_policy_follows_the_api_server(
    tmp_path: Path,
) -> None:
    (policy,) = objects("default", "ValidatingAdmissionPolicy")
    (binding,) = objects("default", "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["toolapprovals"], ["CREATE"])
    [validation] = policy["spec"]["validations"]
    assert "object.spec.decidedBy == request.userInfo.username" in validation["expression"]
    # helm template knows no MutatingAdmissionPolicy unless told the API server serves it.
    assert not objects("default", "MutatingAdmissionPolicy")
    served = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
    result = helm("template", "da", str(CHART), "--api-versions", served, tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    [mutating] = [d for d in docs if d["kind"] == "MutatingAdmissionPolicy"]
    assert [d["spec"]["policyName"] for d in docs if d["kind"] == "MutatingAdmissionPolicyBinding"] == [
        mutating["metadata"]["name"]
    ]
    assert "request.userInfo.username" in mutating["spec"]["mutations"][0]["jsonPatch"]["expression"]
    assert mutating["spec"]["matchConditions"][0]["expression"] == "!has(object.spec.decidedBy)"


# --- the gateway ----------------------------------------------------------------------------------------


def gateway_grants(name: str) -> dict[str | None, set[tuple[str, str, str]]]:
    """What the gateway's service account is granted: cluster-wide (None) and per namespace."""
    account = one(name, "ServiceAccount", "gateway")["metadata"]["name"]
    found: dict[str | None, set[tuple[str, str, str]]] = {}
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in objects(name, kind):
            if {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} not in binding["subjects"]:
                continue
            namespace = binding["metadata"].get("namespace")
            (role,) = [
                r
                for r in objects(name, role_kind)
                if r["metadata"]["name"] == binding["roleRef"]["name"]
                and r["metadata"].get("namespace") == namespace
            ]
            found.setdefault(namespace, set()).update(grants(role["rules"]))
    return found


REVIEWS = {
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
}
LIST_AGENTS = ("durable-agents.dev", "durableagents", "list")


def test_the_gateway_is_off_by_default() -> None:
    assert not [d for d in rendered("default") if "gateway" in d["metadata"]["name"]]


def test_the_gateway_may_check_tokens_and_access_and_list_agents_nothing_else() -> None:
    assert gateway_grants("gateway") == {None: REVIEWS | {LIST_AGENTS}}
    # Namespaced: the reviews stay cluster-scoped (they are), listing agents only where the operator watches.
    assert gateway_grants("gateway-namespaced") == {
        None: REVIEWS,
        "team-a": {LIST_AGENTS},
        "team-b": {LIST_AGENTS},
    }


def test_the_gateway_serves_the_operators_default_connection_on_its_pod_ip() -> None:
    deployment = one("gateway-mtls", "Deployment", "gateway")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == one("gateway-mtls", "ServiceAccount", "gateway")["metadata"]["name"]
    (container,) = spec["containers"]
    command = container["command"]
    assert command[:3] == ["durable-agents", "gateway", "--in-cluster"]
    assert command[command.index("--host") + 1] == "$(POD_IP)"
    assert command[command.index("--port") + 1] == "8780"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env.pop("POD_IP") == {"fieldRef": {"fieldPath": "status.podIP"}}
    operator = operator_env("gateway-mtls")
    # The same default connection as the operator's, every DURABLE_AGENTS_TEMPORAL_* variable of it.
    assert env == {k: v for k, v in operator.items() if k.startswith("DURABLE_AGENTS_TEMPORAL_")} | {
        "DURABLE_AGENTS_WATCH_NAMESPACES": ""
    }
    assert env["DURABLE_AGENTS_TEMPORAL_TLS_KEY_FILE"].startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "temporal-tls")
    )
    assert {"name": "temporal-tls", "secret": {"secretName": "temporal-client"}} in spec["volumes"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one("gateway-mtls", "Service", "gateway")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8780, "targetPort": "http", "protocol": "TCP"}
    ]
    ports = container["ports"]
    assert ports == [{"name": "http", "containerPort": 8780, "protocol": "TCP"}]


def test_a_namespaced_gateway_serves_the_watched_namespaces_on_its_own_port() -> None:
    container = one("gateway-namespaced", "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][
        0
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DURABLE_AGENTS_WATCH_NAMESPACES"] == "team-a,team-b"
    assert container["command"][container["command"].index("--port") + 1] == "9000"
    assert container["ports"][0]["containerPort"] == 9000


def test_the_gateway_network_policy_lets_requests_in_and_reaches_the_apiserver_and_temporal() -> None:
    policy = next(
        p for p in objects("gateway", "NetworkPolicy") if p["metadata"]["name"].endswith("-gateway")
    )
    deployment = one("gateway", "Deployment", "gateway")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8780, "protocol": "TCP"}]}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (7233, "TCP")}


# --- helm test and NOTES --------------------------------------------------------------------------------


def test_helm_test_pod_gets_healthz_through_the_operator_service() -> None:
    pod = one("default", "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    service = one("default", "Service", "operator")
    deployment = one("default", "Deployment", "operator")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "health", "port": 8080, "targetPort": "health", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in ports
    url = pod["spec"]["containers"][0]["command"][-1]
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:8080/healthz"


def test_network_policies_exist_only_when_enabled_and_cover_each_component() -> None:
    assert objects("default", "NetworkPolicy") == []
    policies = {p["metadata"]["name"]: p for p in objects("network-policy-digest", "NetworkPolicy")}
    assert set(policies) == {"da-durable-agents-operator", "da-durable-agents-temporal-dev"}
    operator = policies["da-durable-agents-operator"]["spec"]
    deployment = one("network-policy-digest", "Deployment", "operator")
    assert operator["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    egress_ports = {(p["port"], p["protocol"]) for rule in operator["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (7233, "TCP")}
    # The dev server calls nobody; workers of any namespace may call it.
    temporal = policies["da-durable-agents-temporal-dev"]
    assert temporal["spec"]["egress"] == [] and temporal["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {}}
    ]


def test_network_policies_turn_on_the_operators_worker_policies_with_the_charts_worker_egress() -> None:
    from durable_agents_operator.settings import OperatorSettings

    assert "DURABLE_AGENTS_WORKER_NETWORK_POLICY" not in operator_env("default")
    env = operator_env("network-policy-digest")
    settings = OperatorSettings.model_validate(
        {
            "worker_network_policy": env["DURABLE_AGENTS_WORKER_NETWORK_POLICY"],
            "worker_egress": json.loads(env["DURABLE_AGENTS_WORKER_EGRESS"]),
        }
    )
    assert settings.worker_network_policy is True
    assert settings.worker_egress == ({"ports": [{"port": 443, "protocol": "TCP"}]},)
    # ... and exactly the rights the operator checks for with them (cluster-wide here), which it lacks
    # without them.
    from durable_agents_operator.preflight import required

    needed = {(g, r, v) for g, r, verbs in required(settings) for v in verbs}
    assert grants(operator_cluster_role("gateway")["rules"]) == needed | KOPF_AND_OWNER_REFERENCES
    assert ("networking.k8s.io", "networkpolicies", "create") in needed
    assert not any(g[1] == "networkpolicies" for g in grants(operator_cluster_role("default")["rules"]))
    for role in objects("network-policy-digest", "Role"):  # namespaced: in each watched namespace
        assert ("networking.k8s.io", "networkpolicies", "create") in grants(role["rules"])


def test_an_image_digest_pins_the_image_and_wins_over_the_tag() -> None:
    container = one("network-policy-digest", "Deployment", "operator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "registry.example.com/da/operator@sha256:" + "a" * 64
    env = operator_env("network-policy-digest")
    assert env["DURABLE_AGENTS_WORKER_IMAGE"] == "registry.example.com/da/runtime:0.1.0"


def test_notes_tell_the_user_what_to_apply_next(tmp_path: Path) -> None:
    # helm renders NOTES.txt only on install; render it here as the body of a ConfigMap in a copy.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "notes" . | quote }}\n'
    )
    result = helm("template", "da", str(chart), "--show-only", "templates/notes.yaml", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    text = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "kubectl apply -f examples/hello.yaml" in text
    assert "kubectl get da" in text
    assert "helm test da" in text
