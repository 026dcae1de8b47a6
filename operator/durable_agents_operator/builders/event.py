"""Kubernetes Events about the operator's resources (core/v1, shown by `kubectl describe`). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from durable_agents_runtime.timestamps import timestamp

__all__ = ["COMPONENT", "build_event"]

COMPONENT = "durable-agents-operator"


def build_event(
    involved: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    type: Literal["Normal", "Warning"],
    now: datetime,
) -> dict[str, Any]:
    """An Event about `involved` (a live object with apiVersion, kind and metadata)."""
    meta = involved.get("metadata", {})
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        # The API server rejects Event messages beyond 1 KiB.
        "message": message[:1024],
        "type": type,
        "source": {"component": COMPONENT},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
