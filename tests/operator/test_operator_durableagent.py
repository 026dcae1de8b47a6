"""DurableAgent handlers: reconcile (create, update, pause, scale, delete, bad specs) and the health timer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import pytest
from operator_support import (
    API,
    Clock,
    FakeKube,
    RecordingReader,
    agent_key,
    agent_manifest,
    connection_manifest,
    deployment_key,
    make_operator,
    roll_out,
)

from durable_agents_operator.handlers import durableagent, temporalconnection
from durable_agents_operator.naming import ANNOTATION_CONFIG_HASH, ANNOTATION_SPEC_HASH
from durable_agents_operator.object_identity import ObjectKey

pytestmark = pytest.mark.anyio

CONFIGMAP = ObjectKey("v1", "ConfigMap", "ns", "hello-runtime")
SERVICE = ObjectKey("v1", "Service", "ns", "hello-metrics")
PDB = ObjectKey("policy/v1", "PodDisruptionBudget", "ns", "hello-worker")


def conditions(kube: FakeKube, key: ObjectKey | None = None) -> dict[str, tuple[str, str]]:
    status = kube.objects[key or agent_key()].get("status") or {}
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def condition_message(kube: FakeKube, kind: str) -> str:
    status = kube.objects[agent_key()].get("status") or {}
    return next(c["message"] for c in status.get("conditions", []) if c["type"] == kind)


def config_hash(kube: FakeKube) -> str:
    return kube.objects[deployment_key()]["spec"]["template"]["metadata"]["annotations"][
        ANNOTATION_CONFIG_HASH
    ]


async def test_create_applies_configmap_deployment_service_and_reports_a_rollout(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    body = kube.put(agent_manifest())
    await durableagent.reconcile(ops, body)
    assert kube.kinds("apply") == ["ConfigMap", "Deployment", "Service"]
    deployment = kube.objects[deployment_key()]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert ANNOTATION_SPEC_HASH in deployment["metadata"]["annotations"]
    status = kube.objects[agent_key()]["status"]
    assert status["observedGeneration"] == 1
    assert status["taskQueue"] == "ns.hello"
    assert status["selector"] == "app.kubernetes.io/name=durable-agents-worker,durable-agents.dev/agent=hello"
    assert conditions(kube)["Ready"] == ("False", "RollingOut")
    assert conditions(kube)["Progressing"] == ("True", "RollingOut")
    assert kube.events == []  # a rollout starting is not news


async def test_reconciling_an_unchanged_agent_reads_but_writes_nothing(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    await durableagent.check_health(ops, kube.body(agent_key()))
    kube.calls.clear()
    await durableagent.reconcile(ops, kube.body(agent_key()))
    assert kube.count("apply") == 0
    assert kube.count("get") == 4  # ConfigMap, Deployment, Service, PDB
    assert kube.count("patch_status") == 0  # as after an operator restart: status is already right


async def test_a_config_change_reapplies_the_configmap_and_rolls_the_deployment(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    before = config_hash(kube)
    kube.calls.clear()
    body = kube.edit(agent_key(), lambda o: o["spec"]["agent"].update(instructions="Answer in French."))
    await durableagent.reconcile(ops, body)
    assert kube.kinds("apply") == ["ConfigMap", "Deployment"]
    assert config_hash(kube) != before
    runtime = json.loads(kube.objects[CONFIGMAP]["data"]["runtime.json"])
    assert runtime["agent"]["instructions"] == "Answer in French."
    assert kube.objects[agent_key()]["status"]["observedGeneration"] == 2


async def test_scaling_applies_the_new_replica_count_and_adds_a_disruption_budget(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    before = config_hash(kube)
    kube.calls.clear()
    # `kubectl scale da hello --replicas 3` changes spec.replicas through the scale subresource.
    body = kube.edit(agent_key(), lambda o: o["spec"].update(replicas=3))
    await durableagent.reconcile(ops, body)
    assert kube.kinds("apply") == ["Deployment", "PodDisruptionBudget"]
    assert kube.objects[deployment_key()]["spec"]["replicas"] == 3
    assert config_hash(kube) == before  # scaling does not restart the running workers


async def test_pause_scales_to_zero_removes_the_budget_and_keeps_the_health_status(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest(replicas=2)))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    runs_before = kube.objects[agent_key()]["status"]["runs"]
    kube.calls.clear()

    body = kube.edit(agent_key(), lambda o: o["spec"].update(paused=True))
    await durableagent.reconcile(ops, body)
    assert kube.kinds("apply") == ["Deployment"]
    assert kube.kinds("delete") == ["PodDisruptionBudget"]
    assert PDB not in kube.objects
    assert kube.objects[deployment_key()]["spec"]["replicas"] == 0
    roll_out(kube)
    clock.advance(10)
    reader.workers["ns.hello"] = 0
    await durableagent.check_health(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    assert status["runs"] == runs_before
    assert conditions(kube)["Ready"] == ("True", "Paused")
    assert conditions(kube)["Degraded"] == ("False", "AsExpected")


async def test_an_invalid_spec_is_reported_with_the_field_path_and_nothing_is_applied(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    manifest = agent_manifest()
    manifest["spec"]["agent"]["temperature"] = 0.3
    body = kube.put(manifest)
    with pytest.raises(kopf.PermanentError, match=r"spec\.agent\.temperature: unknown field"):
        await durableagent.reconcile(ops, body)
    assert kube.count("apply") == 0
    assert conditions(kube)["Ready"] == ("False", "InvalidSpec")
    assert conditions(kube)["Degraded"] == ("True", "InvalidSpec")
    (event,) = [e for e in kube.events if e["reason"] == "InvalidSpec" and "Ready" in e["message"]]
    assert event["type"] == "Warning"
    assert "spec.agent.temperature" in event["message"]


async def test_a_spec_that_cannot_be_built_is_an_invalid_spec_too(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    body = kube.put(agent_manifest(template={"terminationGracePeriodSeconds": 5}))
    with pytest.raises(kopf.PermanentError, match="terminationGracePeriodSeconds"):
        await durableagent.reconcile(ops, body)
    assert kube.count("apply") == 0
    assert conditions(kube)["Ready"] == ("False", "InvalidSpec")


async def test_fixing_an_invalid_spec_recovers_and_says_so(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    body = kube.put(agent_manifest(template={"terminationGracePeriodSeconds": 5}))
    with pytest.raises(kopf.PermanentError):
        await durableagent.reconcile(ops, body)
    body = kube.edit(agent_key(), lambda o: o["spec"].pop("template"))
    await durableagent.reconcile(ops, body)
    assert kube.kinds("apply") == ["ConfigMap", "Deployment", "Service"]
    assert conditions(kube)["Degraded"] == ("False", "AsExpected")
    recovered = [e for e in kube.events if e["type"] == "Normal"]
    assert {e["reason"] for e in recovered} >= {"AsExpected"}


async def test_a_missing_temporal_connection_is_retried_later_with_a_clear_condition(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    body = kube.put(agent_manifest(temporal={"connectionRef": {"name": "prod"}}))
    with pytest.raises(kopf.TemporaryError, match="TemporalConnection 'prod' does not exist") as raised:
        await durableagent.reconcile(ops, body)
    assert raised.value.delay == 15
    assert kube.count("apply") == 0
    assert conditions(kube)["Ready"] == ("False", "TemporalConnectionNotFound")


def put_foreign_service(kube: FakeKube) -> None:
    """The agent's metrics Service, already there and controlled by something else."""
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "hello-metrics",
                "namespace": "ns",
                "ownerReferences": [{"uid": "x", "kind": "HelmRelease", "name": "other", "controller": True}],
            },
        }
    )


