"""Identity and content hashes of Kubernetes objects, shared by the builders, the planner and kube.py."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, NamedTuple

__all__ = ["ObjectKey", "key_of", "stable_hash", "timestamp"]


class ObjectKey(NamedTuple):
    """What identifies a namespaced object: apiVersion, kind, namespace, name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def key_of(manifest: dict[str, Any]) -> ObjectKey:
    """The key of a manifest (which must carry apiVersion, kind, metadata.namespace and metadata.name)."""
    meta = manifest["metadata"]
    return ObjectKey(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


def stable_hash(value: Any) -> str:
    """sha256 of a JSON value with sorted keys: equal content gives an equal hash in every process."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def timestamp(value: datetime) -> str:
    """A Kubernetes timestamp: RFC 3339 in UTC, whole seconds, `Z` (what metav1.Time keeps)."""
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
