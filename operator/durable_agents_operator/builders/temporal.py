"""Which Temporal an agent's workers connect to, and what their pods need for it (env, Secret volumes).

Pure: the TemporalConnection (if the agent names one) is fetched by the caller and passed in, and the
operator's default connection arrives as the `ConnectionParams` the operator itself connects with.

Worker pods read credentials from Secrets of their own namespace only. A TemporalConnection's Secrets are
referenced where they are; when the operator's default connection needs a CA, a client certificate or an
API key, the operator puts a copy in a Secret `<agent>-temporal` owned by the agent (deleted with it), so
agents without a `connectionRef` work wherever the default connection does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from durable_agents_api.config import TemporalSpec, TemporalTLSSpec
from durable_agents_api.contract import ENV_TEMPORAL_API_KEY
from durable_agents_api.resources import DurableAgent, TemporalConnection
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.naming import (
    TLS_SECRET_CERTIFICATE,
    TLS_SECRET_PRIVATE_KEY,
    temporal_secret_name,
)

from .metadata import object_meta

__all__ = [
    "TLS_CA_FILE",
    "TLS_CLIENT_CERT_FILE",
    "TLS_CLIENT_KEY_FILE",
    "TLS_DIR",
    "WorkerTemporal",
    "build_temporal_secret",
    "resolve_temporal",
]

TLS_DIR = "/var/run/durable-agents/temporal-tls"
TLS_CA_FILE = f"{TLS_DIR}/ca/ca.crt"
TLS_CLIENT_CERT_FILE = f"{TLS_DIR}/client/tls.crt"
TLS_CLIENT_KEY_FILE = f"{TLS_DIR}/client/tls.key"
# Readable by the pod's fsGroup only.
_SECRET_MODE = 0o440
# Keys of the `<agent>-temporal` Secret (a copy of the default connection's material).
_CA_KEY = "ca.crt"
_API_KEY_KEY = "api-key"


@dataclass(frozen=True)
class WorkerTemporal:
    """The resolved connection: the runtime config's `temporal` section and what the pod must carry."""

    spec: TemporalSpec
    env: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()
    secret_data: dict[str, str] | None = field(default=None, repr=False)
    """Data (base64) of the `<agent>-temporal` Secret the pods need, or None when they need none."""


def resolve_temporal(
    agent: DurableAgent, *, connection: TemporalConnection | None, default: ConnectionParams
) -> WorkerTemporal:
    """Resolve the Temporal connection of `agent`'s workers.

    `connection` must be the TemporalConnection named by `spec.temporal.connectionRef` (or None when the
    agent names none). Credentials reach the pod only as Secret references, never as values.
    """
    ref = agent.spec.temporal.connection_ref
    if ref is None:
        return _from_default(agent, default)
    if connection is None or connection.metadata.name != ref.name:
        raise ValueError(f"resolve_temporal needs the TemporalConnection {ref.name!r}")
    return _from_connection(agent, connection)