async def test_an_object_owned_by_someone_else_is_not_taken_over(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    put_foreign_service(kube)
    with pytest.raises(kopf.TemporaryError, match="Service ns/hello-metrics already exists"):
        await durableagent.reconcile(ops, kube.put(agent_manifest()))
    # A new agent applies without reading first; what it made before meeting the Service is removed
    # again, so nothing is left half-built, and the Service is untouched.
    assert sorted(k.kind for k in kube.objects) == ["DurableAgent", "Service"]
    assert (
        kube.objects[ObjectKey("v1", "Service", "ns", "hello-metrics")]["metadata"]["ownerReferences"][0][
            "name"
        ]
        == "other"
    )
    assert conditions(kube)["Ready"] == ("False", "ObjectConflict")


async def test_a_new_agents_first_status_does_not_wait_for_temporal(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    assert reader.calls == []
    assert conditions(kube)["TemporalReachable"] == ("Unknown", "NotChecked")
    assert kube.events == []  # not checked yet is expected of a new agent, not news
    await durableagent.check_health(ops, kube.body(agent_key()))  # the timer's first tick reads it
    assert reader.calls == [["ns.hello"]]
    assert conditions(kube)["TemporalReachable"] == ("True", "Connected")


async def test_a_health_tick_racing_the_first_reconcile_leaves_its_conflict_in_status(
    kube: FakeKube, clock: Clock
) -> None:
    # kopf starts an agent's timer when the agent appears: its first tick holds a body with no status
    # yet, and its write (after a slow Temporal read) used to replace the ObjectConflict reconcile reported.
    ops = make_operator(kube, clock=clock)
    put_foreign_service(kube)
    fresh = kube.put(agent_manifest())
    with pytest.raises(kopf.TemporaryError):
        await durableagent.reconcile(ops, fresh)
    await durableagent.check_health(ops, fresh)  # the stale body of the tick that raced it
    assert conditions(kube)["Ready"] == ("False", "ObjectConflict")


async def test_a_new_agent_is_applied_without_reading_its_objects_first(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    assert kube.count("get") == 0
    assert kube.kinds("apply") == ["ConfigMap", "Deployment", "Service"]  # one replica: no PDB
    kube.calls.clear()
    await durableagent.reconcile(ops, kube.body(agent_key()))  # reconciled before: it reads
    assert (kube.count("get"), kube.count("apply")) == (4, 0)


async def test_a_forbidden_api_call_becomes_a_delayed_retry_naming_rbac(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    kube.denied.add(("apply", "Deployment"))
    with pytest.raises(kopf.TemporaryError, match="forbidden") as raised:
        await durableagent.reconcile(ops, kube.put(agent_manifest()))
    assert raised.value.delay == 120


async def test_in_a_namespace_being_deleted_the_operator_stops_writing_after_the_first_refusal(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    kube.terminating.add("ns")
    # Two replicas need a new PodDisruptionBudget, which the namespace refuses: no retry, no failure status.
    body = kube.edit(agent_key(), lambda o: o["spec"].update(replicas=2))
    await durableagent.reconcile(ops, body)
    assert PDB not in kube.objects
    assert "InvalidSpec" not in json.dumps(kube.objects[agent_key()].get("status"))
    kube.calls.clear()
    clock.advance(60)
    await durableagent.check_health(ops, kube.body(agent_key()))
    await durableagent.reconcile(ops, kube.body(agent_key()))
    assert kube.calls == []


async def test_an_agent_created_after_the_refusal_is_in_a_new_namespace_of_that_name(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    ops.terminating.note("ns", clock.wall())
    clock.advance(30)
    manifest = agent_manifest()
    manifest["metadata"]["creationTimestamp"] = clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
    await durableagent.reconcile(ops, kube.put(manifest))
    assert kube.kinds("apply") == ["ConfigMap", "Deployment", "Service"]


async def test_a_deleted_agent_gets_nothing_applied(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    kube.calls.clear()
    body = kube.edit(agent_key(), lambda o: o["spec"].update(replicas=5))
    body["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    await durableagent.reconcile(ops, body)
    await durableagent.check_health(ops, body)
    assert kube.calls == []


async def test_health_timer_writes_workers_backlog_runs_and_ready(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    status = kube.objects[agent_key()]["status"]
    assert status["workers"] == 1
    assert status["backlog"] == {"count": 2, "ageSeconds": 1.5}
    assert status["runs"] == {"running": 1, "completed": 5, "failed": 1}
    assert status["lastHealthCheck"] == "2026-11-26T12:00:00Z"
    assert status["readyReplicas"] == 1
    assert conditions(kube)["Ready"] == ("True", "AllWorkersPolling")
    assert conditions(kube)["TemporalReachable"] == ("True", "Connected")
    assert {(e["type"], e["reason"]) for e in kube.events} >= {("Normal", "AllWorkersPolling")}


async def test_temporal_down_degrades_the_agent_without_raising_and_keeps_the_last_numbers(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    reader.down = "cannot read Temporal (UNAVAILABLE: connection refused)"
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    # One failed read is not an outage (a slow server under a burst): the last reading stands, no Event.
    assert conditions(kube)["TemporalReachable"] == ("True", "Connected")
    assert not [e for e in kube.events if e["type"] == "Warning"]
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    # The second in a row is.
    assert conditions(kube)["Degraded"] == ("True", "TemporalUnreachable")
    assert conditions(kube)["TemporalReachable"] == ("False", "TemporalUnreachable")
    assert kube.objects[agent_key()]["status"]["workers"] == 1
    warnings = [e for e in kube.events if e["type"] == "Warning"]
    assert warnings and all("connection refused" in e["message"] for e in warnings)
    assert len(reader.calls) == 3  # one read per interval: the kept reading was not re-read early


async def test_a_failure_after_a_reading_older_than_three_intervals_is_shown_at_once(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    reader.down = "cannot read Temporal (UNAVAILABLE: connection refused)"
    clock.advance(31)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert conditions(kube)["TemporalReachable"] == ("False", "TemporalUnreachable")


async def test_throttled_reads_keep_the_last_reading_for_three_intervals_saying_so_then_show_the_limit(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    refused = "Temporal refused the health read on each of 5 tries (RESOURCE_EXHAUSTED: namespace rate limit)"
    reader.down, reader.throttled = refused, True
    for _ in range(2):  # 10 s and 20 s after the last reading: a busy server, not a broken one
        clock.advance(10)
        await durableagent.check_health(ops, kube.body(agent_key()))
        assert conditions(kube)["TemporalReachable"] == ("True", "Connected")
        assert conditions(kube)["Degraded"] == ("False", "AsExpected")
        assert kube.objects[agent_key()]["status"]["workers"] == 1
        # Not silently stale: the condition says the counts are from the read before, and why.
        message = condition_message(kube, "TemporalReachable")
        assert "the one before is shown" in message and "RESOURCE_EXHAUSTED" in message, message
    assert not [e for e in kube.events if e["type"] == "Warning"]
    clock.advance(10)  # 30 s: the kept reading is too old to stand for the queue
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert conditions(kube)["TemporalReachable"] == ("False", "TemporalUnreachable")
    assert "RESOURCE_EXHAUSTED" in condition_message(kube, "TemporalReachable")
    warnings = [e for e in kube.events if e["type"] == "Warning"]
    assert warnings and all("RESOURCE_EXHAUSTED" in e["message"] for e in warnings)
    # One good read clears the note.
    reader.down, reader.throttled = None, False
    clock.advance(10)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert conditions(kube)["TemporalReachable"] == ("True", "Connected")
    assert "failed" not in condition_message(kube, "TemporalReachable")


async def test_a_slow_temporal_is_cut_off_by_the_timeout(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    reader.delay = 5
    ops = make_operator(kube, clock=clock, reader=reader, temporal_timeout=0.05)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert conditions(kube)["TemporalReachable"] == ("False", "TemporalUnreachable")


def test_a_batched_read_may_take_one_timeout_per_wave_of_calls_not_one_for_all_agents(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock, temporal_timeout=5)
    # 3 calls per queue, 8 at a time: one agent is one wave; 500 agents are 188 waves.
    assert ops.health.deadline(1) == 5
    assert ops.health.deadline(500) == 5 * 188


async def test_no_pollers_on_ready_pods_is_degraded_with_a_hint(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    reader.workers["ns.hello"] = 0
    ops = make_operator(kube, clock=clock, reader=reader)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert conditions(kube)["Ready"] == ("False", "NoActivePollers")
    assert conditions(kube)["Degraded"] == ("True", "NoActivePollers")


async def test_an_unchanged_reading_is_not_rewritten_every_interval(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    kube.calls.clear()
    for _ in range(5):
        clock.advance(10)
        await durableagent.check_health(ops, kube.body(agent_key()))
    assert kube.count("patch_status") == 0
    clock.advance(10)  # 60 s since the last write: lastHealthCheck is refreshed
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert kube.count("patch_status") == 1
    assert kube.objects[agent_key()]["status"]["lastHealthCheck"] == "2026-11-26T12:01:00Z"


async def test_health_of_many_agents_on_one_connection_is_one_read_per_interval(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    names = [f"agent-{i}" for i in range(20)]
    for name in names:
        await durableagent.reconcile(ops, kube.put(agent_manifest(name)))
    for name in names:  # the first interval makes every queue known
        await durableagent.check_health(ops, kube.body(agent_key(name)))
    reader.calls.clear()
    for _ in range(3):
        clock.advance(10)
        for name in names:
            await durableagent.check_health(ops, kube.body(agent_key(name)))
    assert len(reader.calls) == 3
    assert all(sorted(call) == sorted(f"ns.{n}" for n in names) for call in reader.calls)


async def test_an_operator_start_with_many_agents_costs_two_reads_not_one_per_agent(
    kube: FakeKube, clock: Clock
) -> None:
    reader = RecordingReader()
    reader.delay = 0.05
    ops = make_operator(kube, clock=clock, reader=reader)
    bodies = [kube.put(agent_manifest(f"agent-{i}")) for i in range(50)]
    # kopf resumes every agent at once, then their health timers fire.
    await asyncio.gather(*(durableagent.reconcile(ops, body) for body in bodies))
    await asyncio.gather(
        *(durableagent.check_health(ops, kube.body(agent_key(f"agent-{i}"))) for i in range(50))
    )
    assert [len(call) for call in reader.calls] == [1, 49]  # the first agent's queue was just read
    assert all(kube.objects[agent_key(f"agent-{i}")]["status"]["workers"] == 1 for i in range(50))


async def test_agents_created_one_after_another_have_each_queue_read_once_not_with_every_newcomer(
    kube: FakeKube, clock: Clock
) -> None:
    # 2,000 agents arriving over minutes: each newcomer's read re-read every queue known so far, and the
    # quadratic load made Temporal time out (spurious TemporalUnreachable in the burst).
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    for i in range(30):  # each new agent: reconcile (which does not read), then its timer's first tick
        await durableagent.reconcile(ops, kube.put(agent_manifest(f"agent-{i}")))
        await durableagent.check_health(ops, kube.body(agent_key(f"agent-{i}")))
        clock.advance(0.1)
    read = [queue for call in reader.calls for queue in call]
    assert sorted(read) == sorted(f"ns.agent-{i}" for i in range(30))
    reader.calls.clear()
    clock.advance(10)  # the next interval reads them all again, in one read
    for i in range(30):
        await durableagent.check_health(ops, kube.body(agent_key(f"agent-{i}")))
    assert [len(call) for call in reader.calls] == [30]


async def test_concurrent_timers_share_one_inflight_read(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    reader.delay = 0.05
    ops = make_operator(kube, clock=clock, reader=reader)
    names = [f"agent-{i}" for i in range(10)]
    for name in names:
        await durableagent.reconcile(ops, kube.put(agent_manifest(name)))
    for name in names:  # a first read makes every queue known
        await durableagent.check_health(ops, kube.body(agent_key(name)))
    reader.calls.clear()
    clock.advance(10)
    await asyncio.gather(*(durableagent.check_health(ops, kube.body(agent_key(n))) for n in names))
    assert len(reader.calls) == 1


async def test_agents_on_different_connections_are_read_separately(kube: FakeKube, clock: Clock) -> None:
    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    kube.put(connection_manifest("other", "other:7233"))
    await durableagent.reconcile(ops, kube.put(agent_manifest("a")))
    await durableagent.reconcile(
        ops, kube.put(agent_manifest("b", temporal={"connectionRef": {"name": "other"}}))
    )
    for _ in range(2):
        for name in ("a", "b"):
            await durableagent.check_health(ops, kube.body(agent_key(name)))
        clock.advance(10)
    assert sorted(map(tuple, reader.calls)) == [("ns.a",), ("ns.a",), ("ns.b",), ("ns.b",)]


async def test_health_timer_costs_one_api_read_per_agent_per_interval(kube: FakeKube, clock: Clock) -> None:
    kube.put(connection_manifest("prod", "prod:7233"))
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest(temporal={"connectionRef": {"name": "prod"}})))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    kube.calls.clear()
    clock.advance(5)  # within the connection cache's interval
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert kube.calls == [("get", "Deployment ns/hello-worker")]


async def test_changing_a_temporal_connection_reconciles_the_agents_that_use_it(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    kube.put(connection_manifest("prod", "prod:7233"))
    await durableagent.reconcile(
        ops, kube.put(agent_manifest("uses", temporal={"connectionRef": {"name": "prod"}}))
    )
    await durableagent.reconcile(ops, kube.put(agent_manifest("other")))
    kube.calls.clear()
    connection_key = ObjectKey(API, "TemporalConnection", "ns", "prod")
    connection = kube.edit(connection_key, lambda o: o["spec"].update(address="prod-new:7233"))
    await temporalconnection.spec_changed(ops, connection)
    assert kube.kinds("apply") == ["ConfigMap", "Deployment"]
    runtime = json.loads(
        kube.objects[ObjectKey("v1", "ConfigMap", "ns", "uses-runtime")]["data"]["runtime.json"]
    )
    assert runtime["temporal"]["address"] == "prod-new:7233"


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected (the API server would silently prune them)."""
    result = dict(schema)
    if "properties" in result and not result.get("x-kubernetes-preserve-unknown-fields"):
        result["properties"] = {k: closed(v) for k, v in result["properties"].items()}
        result["additionalProperties"] = False
    if isinstance(result.get("items"), dict):
        result["items"] = closed(result["items"])
    return result


def status_schema_errors(status: dict[str, Any]) -> list[str]:
    """Validate a status against the generated CRD's schema: unknown fields would be lost."""
    import jsonschema

    from durable_agents_operator import crd

    schema = crd.render_crd(crd.DURABLE_AGENT)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(closed(schema["properties"]["status"]))
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(status)]


async def test_the_status_written_fits_the_crd_schema(kube: FakeKube, clock: Clock) -> None:
    ops = make_operator(kube, clock=clock)
    await durableagent.reconcile(ops, kube.put(agent_manifest()))
    roll_out(kube)
    await durableagent.check_health(ops, kube.body(agent_key()))
    assert status_schema_errors(kube.objects[agent_key()]["status"]) == []


async def test_temporal_lost_by_hundreds_of_agents_at_once_records_events_within_the_operators_budget(
    kube: FakeKube, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    from durable_agents_operator.event_budget import TOTAL_BURST

    reader = RecordingReader()
    ops = make_operator(kube, clock=clock, reader=reader)
    names = [f"agent-{i}" for i in range(300)]
    for name in names:
        await durableagent.reconcile(ops, kube.put(agent_manifest(name)))
        roll_out(kube, name)
        await durableagent.check_health(ops, kube.body(agent_key(name)))
    clock.advance(3600)  # the burst of creating them (itself over the budget) is long forgotten
    await durableagent.check_health(ops, kube.body(agent_key(names[0])))  # its left-out line is logged
    before = len(kube.events)
    caplog.clear()
    reader.down = "cannot read Temporal (UNAVAILABLE: connection refused)"
    clock.advance(10)
    with caplog.at_level("WARNING", logger="durable_agents_operator.handlers.reporting"):
        for name in names:
            await durableagent.check_health(ops, kube.body(agent_key(name)))
        burst = len(kube.events) - before
        clock.advance(61)
        await durableagent.check_health(ops, kube.body(agent_key(names[0])))  # the next tick says it

    # Every agent says it in status; the apiserver got at most the operator-wide burst of Events.
    assert all(conditions(kube, agent_key(n))["Degraded"] == ("True", "TemporalUnreachable") for n in names)
    assert burst == TOTAL_BURST
    lines = [r.getMessage() for r in caplog.records]
    left_out = [line for line in lines if "over the operator's Event budget" in line]
    assert len(left_out) == 1, left_out
    assert left_out[0].startswith("left out ") and "in the last 61s" in left_out[0]
    assert "TemporalUnreachable x" in left_out[0]


async def test_a_timer_queued_behind_a_read_longer_than_three_intervals_still_gets_its_queue_read(
    kube: FakeKube, clock: Clock
) -> None:
    # 2,000 agents on a loaded machine: the first batched read took minutes, and the timers queued behind
    # it lost their queues from the follow-up read (KeyError in every such timer).
    from durable_agents_operator.connection_params import ConnectionParams

    gate = asyncio.Event()
    reader = RecordingReader()

    async def slow_first(client: Any, queues: Any, previous: Any) -> Any:
        if not reader.calls:
            reader.calls.append(list(queues))
            await gate.wait()
            return {q: (await reader(client, [q], previous))[q] for q in queues}
        return await reader(client, queues, previous)

    ops = make_operator(kube, clock=clock, reader=slow_first)
    params = ConnectionParams(address="127.0.0.1:7233", namespace="default")
    first = asyncio.create_task(ops.health.read(params, "ns.a"))
    await asyncio.sleep(0)
    queued = asyncio.create_task(ops.health.read(params, "ns.b"))
    await asyncio.sleep(0)
    clock.advance(40)  # more than three 10 s intervals pass while the first read runs
    gate.set()

    healths = await asyncio.wait_for(asyncio.gather(first, queued), 5)
    assert [h.task_queue for h in healths] == ["ns.a", "ns.b"]
    assert any("ns.b" in c for c in reader.calls[1:])  # the follow-up read asked for it
