"""How the operator reaches one Temporal namespace (`ConnectionParams`), and how a TemporalConnection and
the Secret values it refers to become one. Pure: the caller reads the Secrets.

The operator's default connection is a `ConnectionParams` too (`temporal_clients.default_params`, read
once at start-up); the builders decide from it what worker pods can use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from temporalio.service import TLSConfig

from durable_agents_api.resources import TemporalConnection
from durable_agents_operator.errors import DependencyNotReady
from durable_agents_operator.naming import TLS_SECRET_CERTIFICATE, TLS_SECRET_PRIVATE_KEY
from durable_agents_runtime.connect_errors import SettingNames

__all__ = [
    "DEFAULT_CONNECTION_SETTINGS",
    "ConnectionParams",
    "SecretKey",
    "connection_settings",
    "params_from_connection",
    "secret_keys_of",
]

SecretKey = tuple[str, str]
"""(Secret name, key) in the connection's namespace."""


DEFAULT_CONNECTION_SETTINGS = SettingNames(
    address="the operator's DURABLE_AGENTS_TEMPORAL_ADDRESS (chart: temporal.address)",
    tls="the operator's DURABLE_AGENTS_TEMPORAL_TLS (chart: temporal.tls.enabled)",
    ca="the operator's DURABLE_AGENTS_TEMPORAL_TLS_CA_FILE (chart: temporal.tls.caFile)",
    server_name="the operator's DURABLE_AGENTS_TEMPORAL_TLS_SERVER_NAME (chart: temporal.tls.serverName)",
    client_cert="the operator's DURABLE_AGENTS_TEMPORAL_TLS_CERT_FILE and _KEY_FILE (chart: "
    "temporal.tls.clientCertFile and clientKeyFile)",
    api_key="the operator's DURABLE_AGENTS_TEMPORAL_API_KEY (chart: temporal.apiKeySecret)",
)
"""How messages name the settings of the operator's default connection."""


def connection_settings(name: str) -> SettingNames:
    """How messages name the settings of TemporalConnection `name`."""
    where = f"of TemporalConnection {name}"
    return SettingNames(
        address=f"spec.address {where}",
        tls=f"spec.tls {where}",
        ca=f"spec.tls.caSecretRef {where}",
        server_name=f"spec.tls.serverName {where}",
        client_cert=f"spec.tls.clientCertSecretRef {where} (a kubernetes.io/tls Secret: tls.crt, tls.key)",
        api_key=f"spec.apiKeySecretRef {where}",
    )


@dataclass(frozen=True)
class ConnectionParams:
    """How the operator connects to one Temporal namespace. Secret material never appears in repr."""

    address: str
    namespace: str
    tls: bool = False
    server_name: str | None = None
    ca: bytes | None = field(default=None, repr=False)
    client_cert: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    settings: SettingNames = field(default=DEFAULT_CONNECTION_SETTINGS, repr=False, compare=False)
    """How failure messages name these settings (where they were configured)."""

    @property
    def key(self) -> str:
        """Identity of the connection; rotating a certificate or key yields a new one (and a new client)."""
        digest = hashlib.sha256()
        for part in (self.address, self.namespace, str(self.tls), self.server_name or ""):
            digest.update(part.encode() + b"\0")
        for secret in (self.ca, self.client_cert, self.client_key, (self.api_key or "").encode()):
            digest.update(hashlib.sha256(secret or b"").digest())
        return digest.hexdigest()

    def __str__(self) -> str:
        return f"{self.address} (namespace {self.namespace})"

    def tls_config(self) -> TLSConfig | bool:
        """What `Client.connect(tls=...)` takes."""
        if not self.tls:
            return False
        return TLSConfig(
            server_root_ca_cert=self.ca,
            domain=self.server_name,
            client_cert=self.client_cert,
            client_private_key=self.client_key,
        )


def secret_keys_of(connection: TemporalConnection) -> list[SecretKey]:
    """The Secret keys a TemporalConnection refers to (what must be read before connecting)."""
    spec = connection.spec
    keys: list[SecretKey] = []
    if spec.tls is not None and spec.tls.ca_secret_ref is not None:
        keys.append((spec.tls.ca_secret_ref.name, spec.tls.ca_secret_ref.key))
    if spec.tls is not None and spec.tls.client_cert_secret_ref is not None:
        ref = spec.tls.client_cert_secret_ref
        keys += [(ref.name, TLS_SECRET_CERTIFICATE), (ref.name, TLS_SECRET_PRIVATE_KEY)]
    if spec.api_key_secret_ref is not None:
        keys.append((spec.api_key_secret_ref.name, spec.api_key_secret_ref.key))
    return keys


def params_from_connection(
    connection: TemporalConnection, secrets: Mapping[SecretKey, bytes]
) -> ConnectionParams:
    """Connection parameters from a TemporalConnection and the Secret values it refers to (pure)."""
    spec = connection.spec
    where = f"TemporalConnection {connection.metadata.name}"

    def value(name: str, key: str) -> bytes:
        try:
            return secrets[(name, key)]
        except KeyError:
            raise DependencyNotReady(
                f"{where} refers to key {key!r} of Secret {name!r}, which does not exist: create it",
                reason="SecretNotFound",
            ) from None

    ca = cert = private_key = None
    if spec.tls is not None:
        if spec.tls.ca_secret_ref is not None:
            ca = value(spec.tls.ca_secret_ref.name, spec.tls.ca_secret_ref.key)
        if spec.tls.client_cert_secret_ref is not None:
            ref = spec.tls.client_cert_secret_ref
            cert = value(ref.name, TLS_SECRET_CERTIFICATE)
            private_key = value(ref.name, TLS_SECRET_PRIVATE_KEY)
    api_key = None
    if spec.api_key_secret_ref is not None:
        api_key = value(spec.api_key_secret_ref.name, spec.api_key_secret_ref.key).decode().strip()
    return ConnectionParams(
        address=spec.address,
        namespace=spec.namespace,
        tls=spec.tls is not None,
        server_name=spec.tls.server_name if spec.tls else None,
        ca=ca,
        client_cert=cert,
        client_key=private_key,
        api_key=api_key,
        settings=connection_settings(connection.metadata.name or ""),
    )