def _from_default(agent: DurableAgent, default: ConnectionParams) -> WorkerTemporal:
    secret = temporal_secret_name(agent.metadata.name or "")
    data: dict[str, bytes] = {}
    if default.ca is not None:
        data[_CA_KEY] = default.ca
    if default.client_cert is not None and default.client_key is not None:
        data[TLS_SECRET_CERTIFICATE] = default.client_cert
        data[TLS_SECRET_PRIVATE_KEY] = default.client_key
    if default.api_key is not None:
        data[_API_KEY_KEY] = default.api_key.encode()
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    ca_file = cert_file = key_file = None
    if _CA_KEY in data:
        ca_file = TLS_CA_FILE
        volumes.append(_secret_volume("temporal-ca", secret, {_CA_KEY: "ca.crt"}))
        mounts.append({"name": "temporal-ca", "mountPath": f"{TLS_DIR}/ca", "readOnly": True})
    if TLS_SECRET_CERTIFICATE in data:
        cert_file, key_file = TLS_CLIENT_CERT_FILE, TLS_CLIENT_KEY_FILE
        items = {TLS_SECRET_CERTIFICATE: "tls.crt", TLS_SECRET_PRIVATE_KEY: "tls.key"}
        volumes.append(_secret_volume("temporal-client-cert", secret, items))
        mounts.append({"name": "temporal-client-cert", "mountPath": f"{TLS_DIR}/client", "readOnly": True})
    if _API_KEY_KEY in data:
        env.append(_secret_env(secret, _API_KEY_KEY))
    spec = TemporalSpec(
        address=default.address,
        namespace=default.namespace,
        task_queue=agent.task_queue,
        tls=_tls(server_name=default.server_name, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        if default.tls
        else None,
        api_key_env=ENV_TEMPORAL_API_KEY if _API_KEY_KEY in data else None,
    )
    return WorkerTemporal(
        spec=spec,
        env=tuple(env),
        volumes=tuple(volumes),
        volume_mounts=tuple(mounts),
        secret_data={k: base64.b64encode(v).decode() for k, v in data.items()} or None,
    )


def build_temporal_secret(
    *, agent: str, namespace: str, temporal: WorkerTemporal, owner: dict[str, Any]
) -> dict[str, Any] | None:
    """The Secret `<agent>-temporal` with the default connection's material, or None when none is needed."""
    if temporal.secret_data is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": object_meta(
            name=temporal_secret_name(agent), namespace=namespace, agent=agent, owner=owner
        ),
        "data": dict(temporal.secret_data),
    }


def _secret_env(secret: str, key: str) -> dict[str, Any]:
    return {"name": ENV_TEMPORAL_API_KEY, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _from_connection(agent: DurableAgent, connection: TemporalConnection) -> WorkerTemporal:
    conn = connection.spec
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    tls_spec: TemporalTLSSpec | None = None
    if conn.tls is not None:
        ca_file = cert_file = key_file = None
        if conn.tls.ca_secret_ref is not None:
            ca_file = TLS_CA_FILE
            ref = conn.tls.ca_secret_ref
            volumes.append(_secret_volume("temporal-ca", ref.name, {ref.key: "ca.crt"}))
            mounts.append({"name": "temporal-ca", "mountPath": f"{TLS_DIR}/ca", "readOnly": True})
        if conn.tls.client_cert_secret_ref is not None:
            ref = conn.tls.client_cert_secret_ref
            cert_file, key_file = TLS_CLIENT_CERT_FILE, TLS_CLIENT_KEY_FILE
            items = {TLS_SECRET_CERTIFICATE: "tls.crt", TLS_SECRET_PRIVATE_KEY: "tls.key"}
            volumes.append(_secret_volume("temporal-client-cert", ref.name, items))
            mounts.append(
                {"name": "temporal-client-cert", "mountPath": f"{TLS_DIR}/client", "readOnly": True}
            )
        tls_spec = _tls(
            server_name=conn.tls.server_name, ca_file=ca_file, cert_file=cert_file, key_file=key_file
        )
    api_key_env = None
    if conn.api_key_secret_ref is not None:
        api_key_env = ENV_TEMPORAL_API_KEY
        ref = conn.api_key_secret_ref
        env.append(_secret_env(ref.name, ref.key))
    spec = TemporalSpec(
        address=conn.address,
        namespace=conn.namespace,
        task_queue=agent.task_queue,
        tls=tls_spec,
        api_key_env=api_key_env,
    )
    return WorkerTemporal(spec=spec, env=tuple(env), volumes=tuple(volumes), volume_mounts=tuple(mounts))


def _tls(
    *,
    server_name: str | None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> TemporalTLSSpec:
    return TemporalTLSSpec(
        server_name=server_name, ca_file=ca_file, client_cert_file=cert_file, client_key_file=key_file
    )


def _secret_volume(volume: str, secret: str, items: dict[str, str]) -> dict[str, Any]:
    return {
        "name": volume,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": path} for key, path in items.items()],
            "defaultMode": _SECRET_MODE,
        },
    }
