"""The operator's shared state, built once in the entrypoint and handed to handlers through kopf's memo."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from durable_agents_api.contract import PendingCall
from durable_agents_api.resources import API_VERSION, DurableAgent, TemporalConnection
from durable_agents_operator.approval_status import Waits
from durable_agents_operator.connection_params import ConnectionParams, params_from_connection, secret_keys_of
from durable_agents_operator.deployment_cache import Getter
from durable_agents_operator.errors import DependencyNotReady, InvalidSpec
from durable_agents_operator.event_budget import EventBudget
from durable_agents_operator.health_batching import HealthBatcher
from durable_agents_operator.kube import Kube
from durable_agents_operator.object_identity import ObjectKey
from durable_agents_operator.rollback_request import RollbackHold
from durable_agents_operator.settings import OperatorSettings
from durable_agents_operator.temporal_clients import TemporalPool
from durable_agents_operator.terminating_namespaces import TerminatingNamespaces
from durable_agents_runtime.timestamps import utcnow

__all__ = ["Operator", "connection_key"]


def connection_key(namespace: str, name: str) -> ObjectKey:
    """The key of a TemporalConnection."""
    return ObjectKey(API_VERSION, "TemporalConnection", namespace, name)


@dataclass
class _Cached:
    connection: TemporalConnection
    params: ConnectionParams
    at: float


@dataclass
class Operator:
    """Settings, API clients and caches shared by every handler."""

    settings: OperatorSettings
    kube: Kube
    temporal: TemporalPool
    health: HealthBatcher
    default_params: ConnectionParams
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    runs: dict[str, ConnectionParams] = field(default_factory=dict)
    """AgentRun uid → the connection its workflow was started on."""
    terminating: TerminatingNamespaces = field(default_factory=TerminatingNamespaces)
    """Namespaces being deleted: handlers leave their objects alone."""
    waits: Waits = field(default_factory=Waits.empty)
    """Which AgentRuns wait for a decision, by agent (the DurableAgent's `awaitingApproval`)."""
    pending_seen: dict[str, tuple[int, list[PendingCall]]] = field(default_factory=dict)
    """AgentRun uid → (workflow history length, its pending calls then): the pending calls are asked
    again only when the history grew, since only a new event can change them."""
    events: EventBudget = field(default_factory=EventBudget)
    """How many Events may still be recorded (`event_budget`): by every `emit`, and kopf's own."""
    run_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    """AgentRun uid → the lock around rewriting its `status.decisions` (ToolApprovals of one run)."""
    rollout_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    """(namespace, agent) → the lock around one rollout step, so the health timer, a spec change and a
    rollback annotation never move one agent's versions at the same time."""
    rollback_holds: dict[tuple[str, str], RollbackHold | None] = field(default_factory=dict)
    """(namespace, agent) → the rollback hold the last rollout step decided (newer than the status a
    concurrent handler was given)."""
    deployments: Getter | None = None
    """The worker Deployments as a watch keeps them (`DeploymentCache`, while kopf runs); None reads each
    from the API."""
    _connections: dict[tuple[str, str], _Cached] = field(default_factory=dict)

    async def deployment(self, key: ObjectKey) -> dict[str, Any] | None:
        """The Deployment `key` (from the watch when it is in sync), None if there is none."""
        return await (self.deployments or self.kube).get(key)

    def rollout_lock(self, agent: tuple[str, str]) -> asyncio.Lock:
        """The lock serialising the rollout steps of the agent (namespace, name)."""
        return self.rollout_locks.setdefault(agent, asyncio.Lock())

    def run_lock(self, uid: str) -> asyncio.Lock:
        """The lock serialising the status writes of ToolApprovals of the AgentRun `uid`."""
        return self.run_locks.setdefault(uid, asyncio.Lock())

    def forget_run(self, uid: str, agent: tuple[str, str]) -> None:
        """Drop what the operator remembers about a finished or deleted AgentRun."""
        self.runs.pop(uid, None)
        self.pending_seen.pop(uid, None)
        self.run_locks.pop(uid, None)
        self.waits.mark(agent, uid, waiting=False)

    async def fetch_connection(self, namespace: str, name: str) -> TemporalConnection:
        """The TemporalConnection `name` (read now); `DependencyNotReady` if it does not exist."""
        body = await self.kube.get(connection_key(namespace, name))
        if body is None:
            raise DependencyNotReady(
                f"TemporalConnection {name!r} does not exist in namespace {namespace}: create it, or remove "
                "spec.temporal.connectionRef to use the operator's default connection",
                reason="TemporalConnectionNotFound",
            )
        try:
            return TemporalConnection.model_validate(body)
        except ValueError as exc:
            raise InvalidSpec(f"TemporalConnection {name!r} is invalid: {exc}") from None

    async def connection_params(self, connection: TemporalConnection) -> ConnectionParams:
        """Read the Secrets `connection` refers to and cache the resulting parameters."""
        namespace = connection.metadata.namespace or "default"
        keys = secret_keys_of(connection)
        names = sorted({name for name, _ in keys})
        bodies = await asyncio.gather(
            *(self.kube.get(ObjectKey("v1", "Secret", namespace, n)) for n in names)
        )
        secrets: dict[tuple[str, str], bytes] = {}
        for name, body in zip(names, bodies, strict=True):
            for key, value in ((body or {}).get("data") or {}).items():
                secrets[(name, key)] = base64.b64decode(value)
        params = params_from_connection(connection, secrets)
        self._connections[(namespace, connection.metadata.name or "")] = _Cached(
            connection, params, self.monotonic()
        )
        return params

    async def resolve(self, agent: DurableAgent) -> tuple[TemporalConnection | None, ConnectionParams]:
        """`agent`'s TemporalConnection (None: the default) and how the operator reaches it.

        TemporalConnections and their Secrets are cached for one health interval, so health timers of
        many agents cost no extra API calls.
        """
        ref = agent.spec.temporal.connection_ref
        if ref is None:
            return None, self.default_params
        namespace = agent.metadata.namespace or "default"
        cached = self._connections.get((namespace, ref.name))
        if cached is not None and self.monotonic() - cached.at < self.settings.health_interval:
            return cached.connection, cached.params
        connection = await self.fetch_connection(namespace, ref.name)
        return connection, await self.connection_params(connection)

    def forget_connection(self, namespace: str, name: str) -> None:
        """Drop the cached parameters (and client) of a TemporalConnection that changed or went away."""
        cached = self._connections.pop((namespace, name), None)
        if cached is not None:
            self.temporal.forget(cached.params)
