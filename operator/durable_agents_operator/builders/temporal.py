"""Which Temporal an agent's workers connect to, and what their pods need for it (env, Secret volumes).

Pure: the TemporalConnection (if the agent names one) is fetched by the caller and passed in, and the
operator's default connection arrives as the `ConnectionParams` the operator itself connects with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from durable_agents_api.config import TemporalSpec, TemporalTLSSpec
from durable_agents_api.contract import ENV_TEMPORAL_API_KEY
from durable_agents_api.resources import DurableAgent, TemporalConnection
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import InvalidSpec
from durable_agents_operator.naming import TLS_SECRET_CERTIFICATE, TLS_SECRET_PRIVATE_KEY

__all__ = [
    "TLS_CA_FILE",
    "TLS_CLIENT_CERT_FILE",
    "TLS_CLIENT_KEY_FILE",
    "TLS_DIR",
    "WorkerTemporal",
    "resolve_temporal",
]

TLS_DIR = "/var/run/durable-agents/temporal-tls"
TLS_CA_FILE = f"{TLS_DIR}/ca/ca.crt"
TLS_CLIENT_CERT_FILE = f"{TLS_DIR}/client/tls.crt"
TLS_CLIENT_KEY_FILE = f"{TLS_DIR}/client/tls.key"
# Readable by the pod's fsGroup only.
_SECRET_MODE = 0o440


@dataclass(frozen=True)
class WorkerTemporal:
    """The resolved connection: the runtime config's `temporal` section and what the pod must carry."""

    spec: TemporalSpec
    env: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()


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
    # Worker pods get Secret references, never values: material only the operator holds cannot reach them.
    if default.api_key is not None or default.client_cert is not None or default.ca is not None:
        raise InvalidSpec(
            "the operator's default Temporal connection uses credentials or a CA file that worker pods "
            "cannot read: create a TemporalConnection in this namespace (with apiKeySecretRef or "
            "tls.caSecretRef/clientCertSecretRef) and set spec.temporal.connectionRef to its name"
        )
    spec = TemporalSpec(
        address=default.address,
        namespace=default.namespace,
        task_queue=agent.task_queue,
        tls=_tls(server_name=default.server_name) if default.tls else None,
        api_key_env=None,
    )
    return WorkerTemporal(spec=spec)


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
        env.append(
            {"name": ENV_TEMPORAL_API_KEY, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
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
