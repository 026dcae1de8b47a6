"""How a worker's Temporal connection options are put together: the spec, then Temporal's environment
variables. An API key in the environment (how a TemporalConnection's `apiKeySecretRef` reaches workers:
TEMPORAL_API_KEY) must not drop the CA bundle and server name of the spec's TLS settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from durable_agents_api.config import TemporalSpec, TemporalTLSSpec
from durable_agents_runtime.connect import connect_options


def test_an_api_key_from_the_environment_keeps_the_specs_ca_and_server_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("TEMPORAL_API_KEY", "k3y")
    spec = TemporalSpec(
        address="temporal.example:7233",
        namespace="prod",
        task_queue="q",
        tls=TemporalTLSSpec(server_name="temporal.example", ca_file=str(ca)),
        api_key_env="TEMPORAL_API_KEY",
    )

    options = connect_options(spec)

    tls = options["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.domain) == (ca.read_bytes(), "temporal.example")
    assert options["api_key"] == "k3y"


def test_an_api_key_alone_turns_tls_on_with_the_systems_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", "k3y")
    spec = TemporalSpec(
        address="x.tmprl.cloud:7233", namespace="n", task_queue="q", api_key_env="TEMPORAL_API_KEY"
    )

    options = connect_options(spec)

    assert options["tls"] is True and options["api_key"] == "k3y"
