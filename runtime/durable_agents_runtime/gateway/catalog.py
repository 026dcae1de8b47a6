"""Which agents a gateway serves: a `Catalog` lists them. Locally they come from the manifests
(`StaticCatalog`); in a cluster the operator layer can list the DurableAgents instead."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["AgentEntry", "Catalog", "KnownHealth", "StaticCatalog"]


@dataclass(frozen=True)
class KnownHealth:
    """An agent's health as someone already read it (in a cluster: the status the operator writes every
    health interval), so listing agents does not read Temporal again for each."""

    ready: bool
    workers: int = 0
    running: int = 0
    failed: int = 0
    message: str | None = None


@dataclass(frozen=True)
class AgentEntry:
    """One agent: its resource name and namespace (for authorisation), its task queue, and the name its
    sessions know it by (`spec.agent.name`)."""

    name: str
    namespace: str
    task_queue: str
    agent_name: str
    operator_status: str | None = None
    """In a cluster: the Ready condition the operator wrote (`Ready`, or `Reason: message`)."""
    health: KnownHealth | None = None
    """Its health when the catalog knows it; None: the gateway reads it from Temporal."""

    @classmethod
    def of_manifest(cls, loaded: Any) -> AgentEntry:
        """The entry of a `durable_agents_api.manifest.LoadedManifest`."""
        metadata = loaded.agent.metadata
        name = metadata.name or loaded.name
        return cls(name, metadata.namespace or "default", loaded.task_queue, loaded.name)


class Catalog(Protocol):
    async def agents(self) -> Sequence[AgentEntry]:
        """Every agent served, in display order."""
        ...


class StaticCatalog:
    """A fixed list of agents."""

    def __init__(self, entries: Iterable[AgentEntry]) -> None:
        self._entries = list(entries)

    async def agents(self) -> Sequence[AgentEntry]:
        return self._entries
