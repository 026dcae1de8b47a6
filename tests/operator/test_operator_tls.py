"""The operator through a real TLS terminator (nginx, `tests/tls_proxy.py`) in front of the dev server:
TemporalConnections whose CA, client certificate (a `kubernetes.io/tls` Secret) and API key come from
Secrets, checked for `Reachable`, used for a DurableAgent's health read and an AgentRun's start; and each
wrong setting reported with the field to fix, never with the key, and never retried hot.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from operator_support import (
    API,
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    connection_manifest,
    deployment_key,
    make_operator,
    make_real_operator,
    roll_out,
)
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput, RunUsageSummary
from durable_agents_operator.handlers import agentrun, durableagent, temporalconnection
from durable_agents_operator.health_batching import runtime_reader
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.temporal_clients import TemporalPool, default_params
from tls_proxy import Certificates, KeyPair, Mode, TlsProxy, proxies_for

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]

API_KEY = f"sk-operator-tls-{uuid.uuid4().hex}"
WRONG_KEY = "sk-wrong-operator-key-0000"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxies(
    dev_server: DevServer, pki: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Mode, TlsProxy]]:
    with proxies_for(
        tmp_path_factory.mktemp("nginx"), upstream=dev_server.address, certs=pki, api_key=API_KEY
    ) as started:
        yield started


def secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": "ns"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def tls_secret(name: str, pair: KeyPair) -> dict[str, Any]:
    return secret(name, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}, "kubernetes.io/tls")


def connection(name: str, proxy: TlsProxy, **spec: Any) -> dict[str, Any]:
    manifest = connection_manifest(name, proxy.address)
    manifest["spec"].update(spec)
    return manifest


CA = {"caSecretRef": {"name": "temporal-ca", "key": "ca.crt"}}

# name → (proxy mode, spec beyond the address); the good ones first.
CONNECTIONS: dict[str, tuple[Mode, dict[str, Any]]] = {
    "tls": ("tls", {"tls": CA}),
    "mtls": ("mtls", {"tls": {**CA, "clientCertSecretRef": {"name": "temporal-client"}}}),
    "apikey": ("api-key", {"tls": CA, "apiKeySecretRef": {"name": "temporal-key", "key": "api-key"}}),
    "wrong-ca": ("tls", {"tls": {"caSecretRef": {"name": "other-ca", "key": "ca.crt"}}}),
    "wrong-name": ("tls", {"tls": {**CA, "serverName": "temporal.example"}}),
    "no-cert": ("mtls", {"tls": CA}),
    "expired-cert": ("mtls", {"tls": {**CA, "clientCertSecretRef": {"name": "temporal-expired"}}}),
    "wrong-key": ("api-key", {"tls": CA, "apiKeySecretRef": {"name": "wrong-key", "key": "api-key"}}),
    "no-key": ("api-key", {"tls": CA}),
}
# The field each bad connection's message must name.
FIELD_TO_FIX = {
    "wrong-ca": "spec.tls.caSecretRef",
    "wrong-name": "spec.tls.serverName",
    "no-cert": "spec.tls.clientCertSecretRef",
    "expired-cert": "spec.tls.clientCertSecretRef",
    "wrong-key": "spec.apiKeySecretRef",
    "no-key": "spec.apiKeySecretRef",
}


def populate(kube: FakeKube, pki: Certificates, proxies: dict[Mode, TlsProxy]) -> None:
    kube.put(secret("temporal-ca", {"ca.crt": pki.ca.cert_pem}))
    kube.put(secret("other-ca", {"ca.crt": pki.other_ca.cert_pem}))
    kube.put(tls_secret("temporal-client", pki.client))
    kube.put(tls_secret("temporal-expired", pki.expired_client))
    kube.put(secret("temporal-key", {"api-key": API_KEY.encode() + b"\n"}))
    kube.put(secret("wrong-key", {"api-key": WRONG_KEY.encode()}))
    for name, (mode, spec) in CONNECTIONS.items():
        kube.put(connection(name, proxies[mode], **spec))


def condition(kube: FakeKube, key: ObjectKey, kind: str) -> dict[str, Any]:
    (found,) = [c for c in kube.objects[key]["status"]["conditions"] if c["type"] == kind]
    return found


def without_secrets(kube: FakeKube) -> str:
    """Everything the operator wrote where users and logs can read it: objects but Secrets, and Events."""
    objects = [o for k, o in kube.objects.items() if k.kind != "Secret"]
    return json.dumps([objects, kube.events], default=str)


async def test_connections_through_tls_mtls_and_an_api_key_are_reachable_and_each_wrong_setting_is_named(
    kube: FakeKube, clock: Clock, dev_server: DevServer, pki: Certificates, proxies: dict[Mode, TlsProxy]
) -> None:
    populate(kube, pki, proxies)
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    for name in CONNECTIONS:
        await temporalconnection.check(ops, kube.body(ObjectKey(API, "TemporalConnection", "ns", name)))
    seen = {
        name: condition(kube, ObjectKey(API, "TemporalConnection", "ns", name), "Reachable")
        for name in CONNECTIONS
    }
    for name in ("tls", "mtls", "apikey"):
        assert (seen[name]["status"], seen[name]["reason"]) == ("True", "Connected"), seen[name]
    problems = [
        f"{name}: {seen[name]}"
        for name, field in FIELD_TO_FIX.items()
        if seen[name]["status"] != "False"
        or f"{field} of TemporalConnection {name}" not in seen[name]["message"]
    ]
    assert not problems, "\n".join(problems)
    written = without_secrets(kube)
    assert API_KEY not in written and WRONG_KEY not in written
    await ops.temporal.close()


@workflow.defn(name=WORKFLOW_NAME)
class EchoRun:
    """Stands in for the agent workflow (the worker connects to the dev server directly)."""

    @workflow.run
    async def run(self, request: RunInput) -> RunOutput:
        return RunOutput(output=request.prompt, output_text=request.prompt, usage=RunUsageSummary())


async def test_an_agent_on_each_connection_reads_its_health_and_starts_runs_through_the_proxy(
    kube: FakeKube, clock: Clock, dev_server: DevServer, pki: Certificates, proxies: dict[Mode, TlsProxy]
) -> None:
    populate(kube, pki, proxies)
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    direct = await Client.connect(
        dev_server.address, namespace=dev_server.namespace, plugins=[PydanticAIPlugin()]
    )
    for name in ("tls", "mtls", "apikey"):
        agent, queue = f"agent-{name}", f"tls-{name}-{uuid.uuid4().hex[:8]}"
        kube.put(agent_manifest(agent, temporal={"connectionRef": {"name": name}, "taskQueue": queue}))
        await durableagent.reconcile(ops, kube.body(agent_key(agent)))
        roll_out(kube, agent)
        await durableagent.check_health(ops, kube.body(agent_key(agent)))
        reachable = condition(kube, agent_key(agent), "TemporalReachable")
        assert (reachable["status"], reachable["reason"]) == ("True", "Connected"), (name, reachable)

        run = kube.put(
            {
                "apiVersion": API,
                "kind": "AgentRun",
                "metadata": {"name": f"run-{name}", "namespace": "ns", "uid": str(uuid.uuid4())},
                "spec": {"agentRef": {"name": agent}, "prompt": f"hello over {name}"},
            }
        )
        run_key = ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"])
        async with Worker(
            direct, task_queue=queue, workflows=[EchoRun], workflow_runner=UnsandboxedWorkflowRunner()
        ):
            await agentrun.start(ops, kube.body(run_key))
            assert kube.objects[run_key]["status"]["phase"] == "Running", kube.objects[run_key]["status"]
            workflow_id = kube.objects[run_key]["status"]["workflowId"]
            handle = direct.get_workflow_handle(workflow_id, result_type=RunOutput)
            assert (await handle.result()).output == f"hello over {name}"
            await agentrun.poll(ops, kube.body(run_key))
        assert kube.objects[run_key]["status"]["phase"] == "Succeeded", kube.objects[run_key]["status"]

    # The worker pods get the key and the client certificate as Secret references, never as values.
    env = kube.objects[deployment_key("agent-apikey")]["spec"]["template"]["spec"]["containers"][0]["env"]
    (key_env,) = [e for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "temporal-key", "key": "api-key"}
    pod = kube.objects[deployment_key("agent-mtls")]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "temporal-client-cert"]
    assert volume["secret"]["secretName"] == "temporal-client"
    assert {i["key"] for i in volume["secret"]["items"]} == {"tls.crt", "tls.key"}
    written = without_secrets(kube)
    assert API_KEY not in written and pki.client.key_pem.decode().splitlines()[1] not in written
    await ops.temporal.close()


async def test_an_agent_on_a_refused_connection_says_which_field_to_fix_and_its_runs_wait_without_hot_retries(
    kube: FakeKube,
    clock: Clock,
    dev_server: DevServer,
    pki: Certificates,
    proxies: dict[Mode, TlsProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    populate(kube, pki, proxies)
    ops = make_real_operator(kube, clock=clock, temporal_address=dev_server.address)
    for name in ("wrong-ca", "expired-cert", "wrong-key"):
        agent = f"agent-{name}"
        kube.put(agent_manifest(agent, temporal={"connectionRef": {"name": name}}))
        await durableagent.reconcile(ops, kube.body(agent_key(agent)))
        roll_out(kube, agent)
        await durableagent.check_health(ops, kube.body(agent_key(agent)))
        reachable = condition(kube, agent_key(agent), "TemporalReachable")
        assert (reachable["status"], reachable["reason"]) == ("False", "TemporalUnreachable"), reachable
        assert f"{FIELD_TO_FIX[name]} of TemporalConnection {name}" in reachable["message"], reachable

        run = kube.put(
            {
                "apiVersion": API,
                "kind": "AgentRun",
                "metadata": {"name": f"run-{name}", "namespace": "ns", "uid": str(uuid.uuid4())},
                "spec": {"agentRef": {"name": agent}, "prompt": "hi"},
            }
        )
        run_key = ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"])
        with pytest.raises(kopf.TemporaryError) as raised:
            await agentrun.start(ops, kube.body(run_key))
        assert raised.value.delay is not None and raised.value.delay >= 10, "retried no sooner than 10 s"
        status = kube.objects[run_key]["status"]
        assert status["phase"] == "Pending" and FIELD_TO_FIX[name] in status["message"], status
    written = without_secrets(kube) + caplog.text
    assert API_KEY not in written and WRONG_KEY not in written
    await ops.temporal.close()


def default_operator(kube: FakeKube, clock: Clock, **settings: Any) -> Operator:
    """An operator whose default connection comes from its settings, as `main` builds it."""
    ops = make_operator(
        kube,
        clock=clock,
        temporal=TemporalPool(timeout=5),
        reader=runtime_reader(live_within=75, rpc_timeout=5),
        **settings,
    )
    ops.default_params = default_params(ops.settings)
    return ops


async def test_agents_without_a_connection_ref_run_on_a_default_connection_that_needs_credentials(
    kube: FakeKube, clock: Clock, dev_server: DevServer, pki: Certificates, proxies: dict[Mode, TlsProxy]
) -> None:
    defaults = {
        "api-key": {"temporal_api_key": API_KEY},
        "mtls": {
            "temporal_tls_cert_file": str(pki.client.cert),
            "temporal_tls_key_file": str(pki.client.key),
        },
    }
    direct = await Client.connect(
        dev_server.address, namespace=dev_server.namespace, plugins=[PydanticAIPlugin()]
    )
    for mode, credentials in defaults.items():
        ops = default_operator(
            kube,
            clock,
            temporal_address=proxies[mode].address,
            temporal_tls_ca_file=str(pki.ca.cert),
            **credentials,
        )
        agent, queue = f"default-{mode}", f"default-{mode}-{uuid.uuid4().hex[:8]}"
        kube.put(agent_manifest(agent, temporal={"taskQueue": queue}))
        await durableagent.reconcile(ops, kube.body(agent_key(agent)))
        roll_out(kube, agent)
        await durableagent.check_health(ops, kube.body(agent_key(agent)))
        reachable = condition(kube, agent_key(agent), "TemporalReachable")
        assert (reachable["status"], reachable["reason"]) == ("True", "Connected"), (mode, reachable)
        assert condition(kube, agent_key(agent), "Ready")["reason"] != "InvalidSpec"

        # The workers read the default connection's material from a Secret next to them, owned by the agent.
        secret = kube.objects[ObjectKey("v1", "Secret", "ns", f"{agent}-temporal")]
        assert (
            secret["metadata"]["ownerReferences"][0]["uid"]
            == kube.objects[agent_key(agent)]["metadata"]["uid"]
        )
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        assert data["ca.crt"] == pki.ca.cert_pem
        if mode == "api-key":
            assert data["api-key"] == API_KEY.encode()
        else:
            assert (data["tls.crt"], data["tls.key"]) == (pki.client.cert_pem, pki.client.key_pem)
        config = json.loads(
            kube.objects[ObjectKey("v1", "ConfigMap", "ns", f"{agent}-runtime")]["data"]["runtime.json"]
        )
        assert config["temporal"]["address"] == proxies[mode].address

        run = kube.put(
            {
                "apiVersion": API,
                "kind": "AgentRun",
                "metadata": {"name": f"run-{agent}", "namespace": "ns", "uid": str(uuid.uuid4())},
                "spec": {"agentRef": {"name": agent}, "prompt": f"hello over the default {mode}"},
            }
        )
        run_key = ObjectKey(API, "AgentRun", "ns", run["metadata"]["name"])
        async with Worker(
            direct, task_queue=queue, workflows=[EchoRun], workflow_runner=UnsandboxedWorkflowRunner()
        ):
            await agentrun.start(ops, kube.body(run_key))
            workflow_id = kube.objects[run_key]["status"]["workflowId"]
            handle = direct.get_workflow_handle(workflow_id, result_type=RunOutput)
            assert (await handle.result()).output == f"hello over the default {mode}"
        await ops.temporal.close()
    written = without_secrets(kube)
    assert API_KEY not in written and pki.client.key_pem.decode().splitlines()[1] not in written


async def test_a_refused_default_connection_names_the_operators_setting(
    kube: FakeKube, clock: Clock, pki: Certificates, proxies: dict[Mode, TlsProxy]
) -> None:
    ops = default_operator(
        kube,
        clock,
        temporal_address=proxies["api-key"].address,
        temporal_tls_ca_file=str(pki.ca.cert),
        temporal_api_key=WRONG_KEY,
    )
    kube.put(agent_manifest("on-default"))
    await durableagent.reconcile(ops, kube.body(agent_key("on-default")))
    roll_out(kube, "on-default")
    await durableagent.check_health(ops, kube.body(agent_key("on-default")))
    reachable = condition(kube, agent_key("on-default"), "TemporalReachable")
    assert reachable["status"] == "False"
    assert "DURABLE_AGENTS_TEMPORAL_API_KEY (chart: temporal.apiKeySecret)" in reachable["message"], reachable
    assert WRONG_KEY not in without_secrets(kube)
    await ops.temporal.close()
