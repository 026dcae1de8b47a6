"""Desired vs observed objects → the actions that make the cluster match. Pure: no client, no clock.

`plan_objects` is the decision (a `Plan`); `kube.execute` only performs it. A plan with conflicts has no
actions: applying part of an agent's objects while another controller holds one helps nobody.

Change detection compares a hash of what the operator last applied (the `durable-agents.dev/spec-hash`
annotation) with the hash of what it would apply now, never the whole object: the API server fills in
defaults and other controllers add fields, so a field-by-field comparison would see changes forever.
The cost of this choice: a manual edit of a managed field (say `kubectl edit deployment`) is not undone
until the agent's spec changes again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from durable_agents_operator.errors import ObjectConflict
from durable_agents_operator.naming import ANNOTATION_SPEC_HASH, LABEL_MANAGED_BY, MANAGED_BY
from durable_agents_operator.object_identity import ObjectKey, stable_hash

__all__ = ["Action", "Apply", "Conflict", "Delete", "Plan", "manifest_hash", "plan", "plan_objects"]


@dataclass(frozen=True)
class Apply:
    """Server-side apply `manifest` (which carries its spec-hash annotation)."""

    key: ObjectKey
    manifest: dict[str, Any]
    reason: Literal["Missing", "Changed"]


@dataclass(frozen=True)
class Delete:
    """Delete an object the owner no longer wants, guarded by its uid (never a same-named newcomer)."""

    key: ObjectKey
    uid: str | None


@dataclass(frozen=True)
class Conflict:
    """An object with the desired name is controlled by someone else; applying would steal it."""

    key: ObjectKey
    controller: str

    @property
    def message(self) -> str:
        """What is wrong and how to fix it."""
        return (
            f"{self.key} already exists and is controlled by {self.controller}: delete it or rename the "
            "DurableAgent"
        )


Action = Apply | Delete | Conflict


@dataclass(frozen=True)
class Plan:
    """What to do to one owner's objects, and what was observed before doing it."""

    observed: Mapping[ObjectKey, dict[str, Any] | None]
    """Each key the owner may have → the live object, or None."""
    actions: tuple[Apply | Delete, ...]
    conflicts: tuple[Conflict, ...] = ()

    def conflict_error(self) -> ObjectConflict | None:
        """The error to report when objects belong to someone else (then `actions` is empty)."""
        if not self.conflicts:
            return None
        return ObjectConflict("; ".join(c.message for c in self.conflicts))


def plan_objects(
    desired: Mapping[ObjectKey, dict[str, Any]],
    observed: Mapping[ObjectKey, dict[str, Any] | None],
    *,
    owner_uid: str | None = None,
) -> Plan:
    """The `Plan` that makes `observed` match `desired` (see `plan`); no actions while any conflict."""
    actions = plan(desired, observed, owner_uid=owner_uid)
    conflicts = tuple(a for a in actions if isinstance(a, Conflict))
    if conflicts:
        return Plan(observed, (), conflicts)
    return Plan(observed, tuple(a for a in actions if not isinstance(a, Conflict)))


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """Hash of a desired manifest, ignoring the spec-hash annotation itself."""
    stripped = copy.deepcopy(dict(manifest))
    annotations = stripped.get("metadata", {}).get("annotations")
    if annotations is not None:
        annotations.pop(ANNOTATION_SPEC_HASH, None)
        if not annotations:
            del stripped["metadata"]["annotations"]
    return stable_hash(stripped)


def plan(
    desired: Mapping[ObjectKey, dict[str, Any]],
    observed: Mapping[ObjectKey, dict[str, Any] | None],
    *,
    owner_uid: str | None = None,
) -> list[Action]:
    """The actions, in order: applies in `desired`'s order (ConfigMap before the Deployment that mounts
    it), then deletions of owned objects that are observed but no longer desired.

    `observed` maps each key the owner may have to the live object or None. With `owner_uid`, ownership
    means an owner reference to that uid; without it, the managed-by label.
    """
    actions: list[Action] = []
    for key, manifest in desired.items():
        live = observed.get(key)
        digest = manifest_hash(manifest)
        if live is None:
            actions.append(Apply(key, _stamped(manifest, digest), "Missing"))
            continue
        controller = _foreign_controller(live, owner_uid)
        if controller is not None:
            actions.append(Conflict(key, controller))
        elif _annotations(live).get(ANNOTATION_SPEC_HASH) != digest:
            actions.append(Apply(key, _stamped(manifest, digest), "Changed"))
    for key, live in observed.items():
        if key in desired or live is None or not _owned(live, owner_uid):
            continue
        actions.append(Delete(key, live.get("metadata", {}).get("uid")))
    return actions


def _stamped(manifest: Mapping[str, Any], digest: str) -> dict[str, Any]:
    stamped = copy.deepcopy(dict(manifest))
    metadata = stamped.setdefault("metadata", {})
    metadata["annotations"] = {**metadata.get("annotations", {}), ANNOTATION_SPEC_HASH: digest}
    return stamped


def _annotations(live: Mapping[str, Any]) -> Mapping[str, str]:
    return live.get("metadata", {}).get("annotations") or {}


def _controller(live: Mapping[str, Any]) -> dict[str, Any] | None:
    for ref in live.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _foreign_controller(live: Mapping[str, Any], owner_uid: str | None) -> str | None:
    if owner_uid is None:
        return None
    ref = _controller(live)
    if ref is None or ref.get("uid") == owner_uid:
        return None
    return f"{ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"


def _owned(live: Mapping[str, Any], owner_uid: str | None) -> bool:
    if owner_uid is not None:
        ref = _controller(live)
        return ref is not None and ref.get("uid") == owner_uid
    return (live.get("metadata", {}).get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY
