"""The PodDisruptionBudget keeping all but one worker up during voluntary disruptions (node drains)."""

from __future__ import annotations

from typing import Any

from durable_agents_operator.naming import pdb_name

from .metadata import object_meta, selector_labels

__all__ = ["build_pdb"]


def build_pdb(*, agent: str, namespace: str, replicas: int, owner: dict[str, Any]) -> dict[str, Any] | None:
    """A PDB with `maxUnavailable: 1` when there are two or more workers; None otherwise.

    With one worker a budget would block node drains forever, and a drained worker only delays runs:
    Temporal hands its tasks to the replacement.
    """
    if replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(name=pdb_name(agent), namespace=namespace, agent=agent, owner=owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(agent)}},
    }
