"""Identity and content hashes of Kubernetes objects, shared by the builders, the planner, kube.py and
the handlers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["ObjectKey", "key_of", "stable_hash"]


class ObjectKey(NamedTuple):
    """What identifies a namespaced object: apiVersion, kind, namespace, name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def key_of(manifest: Mapping[str, Any]) -> ObjectKey:
    """The key of a manifest or a live object's body (which must carry apiVersion, kind,
    metadata.namespace and metadata.name; kopf's bodies and `Kube.list` items do)."""
    meta = manifest["metadata"]
    return ObjectKey(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


def stable_hash(value: Any) -> str:
    """sha256 of a JSON value with sorted keys: equal content gives an equal hash in every process."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()
