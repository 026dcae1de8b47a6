"""The planner: desired vs observed objects → apply, delete or conflict, decided by a stable hash; and
the executor that performs a plan."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from durable_agents_operator.kube import Kube, execute
from durable_agents_operator.naming import ANNOTATION_SPEC_HASH
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.planner import Apply, Conflict, Delete, manifest_hash, plan, plan_objects

OWNER = "uid-agent"


def manifest(kind: str = "ConfigMap", name: str = "a-runtime", **data: Any) -> dict[str, Any]:
    api = {"ConfigMap": "v1", "Service": "v1", "Deployment": "apps/v1", "PodDisruptionBudget": "policy/v1"}[
        kind
    ]
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"app.kubernetes.io/managed-by": "durable-agents"},
            "ownerReferences": [{"uid": OWNER, "kind": "DurableAgent", "name": "a", "controller": True}],
        },
        "data": data or {"k": "v"},
    }


def live(desired: dict[str, Any], *, applied: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """What the API server returns after `applied` (default: `desired`) was applied: server fields added."""
    obj = copy.deepcopy(applied or desired)
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC_HASH] = manifest_hash(applied or desired)
    obj["metadata"].update({"uid": "uid-live", "resourceVersion": "7", "managedFields": [{"manager": "x"}]})
    obj["metadata"].update(meta)
    obj["status"] = {"observedGeneration": 3}
    return obj


def keyed(*manifests: dict[str, Any]) -> dict[ObjectKey, dict[str, Any]]:
    return {key_of(m): m for m in manifests}


CM = manifest()
DEPLOY = manifest("Deployment", "a-worker", replicas="1")
SVC = manifest("Service", "a-metrics")
PDB = manifest("PodDisruptionBudget", "a-worker")
FOREIGN = {"uid": "uid-other", "kind": "HelmRelease", "name": "x", "controller": True}


def kinds(actions: list[Any]) -> list[tuple[str, str, str]]:
    return [(type(a).__name__, a.key.kind, getattr(a, "reason", "")) for a in actions]


CASES: list[tuple[str, dict[ObjectKey, Any], dict[ObjectKey, Any], list[tuple[str, str, str]]]] = [
    (
        "nothing exists yet: apply all, in order",
        keyed(CM, DEPLOY),
        {key_of(CM): None, key_of(DEPLOY): None},
        [("Apply", "ConfigMap", "Missing"), ("Apply", "Deployment", "Missing")],
    ),
    (
        "observed map without the key at all counts as missing",
        keyed(CM),
        {},
        [("Apply", "ConfigMap", "Missing")],
    ),
    ("everything up to date: nothing to do", keyed(CM, DEPLOY), keyed(live(CM), live(DEPLOY)), []),
    (
        "server-side fields and status do not count as changes",
        keyed(CM),
        keyed(live(CM, generation=9, creationTimestamp="2026-01-01T00:00:00Z")),
        [],
    ),
    (
        "a changed desired object is re-applied",
        keyed(manifest(k="new")),
        keyed(live(CM)),
        [("Apply", "ConfigMap", "Changed")],
    ),
    (
        "only the changed object is re-applied",
        keyed(CM, manifest("Deployment", "a-worker", replicas="3")),
        keyed(live(CM), live(DEPLOY)),
        [("Apply", "Deployment", "Changed")],
    ),
    (
        "a live object without our hash (created by hand, or by an older version) is applied",
        keyed(CM),
        keyed({**copy.deepcopy(CM), "metadata": {**CM["metadata"], "annotations": {}}}),
        [("Apply", "ConfigMap", "Changed")],
    ),
    (
        "an owned object no longer desired is deleted",
        keyed(CM, DEPLOY),
        keyed(live(CM), live(DEPLOY), live(PDB)),
        [("Delete", "PodDisruptionBudget", "")],
    ),
    (
        "a missing object no longer desired needs nothing",
        keyed(CM),
        {key_of(CM): live(CM), key_of(SVC): None},
        [],
    ),
    (
        "an object of someone else's that we do not desire is left alone",
        keyed(CM),
        keyed(live(CM), live(SVC, ownerReferences=[FOREIGN])),
        [],
    ),
    (
        "a desired object controlled by someone else is a conflict, not stolen",
        keyed(SVC),
        keyed(live(SVC, ownerReferences=[FOREIGN])),
        [("Conflict", "Service", "")],
    ),
    (
        "deletions come after applies",
        keyed(manifest(k="new")),
        keyed(live(CM), live(SVC)),
        [("Apply", "ConfigMap", "Changed"), ("Delete", "Service", "")],
    ),
]


@pytest.mark.parametrize(
    ("desired", "observed", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan(
    desired: dict[ObjectKey, Any], observed: dict[ObjectKey, Any], expected: list[tuple[str, str, str]]
) -> None:
    assert kinds(plan(desired, observed, owner_uid=OWNER)) == expected


def test_applied_manifests_carry_the_hash_that_makes_the_next_plan_empty() -> None:
    (action,) = plan(keyed(CM), {}, owner_uid=OWNER)
    assert isinstance(action, Apply)
    after_apply = live(CM, applied=action.manifest)
    assert action.manifest["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == manifest_hash(CM)
    assert plan(keyed(CM), keyed(after_apply), owner_uid=OWNER) == []


def test_the_hash_ignores_key_order_and_its_own_annotation() -> None:
    reordered = {
        "metadata": CM["metadata"],
        "data": CM["data"],
        "kind": CM["kind"],
        "apiVersion": CM["apiVersion"],
    }
    stamped = copy.deepcopy(CM)
    stamped["metadata"]["annotations"] = {ANNOTATION_SPEC_HASH: "whatever"}
    assert manifest_hash(CM) == manifest_hash(reordered) == manifest_hash(stamped)


def test_planning_does_not_modify_its_inputs() -> None:
    desired, observed = keyed(manifest(k="new")), keyed(live(CM))
    before = copy.deepcopy((desired, observed))
    plan(desired, observed, owner_uid=OWNER)
    assert (desired, observed) == before


def test_deletion_is_guarded_by_the_uid_of_the_observed_object() -> None:
    (action,) = plan({}, keyed(live(PDB)), owner_uid=OWNER)
    assert action == Delete(key_of(PDB), "uid-live")


def test_without_an_owner_uid_the_managed_by_label_decides_what_may_be_deleted() -> None:
    mine, theirs = live(PDB), live(SVC)
    theirs["metadata"]["labels"] = {}
    assert kinds(plan({}, keyed(mine, theirs))) == [("Delete", "PodDisruptionBudget", "")]


def test_a_conflict_says_who_controls_the_object_and_what_to_do() -> None:
    (action,) = plan(keyed(SVC), keyed(live(SVC, ownerReferences=[FOREIGN])), owner_uid=OWNER)
    assert isinstance(action, Conflict)
    assert "HelmRelease x" in action.message
    assert "delete it or rename the DurableAgent" in action.message


def test_a_plan_with_a_conflict_applies_nothing_and_names_the_conflict() -> None:
    desired = keyed(CM, SVC)
    observed = {key_of(CM): None, key_of(SVC): live(SVC, ownerReferences=[FOREIGN])}
    result = plan_objects(desired, observed, owner_uid=OWNER)
    assert result.actions == ()
    error = result.conflict_error()
    assert error is not None
    assert "HelmRelease x" in str(error)
    assert error.retry_after == 60


def test_a_plan_without_conflicts_keeps_what_was_observed_for_the_executor() -> None:
    observed = {key_of(CM): None}
    result = plan_objects(keyed(CM), observed, owner_uid=OWNER)
    assert kinds(list(result.actions)) == [("Apply", "ConfigMap", "Missing")]
    assert result.observed == observed
    assert result.conflict_error() is None


class RecordingKube:
    """Just enough of `Kube` for the executor: records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ObjectKey]] = []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", key_of(manifest)))
        return {**manifest, "status": {"applied": True}}

    async def delete(self, key: ObjectKey, *, uid: str | None = None) -> None:
        self.calls.append(("delete", key))


@pytest.mark.asyncio
async def test_the_executor_performs_the_plan_in_order_and_returns_the_objects_after_it() -> None:
    observed = {key_of(CM): None, key_of(PDB): live(PDB)}
    result = plan_objects(keyed(CM), observed, owner_uid=OWNER)
    recorder = RecordingKube()
    after = await execute(cast(Kube, recorder), result)
    assert recorder.calls == [("apply", key_of(CM)), ("delete", key_of(PDB))]
    assert after[key_of(CM)] is not None and after[key_of(CM)]["status"] == {"applied": True}
    assert after[key_of(PDB)] is None
