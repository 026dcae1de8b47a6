"""The operator's errors, and how they map to kopf's retry semantics at the handler edge.

Every message says what is wrong and how to fix it; none contains a secret value.
"""

from __future__ import annotations

import kopf

__all__ = [
    "DependencyNotReady",
    "InvalidSpec",
    "KubeApiError",
    "KubeForbidden",
    "KubeInvalid",
    "KubeUnavailable",
    "NamespaceTerminating",
    "ObjectConflict",
    "OperatorError",
    "TemporalUnavailable",
    "to_kopf",
]


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""

    retry_after: float | None = 30.0
    """Seconds until the handler should run again; `None` means retrying cannot help."""


class InvalidSpec(OperatorError):
    """The resource's spec cannot be reconciled as written; the user must change it."""

    retry_after = None


class DependencyNotReady(OperatorError):
    """Something the resource refers to (a DurableAgent, a TemporalConnection, a Secret) is missing."""

    retry_after = 15.0

    def __init__(self, message: str, *, reason: str = "DependencyNotReady") -> None:
        super().__init__(message)
        self.reason = reason
        """A condition reason naming what is missing, e.g. `TemporalConnectionNotFound`."""


class ObjectConflict(OperatorError):
    """An object the resource needs exists and is controlled by someone else; applying would steal it.

    The message names the object and its controller; the user deletes it or renames the resource.
    """

    retry_after = 60.0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = "ObjectConflict"
        """The condition reason (`Reason.OBJECT_CONFLICT`)."""


class TemporalUnavailable(OperatorError):
    """Temporal did not answer in time or refused the operator's call."""

    retry_after = 15.0


class KubeApiError(OperatorError):
    """The Kubernetes API rejected a request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeForbidden(KubeApiError):
    """The operator's service account may not do this; its RBAC must grant the verb."""

    retry_after = 120.0


class KubeInvalid(KubeApiError):
    """The API server rejected an object as invalid (HTTP 422): the spec that produced it must change.

    The message carries the API server's, which names the field.
    """

    retry_after = None


class KubeUnavailable(KubeApiError):
    """The Kubernetes API could not be reached."""

    retry_after = 10.0


class NamespaceTerminating(KubeApiError):
    """The namespace is being deleted: it refuses new objects, and what it holds goes away with it."""

    retry_after = None


def to_kopf(exc: OperatorError) -> kopf.TemporaryError | kopf.PermanentError:
    """The kopf error that makes kopf retry (after `retry_after`) or give up, carrying the same message."""
    if exc.retry_after is None:
        return kopf.PermanentError(str(exc))
    return kopf.TemporaryError(str(exc), delay=exc.retry_after)
