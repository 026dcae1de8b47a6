"""Test doubles and builders for the operator tests: a recording in-memory Kubernetes API (`FakeKube`),
a controllable clock, a scripted health reader, and manifests.

`FakeKube` keeps objects as the API server would return them (uid, generation, resourceVersion, status
kept across applies) but does not merge field ownership as server-side apply does; the real apply path
is exercised against a real API server by the e2e tier.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from temporalio.client import Client

from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import KubeApiError, KubeForbidden, NamespaceTerminating
from durable_agents_operator.health_batching import HealthBatcher, HealthReader, runtime_reader
from durable_agents_operator.kube import resource_for
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.settings import OperatorSettings
from durable_agents_operator.temporal_clients import TemporalPool
from durable_agents_runtime.health import AgentHealth

API = "durable-agents.dev/v1alpha1"


@dataclass(frozen=True)
class DevServer:
    address: str
    namespace: str = "default"


class FakeKube:
    """An in-memory `Kube` that records every call as `(verb, "Kind namespace/name")`."""

    def __init__(self) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.denied: set[tuple[str, str]] = set()
        """(verb, kind) pairs answered with 403."""
        self.terminating: set[str] = set()
        """Namespaces being deleted: creating an object or an Event there is refused (403)."""
        self._counter = 0

    # --- test helpers -----------------------------------------------------------------------------------

    def put(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object as a user would (server fields filled in), without recording a call."""
        obj = copy.deepcopy(dict(manifest))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "ns")
        meta.setdefault("uid", self._next_uid())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_rv()
        self.objects[key_of(obj)] = obj
        return copy.deepcopy(obj)

    def edit(self, key: ObjectKey, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Change an object's spec as a user would (bumps generation); returns the new body."""
        obj = self.objects[key]
        change(obj)
        obj["metadata"]["generation"] += 1
        obj["metadata"]["resourceVersion"] = self._next_rv()
        return copy.deepcopy(obj)

    def body(self, key: ObjectKey) -> dict[str, Any]:
        """The current object, as kopf would hand it to a handler."""
        return copy.deepcopy(self.objects[key])

    def set_status(self, key: ObjectKey, status: dict[str, Any]) -> None:
        """Set status as another controller would (e.g. the deployment controller)."""
        self.objects[key]["status"] = copy.deepcopy(status)

    def count(self, verb: str, kind: str | None = None) -> int:
        return sum(1 for v, what in self.calls if v == verb and (kind is None or what.startswith(f"{kind} ")))

    def kinds(self, verb: str) -> list[str]:
        return [what.split(" ")[0] for v, what in self.calls if v == verb]

    # --- Kube -------------------------------------------------------------------------------------------

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        self._record("get", key)
        obj = self.objects.get(key)
        return copy.deepcopy(obj) if obj is not None else None

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._record("list", ObjectKey(api_version, kind, namespace or "*", "*"))
        return [
            copy.deepcopy(o)
            for k, o in self.objects.items()
            if (k.api_version, k.kind) == (api_version, kind) and namespace in (None, k.namespace)
        ]

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        key = key_of(manifest)
        self._record("apply", key)
        resource_for(key.api_version, key.kind)  # unknown kinds fail as in KubeClient
        existing = self.objects.get(key)
        if existing is None and key.namespace in self.terminating:
            raise NamespaceTerminating(f"could not apply {key}: its namespace is being deleted", status=403)
        obj = copy.deepcopy(manifest)
        meta = obj["metadata"]
        if existing is None:
            meta.update(uid=self._next_uid(), generation=1)
        else:
            old = existing["metadata"]
            changed = {k: v for k, v in existing.items() if k not in ("metadata", "status")} != {
                k: v for k, v in obj.items() if k != "metadata"
            }
            meta.update(uid=old["uid"], generation=old["generation"] + (1 if changed else 0))
            if "status" in existing:
                obj["status"] = existing["status"]
        meta["resourceVersion"] = self._next_rv()
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def apply_new(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        key = key_of(manifest)
        if key in self.objects:  # someone's fields: as the API server's 409 for an apply without force
            self._record("apply", key)
            return None
        return await self.apply(manifest)

    async def delete(self, key: ObjectKey, *, uid: str | None = None) -> None:
        self._record("delete", key)
        obj = self.objects.get(key)
        if obj is None:
            return
        if uid is not None and obj["metadata"]["uid"] != uid:
            raise KubeApiError(f"precondition failed: uid of {key} is not {uid}", status=409)
        del self.objects[key]

    async def patch_status(self, key: ObjectKey, status: Mapping[str, Any]) -> dict[str, Any] | None:
        self._record("patch_status", key)
        obj = self.objects.get(key)
        if obj is None:
            return None
        obj["status"] = _merge(obj.get("status") or {}, dict(status))
        obj["metadata"]["resourceVersion"] = self._next_rv()
        return copy.deepcopy(obj)

    async def scale(self, key: ObjectKey, replicas: int) -> dict[str, Any] | None:
        self._record("scale", key)
        obj = self.objects.get(key)
        if obj is None:
            return None
        obj["spec"]["replicas"] = replicas
        obj["metadata"]["resourceVersion"] = self._next_rv()
        return copy.deepcopy(obj)

    async def annotate(self, key: ObjectKey, annotations: Mapping[str, str | None]) -> None:
        self._record("annotate", key)
        obj = self.objects.get(key)
        if obj is None:
            return
        meta = obj["metadata"]
        meta["annotations"] = _merge(meta.get("annotations") or {}, dict(annotations))
        meta["resourceVersion"] = self._next_rv()

    async def create_event(self, event: dict[str, Any]) -> None:
        self._record("create_event", ObjectKey("v1", "Event", event["metadata"]["namespace"], "*"))
        if event["metadata"]["namespace"] in self.terminating:
            raise NamespaceTerminating(
                "could not create an event: its namespace is being deleted", status=403
            )
        self.events.append(copy.deepcopy(event))

    # --- internals --------------------------------------------------------------------------------------

    def _record(self, verb: str, key: ObjectKey) -> None:
        if (verb, key.kind) in self.denied:
            raise KubeForbidden(f"could not {verb} {key}: forbidden (test)", status=403)
        self.calls.append((verb, str(key)))

    def _next_uid(self) -> str:
        self._counter += 1
        return f"uid-{self._counter}"

    def _next_rv(self) -> str:
        self._counter += 1
        return str(self._counter)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    result = copy.deepcopy(target)
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict) and isinstance(result.get(name), dict):
            result[name] = _merge(result[name], value)
        else:
            result[name] = copy.deepcopy(value)
    return result


class Clock:
    """Wall clock and monotonic clock that move only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        self.seconds = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds


class RecordingReader:
    """A health reader returning scripted health and recording each batched call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.workers: dict[str, int] = {}
        self.down: str | None = None
        self.throttled = False
        """With `down`: the failure is Temporal's rate limit (RESOURCE_EXHAUSTED after retries)."""
        self.delay = 0.0

    async def __call__(
        self, client: Client, task_queues: Sequence[str], previous: Mapping[str, AgentHealth]
    ) -> Mapping[str, AgentHealth]:
        self.calls.append(list(task_queues))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down is not None:
            return {q: AgentHealth.unreachable(q, self.down, throttled=self.throttled) for q in task_queues}
        return {q: AgentHealth(q, self.workers.get(q, 1), 2, 1.5, 1, 5, 1, None) for q in task_queues}


def settings(**overrides: Any) -> OperatorSettings:
    """Operator settings independent of the environment the tests run in."""
    values: dict[str, Any] = {"temporal_address": "127.0.0.1:7233", "health_interval": 10.0, **overrides}
    return OperatorSettings.model_validate(values)


def make_operator(
    kube: Any,
    *,
    clock: Clock,
    reader: HealthReader | None = None,
    temporal: TemporalPool | None = None,
    **overrides: Any,
) -> Operator:
    config = settings(**overrides)

    async def unused_client(params: ConnectionParams) -> Client:
        return cast(Client, object())  # the scripted reader never touches it

    pool = temporal or TemporalPool(timeout=config.temporal_timeout, connect=unused_client)
    health = HealthBatcher(
        pool=pool,
        reader=reader or RecordingReader(),
        interval=config.health_interval,
        timeout=config.temporal_timeout,
        clock=clock.monotonic,
    )
    return Operator(
        settings=config,
        kube=kube,
        temporal=pool,
        health=health,
        default_params=ConnectionParams(address=config.temporal_address, namespace=config.temporal_namespace),
        clock=clock.wall,
        monotonic=clock.monotonic,
    )


def make_real_operator(kube: FakeKube, *, clock: Clock, temporal_address: str) -> Operator:
    """An operator whose Temporal side is real: connection pool and the runtime's health read."""
    return make_operator(
        kube,
        clock=clock,
        temporal=TemporalPool(timeout=5),
        reader=runtime_reader(live_within=75, rpc_timeout=5),
        temporal_address=temporal_address,
    )


def agent_manifest(name: str = "hello", *, namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    """A DurableAgent as a user would apply it."""
    return {
        "apiVersion": API,
        "kind": "DurableAgent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"agent": {"name": name.replace("-", "_"), "model": "test"}, **spec},
    }


def connection_manifest(name: str, address: str, *, namespace: str = "ns") -> dict[str, Any]:
    """A TemporalConnection without TLS or credentials."""
    return {
        "apiVersion": API,
        "kind": "TemporalConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"address": address},
    }


def agent_key(name: str = "hello", namespace: str = "ns") -> ObjectKey:
    return ObjectKey(API, "DurableAgent", namespace, name)


def deployment_key(name: str = "hello", namespace: str = "ns") -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", namespace, f"{name}-worker")


def roll_out(kube: FakeKube, name: str = "hello", namespace: str = "ns") -> None:
    """Do what the deployment controller and kubelet would: all desired pods updated and ready."""
    deployment = kube.objects[deployment_key(name, namespace)]
    replicas = deployment["spec"]["replicas"]
    kube.set_status(
        deployment_key(name, namespace),
        {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    )
