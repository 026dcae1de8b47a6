"""Pieces every builder shares: owner references, labels, object metadata, stable hashes."""

from __future__ import annotations

from typing import Any

from durable_agents_operator.naming import (
    COMPONENT,
    LABEL_AGENT,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    WORKER_APP_NAME,
)
from durable_agents_operator.object_identity import stable_hash

__all__ = ["labels", "object_meta", "owner_reference", "selector_labels", "selector_string", "stable_hash"]


def owner_reference(*, api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """An owner reference that makes the parent the controller: deleting it garbage-collects the child."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(agent: str) -> dict[str, str]:
    """Labels that select an agent's worker pods. Part of a Deployment's immutable selector: never change."""
    return {LABEL_NAME: WORKER_APP_NAME, LABEL_AGENT: agent}


def selector_string(agent: str) -> str:
    """`selector_labels` as a label-selector string, as the scale subresource wants it in status."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(agent).items()))


def labels(agent: str) -> dict[str, str]:
    """The labels on every object belonging to an agent."""
    return {
        **selector_labels(agent),
        LABEL_INSTANCE: agent,
        LABEL_COMPONENT: COMPONENT,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def object_meta(
    *, name: str, namespace: str, agent: str, owner: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Metadata of a child object: name, namespace, labels, the owner reference, optional annotations."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels(agent),
        "ownerReferences": [owner],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
