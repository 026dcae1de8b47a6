"""TemporalConnection: the `Reachable` check against a real dev server, a closed port and missing
Secrets, and how its Secrets become the operator's connection parameters."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from operator_support import API, Clock, DevServer, FakeKube, connection_manifest, make_operator

from durable_agents_api.resources import TemporalConnection
from durable_agents_operator.connection_params import params_from_connection
from durable_agents_operator.errors import DependencyNotReady
from durable_agents_operator.handlers import temporalconnection
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.temporal_clients import TemporalPool

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]


def key(name: str) -> ObjectKey:
    return ObjectKey(API, "TemporalConnection", "ns", name)


def reachable(kube: FakeKube, name: str) -> tuple[str, str, str]:
    (condition,) = kube.objects[key(name)]["status"]["conditions"]
    return condition["status"], condition["reason"], condition["message"]


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns"},
        "data": encoded,
    }


async def test_a_connection_to_a_running_temporal_is_reachable(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    ops = make_operator(kube, clock=clock, temporal=TemporalPool(timeout=5))
    body = kube.put(connection_manifest("dev", dev_server.address))
    await temporalconnection.check(ops, body)
    assert reachable(kube, "dev") == ("True", "Connected", "the Temporal namespace answered")
    assert kube.objects[key("dev")]["status"]["lastCheckTime"] == "2026-11-26T12:00:00Z"
    assert kube.events == []  # reachable from the start is not news


async def test_an_unknown_namespace_is_reported_as_unreachable_with_the_reason(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    ops = make_operator(kube, clock=clock, temporal=TemporalPool(timeout=5))
    manifest = connection_manifest("typo", dev_server.address)
    manifest["spec"]["namespace"] = "no-such-namespace"
    await temporalconnection.check(ops, kube.put(manifest))
    status, reason, message = reachable(kube, "typo")
    assert (status, reason) == ("False", "TemporalUnreachable")
    assert "no-such-namespace" in message
    assert kube.events[0]["type"] == "Warning"


async def test_a_closed_port_is_unreachable_within_the_timeout(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock, temporal=TemporalPool(timeout=2), temporal_timeout=2)
    await temporalconnection.check(ops, kube.put(connection_manifest("closed", "127.0.0.1:1")))
    status, reason, message = reachable(kube, "closed")
    assert (status, reason) == ("False", "TemporalUnreachable")
    assert "could not connect to Temporal at 127.0.0.1:1" in message


async def test_a_missing_secret_is_named_and_no_connection_is_attempted(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)  # its Temporal pool fails the test if used to connect
    manifest = connection_manifest("cloud", "x.tmprl.cloud:7233")
    manifest["spec"].update(tls={}, apiKeySecretRef={"name": "temporal-cloud", "key": "api-key"})
    await temporalconnection.check(ops, kube.put(manifest))
    status, reason, message = reachable(kube, "cloud")
    assert (status, reason) == ("False", "SecretNotFound")
    assert "key 'api-key' of Secret 'temporal-cloud'" in message


async def test_an_unchanged_check_is_written_once_a_minute(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    ops = make_operator(kube, clock=clock, temporal=TemporalPool(timeout=5))
    kube.put(connection_manifest("dev", dev_server.address))
    writes = []
    for _ in range(7):
        kube.calls.clear()
        await temporalconnection.check(ops, kube.body(key("dev")))
        writes.append(kube.count("patch_status"))
        clock.advance(10)
    assert writes == [1, 0, 0, 0, 0, 0, 1]


def test_secrets_become_tls_material_and_an_api_key_never_shown() -> None:
    connection = TemporalConnection.model_validate(
        {
            "metadata": {"name": "mtls", "namespace": "ns"},
            "spec": {
                "address": "t:7233",
                "tls": {
                    "serverName": "t.example",
                    "caSecretRef": {"name": "ca", "key": "ca.pem"},
                    "clientCertSecretRef": {"name": "client"},
                },
            },
        }
    )
    params = params_from_connection(
        connection,
        {("ca", "ca.pem"): b"CA", ("client", "tls.crt"): b"CERT", ("client", "tls.key"): b"KEY"},
    )
    tls = params.tls_config()
    assert not isinstance(tls, bool)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key, tls.domain) == (
        b"CA",
        b"CERT",
        b"KEY",
        "t.example",
    )
    with pytest.raises(DependencyNotReady, match=r"key 'tls\.key' of Secret 'client'"):
        params_from_connection(connection, {("ca", "ca.pem"): b"CA", ("client", "tls.crt"): b"CERT"})

    cloud = TemporalConnection.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {"address": "c:7233", "apiKeySecretRef": {"name": "k", "key": "key"}},
        }
    )
    with_key = params_from_connection(cloud, {("k", "key"): b"sk-live-123\n"})
    assert with_key.api_key == "sk-live-123"
    assert "sk-live-123" not in repr(with_key) and "sk-live-123" not in str(with_key)
    rotated = params_from_connection(cloud, {("k", "key"): b"sk-live-456"})
    assert rotated.key != with_key.key  # a rotated key gets a new client


async def test_the_operator_reads_a_connections_secrets_through_the_api(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    kube.put(secret("temporal-cloud", {"api-key": "sk-1"}))
    manifest = connection_manifest("cloud", "c:7233")
    manifest["spec"]["apiKeySecretRef"] = {"name": "temporal-cloud", "key": "api-key"}
    connection = TemporalConnection.model_validate(kube.put(manifest))
    params = await ops.connection_params(connection)
    assert params.api_key == "sk-1"
    assert kube.calls == [("get", "Secret ns/temporal-cloud")]
