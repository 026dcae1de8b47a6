"""Namespaces the API server said are being deleted, so handlers stop writing into them.

A terminating namespace still accepts writes to what it holds but refuses anything new (403 with the
cause `NamespaceTerminating`). The operator (which may not read Namespaces) learns it from the first
such refusal, an Event or a child it tried to create, and from then on leaves the namespace's objects
alone: no status patches, no Events, no retried reconcile. The namespace controller deletes them soon.

A namespace deleted and created again under the same name is live again: an object created after the
refusal proves it (nothing can be created in a terminating namespace), and clears the mark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["TerminatingNamespaces"]


@dataclass
class TerminatingNamespaces:
    """Namespace → when a request into it was refused because it is being deleted."""

    _refused_at: dict[str, datetime] = field(default_factory=dict)

    def note(self, namespace: str, now: datetime) -> None:
        """The API server refused a request into `namespace` because it is being deleted."""
        self._refused_at[namespace] = now

    def holds(self, body: Mapping[str, Any]) -> bool:
        """Whether the object `body` lives in a namespace being deleted (so handlers leave it alone)."""
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") or ""
        refused_at = self._refused_at.get(namespace)
        if refused_at is None:
            return False
        created = _parse(metadata.get("creationTimestamp"))
        if created is not None and created >= refused_at.replace(microsecond=0):
            del self._refused_at[namespace]  # created after the refusal: the namespace was made anew
            return False
        return True


def _parse(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
