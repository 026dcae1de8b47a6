"""The version planner: versions, open pinned runs, strategy and time → actions, as a table of cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from durable_agents_operator.version_planner import (
    ObservedVersion,
    RolloutPolicy,
    RolloutStep,
    RoutingChange,
    RoutingState,
    VersionPlan,
    plan_versions,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
STEPS = (RolloutStep(10, 5 * MINUTE), RolloutStep(50, 5 * MINUTE))


def ready(build_id: str, replicas: int = 2, **fields: object) -> ObservedVersion:
    return ObservedVersion(build_id, replicas=replicas, ready_replicas=replicas, registered=True, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    versions: tuple[ObservedVersion, ...]
    routing: RoutingState
    policy: RolloutPolicy = field(default_factory=lambda: RolloutPolicy(replicas=2))
    target: str = "v2"
    # Expectations; None means "not checked".
    routing_change: RoutingChange | str | None = "none"
    create: bool | None = None
    scale: dict[str, int] | None = None
    delete: tuple[str, ...] | None = None
    roles: dict[str, str] | None = None
    waiting: str | None = None
    blocked: str | None = None
    forced: bool = False
    """A rollback asked for by annotation holds the target."""


def promote(build_id: str, reason: str) -> RoutingChange:
    return RoutingChange(build_id, set_current=True, reason=reason)


CASES: dict[str, Case] = {
    "first version: created, then current at once": Case(
        versions=(),
        routing=RoutingState(),
        target="v1",
        routing_change=None,
        create=True,
        waiting="version v1 has no ready, registered worker yet",
    ),
    "first version with a ready worker becomes current": Case(
        versions=(ready("v1"),),
        routing=RoutingState(),
        target="v1",
        routing_change=promote("v1", "the first version"),
        roles={"v1": "current"},
    ),
    "spec change: the new Deployment is created next to the old, which stays current": Case(
        versions=(ready("v1", pinned_open_runs=3),),
        routing=RoutingState(current="v1"),
        routing_change=None,
        create=True,
        scale={},
        roles={"v1": "current", "v2": "target"},
        waiting="version v2 has no ready, registered worker yet",
    ),
    "AllAtOnce: a ready target becomes current; the old version drains its pinned runs": Case(
        versions=(ready("v1", pinned_open_runs=3), ready("v2")),
        routing=RoutingState(current="v1"),
        routing_change=promote("v2", "strategy AllAtOnce"),
        scale={},
        roles={"v1": "draining", "v2": "current"},
        delete=(),
    ),
    "a draining version keeps at least one worker even when scaled to zero by hand": Case(
        versions=(ready("v1", replicas=0, pinned_open_runs=1), ready("v2")),
        routing=RoutingState(current="v2"),
        routing_change=None,
        scale={"v1": 1},
        roles={"v1": "draining", "v2": "current"},
    ),
    "an unknown open-run count is treated as open (runs awaiting approval keep their workers)": Case(
        versions=(ready("v1", pinned_open_runs=None), ready("v2")),
        routing=RoutingState(current="v2"),
        routing_change=None,
        scale={},
        roles={"v1": "draining"},
    ),
    "drained: scaled to zero and kept for the sunset delay": Case(
        versions=(ready("v1", pinned_open_runs=0, drained_since=NOW - MINUTE), ready("v2")),
        routing=RoutingState(current="v2"),
        routing_change=None,
        scale={"v1": 0},
        delete=(),
        roles={"v1": "drained", "v2": "current"},
    ),
    "drained for longer than the sunset delay: deleted": Case(
        versions=(
            ObservedVersion(
                "v1", replicas=0, registered=True, pinned_open_runs=0, drained_since=NOW - 6 * MINUTE
            ),
            ready("v2"),
        ),
        routing=RoutingState(current="v2"),
        routing_change=None,
        scale={},
        delete=("v1",),
    ),
    "a version gone from the cluster is neither scaled nor deleted again": Case(
        versions=(ObservedVersion("v1", registered=True, pinned_open_runs=0), ready("v2")),
        routing=RoutingState(current="v2"),
        routing_change=None,
        scale={},
        delete=(),
    ),
    "kubectl scale acts on the current version only": Case(
        versions=(ready("v1", replicas=2, pinned_open_runs=4), ready("v2", replicas=2)),
        routing=RoutingState(current="v2"),
        policy=RolloutPolicy(replicas=5),
        routing_change=None,
        scale={"v2": 5},
    ),
    "replay gate refused: no traffic moves, the rollout is blocked": Case(
        versions=(ready("v1", pinned_open_runs=2), ready("v2", replay_gate="Refused")),
        routing=RoutingState(current="v1"),
        routing_change=None,
        roles={"v1": "current", "v2": "target"},
        blocked="the replay gate refused version v2",
    ),
    "replay gate still running: the target waits": Case(
        versions=(ready("v1"), ready("v2", replay_gate="Pending")),
        routing=RoutingState(current="v1"),
        routing_change=None,
        waiting="the replay gate of version v2 is running",
    ),
    "Manual: the operator never moves traffic": Case(
        versions=(ready("v1"), ready("v2")),
        routing=RoutingState(current="v1"),
        policy=RolloutPolicy(strategy="Manual", replicas=2),
        routing_change=None,
        waiting="strategy Manual: make version v2 current by hand",
    ),
    "Progressive: the first step ramps": Case(
        versions=(ready("v1"), ready("v2")),
        routing=RoutingState(current="v1"),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        routing_change=RoutingChange("v2", ramp_percentage=10, reason="step 1"),
        roles={"v1": "current", "v2": "ramping"},
    ),
    "Progressive: inside a step's pause nothing changes": Case(
        versions=(ready("v1"), ready("v2")),
        routing=RoutingState(current="v1", ramping="v2", ramp_percentage=10, ramp_changed_at=NOW - MINUTE),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        routing_change=None,
        waiting="step 1 of 2: 10% of new runs",
    ),
    "Progressive: after the pause, the next step": Case(
        versions=(ready("v1"), ready("v2")),
        routing=RoutingState(
            current="v1", ramping="v2", ramp_percentage=10, ramp_changed_at=NOW - 6 * MINUTE
        ),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        routing_change=RoutingChange("v2", ramp_percentage=50, reason="step 2"),
    ),
    "Progressive: after the last step's pause, current": Case(
        versions=(ready("v1", pinned_open_runs=1), ready("v2")),
        routing=RoutingState(
            current="v1", ramping="v2", ramp_percentage=50, ramp_changed_at=NOW - 6 * MINUTE
        ),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        routing_change=promote("v2", "the last step's pause is over"),
        roles={"v1": "draining", "v2": "current"},
    ),
    "Progressive: a ramp that matches no step is reset to its step": Case(
        versions=(ready("v1"), ready("v2")),
        routing=RoutingState(
            current="v1", ramping="v2", ramp_percentage=30, ramp_changed_at=NOW - 6 * MINUTE
        ),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        routing_change=RoutingChange("v2", ramp_percentage=10, reason="step 1 (reset)"),
    ),
    "Progressive: a newer spec restarts the steps for its own version": Case(
        versions=(ready("v1"), ready("v2"), ready("v3")),
        routing=RoutingState(current="v1", ramping="v2", ramp_percentage=50, ramp_changed_at=NOW - MINUTE),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        target="v3",
        routing_change=RoutingChange("v3", ramp_percentage=10, reason="step 1"),
        roles={"v1": "current", "v3": "ramping", "v2": "draining"},
    ),
    "rollback: a reverted spec makes the previous version current at once, even when Progressive": Case(
        versions=(
            ready("v1", pinned_open_runs=0, last_current_at=NOW - MINUTE),
            ready("v2", pinned_open_runs=2),
        ),
        routing=RoutingState(current="v2"),
        policy=RolloutPolicy(strategy="Progressive", steps=STEPS, replicas=2),
        target="v1",
        routing_change=promote("v1", "rollback to a version that was current before"),
        roles={"v1": "current", "v2": "draining"},
    ),
    "rollback to a drained version scales it back up first": Case(
        versions=(
            ObservedVersion(
                "v1", replicas=0, registered=True, pinned_open_runs=0, last_current_at=NOW - MINUTE
            ),
            ready("v2"),
        ),
        routing=RoutingState(current="v2"),
        target="v1",
        routing_change=None,
        scale={"v1": 2},
        delete=(),
        roles={"v1": "target", "v2": "current"},
        waiting="version v1 has no ready, registered worker yet",
    ),
    "rollback by annotation: current at once even with strategy Manual, the spec's version drains": Case(
        versions=(ready("v1", pinned_open_runs=0), ready("v2", pinned_open_runs=1)),
        routing=RoutingState(current="v2"),
        policy=RolloutPolicy(strategy="Manual", replicas=2),
        target="v1",
        forced=True,
        routing_change=promote("v1", "rollback asked for by annotation"),
        roles={"v1": "current", "v2": "draining"},
    ),
    "rollback by annotation still waits for a ready worker of the version": Case(
        versions=(ObservedVersion("v1", replicas=0, registered=True, pinned_open_runs=0), ready("v2")),
        routing=RoutingState(current="v2"),
        target="v1",
        forced=True,
        routing_change=None,
        scale={"v1": 2},
        waiting="version v1 has no ready, registered worker yet",
    ),
    "the target already current with a stale ramp: the ramp is cleared": Case(
        versions=(ready("v2"),),
        routing=RoutingState(current="v2", ramping="v3", ramp_percentage=10),
        routing_change=RoutingChange(None, reason="the current version is the target: stop ramping"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_version_plan(case: Case) -> None:
    versions = {v.build_id: v for v in case.versions}
    plan = plan_versions(case.target, versions, case.routing, case.policy, NOW, forced=case.forced)

    if case.routing_change != "none":
        assert plan.routing == case.routing_change
    if case.create is not None:
        assert plan.create_target is case.create
    if case.scale is not None:
        assert dict(plan.scale) == case.scale
    if case.delete is not None:
        assert plan.delete == case.delete
    if case.roles is not None:
        assert {k: plan.roles[k] for k in case.roles} == case.roles
    assert plan.waiting == case.waiting
    assert plan.blocked == case.blocked


def test_a_version_seen_drained_keeps_the_time_it_was_first_seen_so() -> None:
    versions = {"v1": ready("v1", pinned_open_runs=0), "v2": ready("v2")}
    first: VersionPlan = plan_versions("v2", versions, RoutingState(current="v2"), RolloutPolicy(), NOW)
    seen_before = {"v1": ready("v1", pinned_open_runs=0, drained_since=NOW - MINUTE), "v2": ready("v2")}
    later = plan_versions("v2", seen_before, RoutingState(current="v2"), RolloutPolicy(), NOW)

    assert first.drained_since == {"v1": NOW}
    assert later.drained_since == {"v1": NOW - MINUTE}
