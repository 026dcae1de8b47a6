"""Temporal clients of the operator: one per distinct connection, connected lazily and reused.

Clients connect with pydantic-ai's `PydanticAIPlugin`, so workflow inputs and results (pydantic models
such as `RunInput`/`RunOutput`) are encoded exactly as the worker's converter expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import TemporalUnavailable
from durable_agents_operator.settings import OperatorSettings
from durable_agents_runtime.connect_errors import explain_connect_error

__all__ = ["Connector", "TemporalPool", "default_params"]


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


Connector = Callable[[ConnectionParams], Awaitable[Client]]


async def _connect(params: ConnectionParams) -> Client:
    # The workflow contract's payloads are plain pydantic models (durable_agents_api.contract): Temporal's
    # pydantic converter writes what the workers' PydanticAIPlugin reads, without importing pydantic-ai
    # into the operator (24 MB of its memory, and a second of CPU at start).
    return await Client.connect(
        params.address,
        namespace=params.namespace,
        api_key=params.api_key,
        tls=params.tls_config(),
        data_converter=pydantic_data_converter,
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
                explain_connect_error(
                    str(exc),
                    target=params.address,
                    namespace=params.namespace,
                    tls=params.tls or params.api_key is not None,
                    ca=params.ca is not None,
                    client_cert=params.client_cert is not None,
                    api_key=params.api_key is not None,
                    settings=params.settings,
                )
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
