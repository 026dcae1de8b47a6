"""A rollback asked for by annotation (`durable-agents.dev/rollback=previous|<buildId>`) → what to do. Pure.

The annotation makes a version still around current at once, whatever the strategy, and holds it there
until the spec changes: the spec's own version is then treated like any older one (it drains its pinned
runs and is sunset). A version is still around when it has a Deployment and Temporal knows it (a worker of
it has polled). Asking for the spec's own version ends a hold (a roll forward).

The hold is kept in `status.rollback` (`buildId`, `specBuildId`); it ends by itself when the spec's build
id is no longer `specBuildId` (a new spec, or the spec reverted to the held version).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PREVIOUS", "RollbackAnswer", "RollbackHold", "answer_rollback", "hold_from_status"]

PREVIOUS = "previous"
"""The annotation value naming the version that was current before the current one."""


@dataclass(frozen=True)
class RollbackHold:
    """Version `build_id` stays the target while the spec's version is `spec_build_id`."""

    build_id: str
    spec_build_id: str

    def to_status(self) -> dict[str, str]:
        return {"buildId": self.build_id, "specBuildId": self.spec_build_id}

    def holds(self, spec_build_id: str) -> bool:
        """Whether the hold still applies to the spec's version `spec_build_id`."""
        return self.spec_build_id == spec_build_id and self.build_id != spec_build_id


def hold_from_status(value: Any, spec_build_id: str) -> RollbackHold | None:
    """The hold recorded in `status.rollback`, if it still applies to the spec's version."""
    if not isinstance(value, Mapping):
        return None
    build_id, spec = value.get("buildId"), value.get("specBuildId")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(build_id, str) or not isinstance(spec, str):
        return None
    hold = RollbackHold(build_id, spec)
    return hold if hold.holds(spec_build_id) else None


@dataclass(frozen=True)
class RollbackAnswer:
    """What the annotation leads to: a new hold (None: none), or why it is refused."""

    hold: RollbackHold | None
    build_id: str | None
    """The version asked for (None: `previous` with no previous version known)."""
    refused: str | None = None


def answer_rollback(
    request: str,
    *,
    spec_build_id: str,
    previous_version: str | None,
    deployments: Collection[str],
    registered: Collection[str],
) -> RollbackAnswer:
    """The answer to the annotation value `request` (`previous` or a build id)."""
    wanted = (previous_version if request.strip() == PREVIOUS else request.strip()) or None
    if wanted is None:
        return RollbackAnswer(
            None,
            None,
            "no previous version is known (status.previousVersion is empty): annotate with the build id "
            "of a version listed in status.versions",
        )
    if wanted == spec_build_id:
        return RollbackAnswer(None, wanted)
    if wanted not in deployments and wanted not in registered:
        return RollbackAnswer(
            None, wanted, f"unknown build id {wanted!r}: status.versions lists the versions still around"
        )
    if wanted not in deployments:
        return RollbackAnswer(
            None,
            wanted,
            f"version {wanted} was already deleted (its Deployment is gone after the sunset delay): revert "
            "the spec to that version to create it again",
        )
    if wanted not in registered:
        return RollbackAnswer(
            None,
            wanted,
            f"version {wanted} is unknown to Temporal (none of its workers has polled yet): wait for its "
            "workers, or revert the spec",
        )
    return RollbackAnswer(RollbackHold(wanted, spec_build_id), wanted)
