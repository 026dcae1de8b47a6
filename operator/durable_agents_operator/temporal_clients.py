"""Temporal clients of the operator: one per distinct connection, connected lazily and reused.

Clients connect with pydantic-ai's `PydanticAIPlugin`, so workflow inputs and results (pydantic models
such as `RunInput`/`RunOutput`) are encoded exactly as the worker's converter expects.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.service import TLSConfig

from durable_agents_operator.api import TemporalConnection
from durable_agents_operator.errors import DependencyNotReady, TemporalUnavailable
from durable_agents_operator.settings import OperatorSettings

__all__ = [
    "ConnectionParams",
    "Connector",
    "SecretKey",
    "TemporalPool",
    "default_params",
    "params_from_connection",
    "secret_keys_of",
]

SecretKey = tuple[str, str]
"""(Secret name, key) in the connection's namespace."""
_TLS_PRIVATE_KEY = "tls.key"


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


def default_params(settings: OperatorSettings) -> ConnectionParams:
    """The operator's default connection; reads the TLS files named in the settings (once, at start-up)."""

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return ConnectionParams(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=settings.temporal_uses_tls,
        server_name=settings.temporal_tls_server_name,
        ca=read(settings.temporal_tls_ca_file),
        client_cert=read(settings.temporal_tls_cert_file),
        client_key=read(settings.temporal_tls_key_file),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
    )


def secret_keys_of(connection: TemporalConnection) -> list[SecretKey]:
    """The Secret keys a TemporalConnection refers to (what must be read before connecting)."""
    spec = connection.spec
    keys: list[SecretKey] = []
    if spec.tls is not None and spec.tls.ca_secret_ref is not None:
        keys.append((spec.tls.ca_secret_ref.name, spec.tls.ca_secret_ref.key))
    if spec.tls is not None and spec.tls.client_cert_secret_ref is not None:
        ref = spec.tls.client_cert_secret_ref
        keys += [(ref.name, ref.key), (ref.name, _TLS_PRIVATE_KEY)]
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
            cert, private_key = value(ref.name, ref.key), value(ref.name, _TLS_PRIVATE_KEY)
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
    )


Connector = Callable[[ConnectionParams], Awaitable[Client]]


async def _connect(params: ConnectionParams) -> Client:
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    return await Client.connect(
        params.address,
        namespace=params.namespace,
        api_key=params.api_key,
        tls=params.tls_config(),
        plugins=[PydanticAIPlugin()],
        identity="durable-agents-operator",
    )


class TemporalPool:
    """Clients by connection. Concurrent callers share one connect; a failed connect is retried next call.

    A connected client survives Temporal restarts (the SDK reconnects underneath), so it is kept.
    """

    def __init__(self, *, timeout: float, connect: Connector = _connect) -> None:
        self._timeout = timeout
        self._connect = connect
        self._clients: dict[str, asyncio.Task[Client]] = {}

    async def client(self, params: ConnectionParams) -> Client:
        """A connected client for `params`; raises `TemporalUnavailable` if it cannot connect in time."""
        task = self._clients.get(params.key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._connect(params))
            # A connect that outlives its caller's timeout may fail unobserved; retrieve its error.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._clients[params.key] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            raise TemporalUnavailable(
                f"could not connect to Temporal at {params} within {self._timeout:g}s: check the address and "
                "that the frontend is reachable from the operator"
            ) from None
        except Exception as exc:
            self._clients.pop(params.key, None)
            raise TemporalUnavailable(
                f"could not connect to Temporal at {params}: {exc}; check the address, TLS settings and "
                "credentials"
            ) from None

    def forget(self, params: ConnectionParams) -> None:
        """Drop the client of `params` (e.g. after its TemporalConnection changed)."""
        task = self._clients.pop(params.key, None)
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        """Cancel pending connects and drop every client."""
        for task in self._clients.values():
            task.cancel()
        self._clients.clear()
