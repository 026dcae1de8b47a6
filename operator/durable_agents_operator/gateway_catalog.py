"""The gateway in a cluster: its agents are the DurableAgents the apiserver lists, and it reaches Temporal
over the operator's default connection (the same `DURABLE_AGENTS_TEMPORAL_*` settings, so the chart gives
both Deployments one block of environment).

`KubeCatalog` lists DurableAgents cluster-wide, or in the watched namespaces, at most once per
`cache_seconds`; concurrent requests share one list. Each agent's health is the one the operator wrote
into its status (workers, running and failed runs, Ready), so listing agents reads no Temporal; an agent
whose status holds no Temporal reading yet is read by the gateway. Agents with a
`spec.temporal.connectionRef` live on another Temporal connection than the gateway's and are left out
(logged once per agent). An apiserver failure serves the last list it got, for up to `stale_seconds`; past
that, or before any list, requests get 503 naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from durable_agents_api.config import TemporalSpec, TemporalTLSSpec
from durable_agents_api.resources import API_VERSION, DurableAgent
from durable_agents_operator.errors import KubeApiError, KubeForbidden
from durable_agents_operator.kube import Kube
from durable_agents_operator.settings import OperatorSettings
from durable_agents_runtime.gateway import AgentEntry, KnownHealth
from durable_agents_runtime.gateway.app import Problem

__all__ = ["API_KEY_ENV", "KubeCatalog", "default_temporal_spec"]

API_KEY_ENV = "DURABLE_AGENTS_TEMPORAL_API_KEY"
"""Where the operator's (and the gateway's) default connection finds its API key."""

_log = logging.getLogger("durable_agents.gateway")


def default_temporal_spec(settings: OperatorSettings) -> TemporalSpec:
    """The operator's default connection as a `TemporalSpec` (TLS files by path, the API key by name)."""
    tls = None
    if settings.temporal_uses_tls:
        tls = TemporalTLSSpec(
            server_name=settings.temporal_tls_server_name,
            ca_file=settings.temporal_tls_ca_file,
            client_cert_file=settings.temporal_tls_cert_file,
            client_key_file=settings.temporal_tls_key_file,
        )
    return TemporalSpec(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue="unused",
        tls=tls,
        api_key_env=API_KEY_ENV if settings.temporal_api_key else None,
    )


class KubeCatalog:
    """The gateway's `Catalog` over the apiserver's DurableAgents (`kube` is a `KubeClient`)."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str] = (),
        *,
        cache_seconds: float = 5.0,
        stale_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._namespaces: list[str | None] = list(namespaces) or [None]
        self._ttl = cache_seconds
        self._stale = stale_seconds
        self._clock = clock
        self._entries: list[AgentEntry] | None = None
        self._listed_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._skipped: set[tuple[str, str]] = set()

    async def agents(self) -> Sequence[AgentEntry]:
        if self._entries is not None and self._clock() - self._listed_at < self._ttl:
            return self._entries
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._list())
        try:
            await asyncio.shield(self._refresh)
        except KubeApiError as exc:
            if self._entries is not None and self._clock() - self._listed_at < self._stale:
                _log.warning("listing DurableAgents failed (%s): serving the list of %s", exc, self._age())
                return self._entries
            raise Problem(503, "unavailable", _unavailable(exc)) from None
        assert self._entries is not None
        return self._entries

    async def _list(self) -> None:
        found: list[dict[str, Any]] = []
        for namespace in self._namespaces:
            found += await self._kube.list(API_VERSION, "DurableAgent", namespace)
        entries = [entry for obj in found if (entry := self._entry(obj)) is not None]
        self._entries = sorted(entries, key=lambda e: (e.namespace, e.name))
        self._listed_at = self._clock()

    def _entry(self, obj: dict[str, Any]) -> AgentEntry | None:
        metadata = obj.get("metadata") or {}
        where = (metadata.get("namespace", ""), metadata.get("name", ""))
        try:
            # The status is the operator's to write: only its Ready condition is shown (_ready_of).
            agent = DurableAgent.model_validate({k: v for k, v in obj.items() if k != "status"})
        except ValidationError as exc:
            self._skip(where, f"its spec is invalid ({exc.error_count()} errors; its status says which)")
            return None
        if agent.spec.temporal.connection_ref is not None:
            ref = agent.spec.temporal.connection_ref.name
            self._skip(where, f"it runs on TemporalConnection {ref}, the gateway on the default connection")
            return None
        status = obj.get("status") or {}
        conditions = _conditions(obj)
        return AgentEntry(
            where[1],
            where[0],
            agent.task_queue,
            agent.spec.agent.name,
            operator_status=_ready_of(conditions),
            health=_health_of(status, conditions),
        )

    def _skip(self, where: tuple[str, str], why: str) -> None:
        if where not in self._skipped:
            self._skipped.add(where)
            _log.warning("the gateway does not serve DurableAgent %s/%s: %s", *where, why)

    def _age(self) -> str:
        return f"{self._clock() - self._listed_at:.0f}s ago"


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A DurableAgent's status conditions by type."""
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def _ready_of(conditions: dict[str, dict[str, Any]]) -> str | None:
    """The Ready condition of a DurableAgent's status, in a few words."""
    if (condition := conditions.get("Ready")) is None:
        return None
    if condition.get("status") == "True":
        return "Ready"
    reason, message = condition.get("reason") or "NotReady", condition.get("message") or ""
    return f"{reason}: {message}" if message else reason


def _health_of(status: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> KnownHealth | None:
    """The health the operator wrote into the status (every health interval), None before its first
    Temporal read (the gateway then reads Temporal itself)."""
    ready, reachable = conditions.get("Ready"), conditions.get("TemporalReachable")
    if ready is None or reachable is None or reachable.get("status") == "Unknown" or "workers" not in status:
        return None
    runs = status.get("runs") or {}
    healthy = ready.get("status") == "True"
    return KnownHealth(
        ready=healthy,
        workers=int(status.get("workers") or 0),
        running=int(runs.get("running") or 0),
        failed=int(runs.get("failed") or 0),
        message=None if healthy else (ready.get("message") or ready.get("reason") or "not ready"),
    )


def _unavailable(exc: KubeApiError) -> str:
    if isinstance(exc, KubeForbidden):
        return (
            "the gateway may not list DurableAgents: its service account needs list on "
            "durableagents.durable-agents.dev in the namespaces it serves (the chart's gateway roles "
            "grant it)"
        )
    return "the gateway cannot list the agents from the Kubernetes API right now: try again shortly"
