"""What the builders promise beyond their golden files: rollouts on config change, secrets only by
reference, grace periods that fit the drain, and spec errors that name the field to fix."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from durable_agents_api.resources import DurableAgent, TemporalConnection
from durable_agents_operator.builders import resolve_temporal, selector_string
from durable_agents_operator.builders.agent_objects import build_agent_objects, child_keys
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import InvalidSpec
from durable_agents_operator.naming import ANNOTATION_CONFIG_HASH, child_name
from durable_agents_operator.object_identity import key_of

DEFAULT = ConnectionParams(address="temporal:7233", namespace="default")
BASE: dict[str, Any] = {"agent": {"name": "hello", "model": "test"}}


def agent(spec: dict[str, Any] | None = None, *, name: str = "hello", **changes: Any) -> DurableAgent:
    merged = copy.deepcopy(spec if spec is not None else BASE)
    merged.update(changes)
    return DurableAgent.model_validate(
        {"metadata": {"name": name, "namespace": "ns", "uid": "u1", "generation": 1}, "spec": merged}
    )


def build(
    da: DurableAgent, conn: TemporalConnection | None = None, default: ConnectionParams = DEFAULT
) -> dict:
    temporal = resolve_temporal(da, connection=conn, default=default)
    built = build_agent_objects(da, temporal=temporal, default_image="img:default")
    return {m["kind"]: m for m in built.manifests}


def pod(objects: dict[str, Any]) -> dict[str, Any]:
    return objects["Deployment"]["spec"]["template"]


def container(objects: dict[str, Any]) -> dict[str, Any]:
    return pod(objects)["spec"]["containers"][0]


def config_hash_of(objects: dict[str, Any]) -> str:
    return pod(objects)["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]


def test_changing_the_agent_config_changes_the_pod_template_hash_so_workers_roll() -> None:
    before = build(agent())
    after = build(agent({"agent": {"name": "hello", "model": "test", "instructions": "Be brief."}}))
    assert config_hash_of(before) != config_hash_of(after)
    assert json.loads(after["ConfigMap"]["data"]["runtime.json"])["agent"]["instructions"] == "Be brief."


def test_scaling_or_pausing_changes_replicas_but_not_the_config_hash() -> None:
    one, three, paused = build(agent()), build(agent(replicas=3)), build(agent(replicas=3, paused=True))
    assert [o["Deployment"]["spec"]["replicas"] for o in (one, three, paused)] == [1, 3, 0]
    assert config_hash_of(one) == config_hash_of(three) == config_hash_of(paused)


def test_a_pdb_exists_only_while_two_or_more_workers_should_run() -> None:
    assert "PodDisruptionBudget" not in build(agent())
    assert "PodDisruptionBudget" in build(agent(replicas=2))
    assert "PodDisruptionBudget" not in build(agent(replicas=2, paused=True))


def test_credentials_reach_the_pod_only_as_secret_references() -> None:
    spec = {
        "agent": {"name": "hello", "model": "openai-chat:gpt-4.1"},
        "model": {
            "credentials": [{"name": "OPENAI_API_KEY", "secretKeyRef": {"name": "openai", "key": "k"}}]
        },
        "observability": {"logfire": {"tokenSecretRef": {"name": "logfire", "key": "token"}}},
        "temporal": {"connectionRef": {"name": "cloud"}},
    }
    conn = TemporalConnection.model_validate(
        {
            "metadata": {"name": "cloud", "namespace": "ns"},
            "spec": {
                "address": "x.tmprl.cloud:7233",
                "tls": {},
                "apiKeySecretRef": {"name": "tc", "key": "key"},
            },
        }
    )
    objects = build(agent(spec), conn)
    env = {e["name"]: e for e in container(objects)["env"]}
    for name, secret in {
        "OPENAI_API_KEY": "openai",
        "LOGFIRE_TOKEN": "logfire",
        "TEMPORAL_API_KEY": "tc",
    }.items():
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    config = json.loads(objects["ConfigMap"]["data"]["runtime.json"])
    assert config["temporal"]["apiKeyEnv"] == "TEMPORAL_API_KEY"
    assert config["temporal"]["tls"] == {}
    assert "tokenSecretRef" not in json.dumps(config)


def test_mtls_secrets_are_mounted_where_the_runtime_config_points() -> None:
    conn = TemporalConnection.model_validate(
        {
            "metadata": {"name": "mtls", "namespace": "ns"},
            "spec": {
                "address": "t:7233",
                "tls": {
                    "caSecretRef": {"name": "ca", "key": "bundle.pem"},
                    "clientCertSecretRef": {"name": "client"},
                },
            },
        }
    )
    objects = build(agent({**BASE, "temporal": {"connectionRef": {"name": "mtls"}}}), conn)
    tls = json.loads(objects["ConfigMap"]["data"]["runtime.json"])["temporal"]["tls"]
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(objects)["spec"]["volumes"]}
    for file_key, volume in (("caFile", "temporal-ca"), ("clientCertFile", "temporal-client-cert")):
        directory, filename = tls[file_key].rsplit("/", 1)
        assert mounts[volume] == directory
        assert filename in [item["path"] for item in volumes[volume]["secret"]["items"]]
    assert tls["clientKeyFile"].startswith(mounts["temporal-client-cert"])


def test_grace_period_covers_the_worker_drain_plus_a_margin() -> None:
    default = build(agent())
    longer = build(agent(worker={"gracefulShutdownTimeout": "2m"}))
    template = build(agent(template={"terminationGracePeriodSeconds": 300}))
    assert pod(default)["spec"]["terminationGracePeriodSeconds"] == 45
    assert pod(longer)["spec"]["terminationGracePeriodSeconds"] == 135
    assert pod(template)["spec"]["terminationGracePeriodSeconds"] == 300


def test_a_grace_period_shorter_than_the_drain_is_an_invalid_spec_naming_both_fields() -> None:
    with pytest.raises(InvalidSpec, match=r"terminationGracePeriodSeconds is 20.*at least 45"):
        build(agent(template={"terminationGracePeriodSeconds": 20}))


@pytest.mark.parametrize("name", ["DURABLE_AGENTS_CONFIG", "POD_NAME", "HOME"])
def test_template_env_may_not_redefine_what_the_operator_sets(name: str) -> None:
    with pytest.raises(InvalidSpec, match=rf"spec\.template\.env\[0\] sets {name}"):
        build(agent(template={"env": [{"name": name, "value": "x"}]}))


def test_a_credential_and_a_template_env_with_the_same_name_is_rejected() -> None:
    spec = {
        **BASE,
        "model": {"credentials": [{"name": "OPENAI_API_KEY", "secretKeyRef": {"name": "s", "key": "k"}}]},
        "template": {"env": [{"name": "OPENAI_API_KEY", "value": "inline"}]},
    }
    with pytest.raises(InvalidSpec, match=r"spec\.template\.env\[0\] sets OPENAI_API_KEY"):
        build(agent(spec))


def test_image_comes_from_the_code_agent_then_the_template_then_the_operator_default() -> None:
    code = {"agent": {"name": "c", "entrypoint": "pkg.mod:agent", "image": "img:code"}}
    assert container(build(agent(code, template={"image": "img:template"})))["image"] == "img:code"
    assert container(build(agent(template={"image": "img:template"})))["image"] == "img:template"
    assert container(build(agent()))["image"] == "img:default"


def test_the_worker_runs_restricted_with_a_writable_tmp_only() -> None:
    objects = build(agent())
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod(objects)["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    writable = [m for m in container(objects)["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"]


def test_workers_get_default_requests_and_a_memory_limit_without_a_cpu_limit() -> None:
    resources = container(build(agent()))["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def test_template_resources_override_the_defaults_key_by_key() -> None:
    spec = {**BASE, "template": {"resources": {"limits": {"memory": "2Gi", "cpu": "2"}}}}
    resources = container(build(agent(spec)))["resources"]
    # Only what the template names changes; the default requests stay.
    assert resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "2Gi", "cpu": "2"},
    }


def test_probes_and_metrics_use_the_ports_of_the_runtime_config() -> None:
    objects = build(agent(worker={"healthPort": 9000}, observability={"prometheusPort": 9100}))
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"health": 9000, "metrics": 9100}
    assert container(objects)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container(objects)["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert objects["Service"]["spec"]["ports"][0]["port"] == 9100


def test_health_port_zero_is_rejected_because_probes_need_a_fixed_port() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.worker\.healthPort"):
        build(agent(worker={"healthPort": 0}))


def test_the_selector_matches_the_pod_labels_and_survives_user_labels() -> None:
    objects = build(agent(template={"labels": {"durable-agents.dev/agent": "someone-else"}}))
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    labels = pod(objects)["metadata"]["labels"]
    assert all(labels[k] == v for k, v in selector.items())
    assert selector_string("hello") == ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def test_activity_settings_for_an_unknown_toolset_are_rejected_before_anything_is_built() -> None:
    spec = {**BASE, "activities": {"toolsets": {"nope": {"heartbeatTimeout": "5s"}}}}
    with pytest.raises(ValidationError, match=r"names toolset ids \['nope'\]"):
        agent(spec)


def test_names_longer_than_a_label_value_are_rejected() -> None:
    with pytest.raises(InvalidSpec, match=r"metadata\.name is 64 characters"):
        build(agent(name="a" * 64))


def test_child_names_stay_dns_labels_and_stable_for_long_agent_names() -> None:
    name = "a" * 63
    assert len(child_name(name, "metrics")) <= 63
    assert child_name(name, "metrics") == child_name(name, "metrics")
    assert child_name(name, "metrics") != child_name("a" * 62 + "b", "metrics")
    assert child_name("hello", "metrics") == "hello-metrics"


def test_every_built_object_is_among_the_keys_the_operator_observes() -> None:
    objects = build(agent(replicas=3))
    assert {key_of(m) for m in objects.values()} <= set(child_keys("hello", "ns"))
    default = ConnectionParams(address="x:7233", namespace="n", tls=True, api_key="k")
    temporal = resolve_temporal(agent(), connection=None, default=default)
    built = build_agent_objects(agent(), temporal=temporal, default_image="img")
    assert {key_of(m) for m in built.manifests} <= set(built.observed_keys)


def test_the_default_connections_api_key_reaches_workers_through_a_secret_the_agent_owns() -> None:
    default = ConnectionParams(address="x:7233", namespace="n", tls=True, api_key="sk-default-123")
    objects = build(agent(), default=default)
    secret = objects["Secret"]
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == ("hello-temporal", "ns")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert base64.b64decode(secret["data"]["api-key"]) == b"sk-default-123"
    (env,) = [e for e in container(objects)["env"] if e["name"] == "TEMPORAL_API_KEY"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "hello-temporal", "key": "api-key"}
    config = json.loads(objects["ConfigMap"]["data"]["runtime.json"])
    assert config["temporal"]["apiKeyEnv"] == "TEMPORAL_API_KEY"
    others = json.dumps([m for kind, m in objects.items() if kind != "Secret"])
    assert "sk-default-123" not in others and base64.b64encode(b"sk-default-123").decode() not in others


def test_the_default_connections_ca_and_client_certificate_are_mounted_from_the_agents_secret() -> None:
    default = ConnectionParams(
        address="x:7233", namespace="n", tls=True, ca=b"CA", client_cert=b"CERT", client_key=b"KEY"
    )
    objects = build(agent(), default=default)
    assert set(objects["Secret"]["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    volumes = {v["name"]: v["secret"] for v in pod(objects)["spec"]["volumes"] if "secret" in v}
    assert {v["secretName"] for v in volumes.values()} == {"hello-temporal"}
    config = json.loads(objects["ConfigMap"]["data"]["runtime.json"])
    assert config["temporal"]["tls"] == {
        "caFile": "/var/run/durable-agents/temporal-tls/ca/ca.crt",
        "clientCertFile": "/var/run/durable-agents/temporal-tls/client/tls.crt",
        "clientKeyFile": "/var/run/durable-agents/temporal-tls/client/tls.key",
    }


def test_a_default_connection_without_material_needs_no_secret() -> None:
    assert "Secret" not in build(agent())
    default = ConnectionParams(address="x:7233", namespace="n", tls=True, server_name="t.example")
    assert "Secret" not in build(agent(), default=default)


def test_the_default_tls_connection_passes_its_server_name_to_workers() -> None:
    default = ConnectionParams(address="x:7233", namespace="n", tls=True, server_name="temporal.example")
    config = json.loads(build(agent(), default=default)["ConfigMap"]["data"]["runtime.json"])
    assert config["temporal"] == {
        "address": "x:7233",
        "namespace": "n",
        "taskQueue": "ns.hello",
        "tls": {"serverName": "temporal.example"},
    }


def test_workers_get_requests_and_a_memory_limit_but_no_cpu_limit_unless_the_template_sets_them() -> None:
    resources = container(build(agent()))["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"] == {"memory": "1Gi"}  # a CPU limit would throttle heartbeats
    own = {"limits": {"cpu": "2"}}
    assert container(build(agent(template={"resources": own})))["resources"]["limits"] == {
        "memory": "1Gi",
        "cpu": "2",
    }


def test_workers_prefer_distinct_nodes_unless_the_template_sets_affinity() -> None:
    preferred = pod(build(agent()))["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = preferred[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "durable-agents-worker",
        "durable-agents.dev/agent": "hello",
    }
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert pod(build(agent(template={"affinity": own})))["spec"]["affinity"] == own
