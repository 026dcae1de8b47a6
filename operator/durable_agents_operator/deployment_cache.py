"""The worker Deployments as a watch keeps them, so the health timer reads each agent's Deployment without
a GET per agent per interval (with 2,000 agents those GETs were most of the operator's apiserver calls).

One list, then one watch, per watched namespace (or one cluster-wide), filtered by the apiserver on the
operator's `managed-by` label. Only what the status is computed from is kept (name, generation and
`status`), so 2,000 Deployments cost a few MB. A scope's copy answers only while its watch is in sync:
before the first list, and from a watch error until the list after it, `get` reads the object from the
API as before, so the cache never answers from a watch that is broken. A watch the server ends is resumed
from the last resourceVersion (bookmarks keep it fresh), an expired one (410 Gone) lists again at once,
and other errors list again after a back-off of 1 s doubling to 30 s, each streak logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from durable_agents_operator.naming import LABEL_MANAGED_BY, MANAGED_BY
from durable_agents_operator.object_identity import ObjectKey, key_of

__all__ = ["DeploymentCache", "Getter", "Watcher"]

_log = logging.getLogger("durable_agents.operator.deployments")

API_VERSION, KIND = "apps/v1", "Deployment"
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


class Getter(Protocol):
    """Reads one object (`Kube.get`): what the handlers use for Deployments without a running cache."""

    async def get(self, key: ObjectKey) -> dict[str, Any] | None: ...


class Watcher(Getter, Protocol):
    async def list_at(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[dict[str, Any]]: ...


@dataclass
class CacheCounts:
    """What the cache did, for the scale benchmark and the tests."""

    hits: int = 0
    reads: int = 0
    lists: int = 0
    watches: int = 0


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {k: metadata[k] for k in ("name", "namespace", "generation") if k in metadata},
        "status": obj.get("status") or {},
    }


class DeploymentCache:
    """The operator's worker Deployments in `scopes` (namespaces; None: all), kept by `run()`."""

    def __init__(
        self,
        kube: Watcher,
        scopes: Sequence[str | None],
        *,
        backoff: tuple[float, float] = (1.0, 30.0),
        watch_seconds: int = 290,
    ) -> None:
        self._kube = kube
        self._scopes = tuple(scopes)
        self._backoff = backoff
        self._watch_seconds = watch_seconds
        self._objects: dict[str | None, dict[ObjectKey, dict[str, Any]]] = {}
        self._synced: set[str | None] = set()
        self._changed = asyncio.Condition()
        self.counts = CacheCounts()

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The Deployment `key` from the watch when its scope is in sync, else read from the API."""
        synced, scope = self._scope_of(key.namespace)
        if key.api_version != API_VERSION or key.kind != KIND or not synced:
            self.counts.reads += 1
            return await self._kube.get(key)
        self.counts.hits += 1
        return self._objects[scope].get(key)

    def synced(self, namespace: str | None = None) -> bool:
        """Whether the Deployments of `namespace` are answered from the watch."""
        return self._scope_of(namespace or "")[0]

    async def wait_synced(self) -> None:
        """Until every scope has been listed once (tests and the benchmark)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._synced >= set(self._scopes))

    async def run(self) -> None:
        """Follow every scope until cancelled."""
        await asyncio.gather(*(self._follow(scope) for scope in self._scopes))

    def _scope_of(self, namespace: str) -> tuple[bool, str | None]:
        """(whether a watch in sync holds `namespace`'s Deployments, the scope of that watch)."""
        if namespace in self._synced:
            return True, namespace
        return None in self._synced, None

    async def _follow(self, scope: str | None) -> None:
        first, longest = self._backoff
        delay = first
        failing = False
        while True:
            try:
                version = await self._list(scope)
                if failing:
                    _log.info("watching worker Deployments %s again", _scope(scope))
                failing, delay = False, first
                while True:  # the server ends each watch after about watch_seconds: resume it
                    version = await self._watch(scope, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is answered by reading from the API until relisted
                await self._unsync(scope)
                if getattr(exc, "status", None) == 410:
                    continue  # the resourceVersion expired: list again now
                if not failing:
                    _log.warning(
                        "watching worker Deployments %s failed (%s): reading them from the API until it "
                        "recovers (retrying in %gs, up to %gs apart)",
                        _scope(scope),
                        exc,
                        delay,
                        longest,
                    )
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)

    async def _list(self, scope: str | None) -> str:
        items, version = await self._kube.list_at(API_VERSION, KIND, scope, label_selector=SELECTOR)
        self.counts.lists += 1
        self._objects[scope] = {key_of(slim): slim for slim in map(_slim, items)}
        async with self._changed:
            self._synced.add(scope)
            self._changed.notify_all()
        return version

    async def _watch(self, scope: str | None, version: str) -> str:
        self.counts.watches += 1
        events = self._kube.watch(
            API_VERSION,
            KIND,
            scope,
            resource_version=version,
            label_selector=SELECTOR,
            timeout_seconds=self._watch_seconds,
        )
        objects = self._objects[scope]
        async for event in events:
            obj = event.get("object") or {}
            kind = event.get("type")
            if kind in ("ADDED", "MODIFIED"):
                slim = _slim(obj)
                objects[key_of(slim)] = slim
            elif kind == "DELETED":
                objects.pop(key_of(_slim(obj)), None)
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
        return version

    async def _unsync(self, scope: str | None) -> None:
        async with self._changed:
            self._synced.discard(scope)
        self._objects.pop(scope, None)


def _scope(scope: str | None) -> str:
    return f"in {scope}" if scope is not None else "in all namespaces"
