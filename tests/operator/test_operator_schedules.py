"""The schedules handlers on a real dev server: a DurableAgent's `spec.schedules` become Temporal
Schedules, its status shows their next runs, and they go away when removed or when the agent is deleted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from operator_support import (
    Clock,
    DevServer,
    FakeKube,
    agent_key,
    agent_manifest,
    make_operator,
    make_real_operator,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_operator.handlers import schedules
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.temporal_clients import TemporalPool
from durable_agents_runtime.devserver import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.runtime]

NIGHTLY = {"name": "nightly", "cron": ["0 3 * * *"], "timeZone": "Europe/Paris", "prompt": "Summarise."}


@pytest.fixture
async def client(dev_server: DevServer) -> AsyncIterator[Client]:
    yield await Client.connect(dev_server.address, namespace=dev_server.namespace)


def operator(kube: FakeKube, clock: Clock, dev_server: DevServer) -> Operator:
    """An operator on the real dev server, with timeouts that a loaded test machine cannot hit."""
    pool = TemporalPool(timeout=30)
    return make_operator(
        kube, clock=clock, temporal=pool, temporal_address=dev_server.address, temporal_timeout=30
    )


def agent(name: str, *items: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return agent_manifest(
        name, temporal={"taskQueue": f"{name}-{uuid.uuid4().hex[:6]}"}, schedules=list(items), **spec
    )


async def exists(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND
        return False
    return True


def conditions(kube: FakeKube, name: str) -> dict[str, tuple[str, str, str]]:
    status = kube.objects[agent_key(name)]["status"]
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


async def test_an_agent_with_a_schedule_gets_a_temporal_schedule_and_its_next_run_in_status(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    name = f"sched-{uuid.uuid4().hex[:6]}"
    ops = operator(kube, clock, dev_server)

    await schedules.reconcile(ops, kube.put(agent(name, NIGHTLY)))

    schedule_id = f"schedule:ns/{name}/nightly"
    described = await client.get_schedule_handle(schedule_id).describe()
    assert described.schedule.spec.time_zone_name == "Europe/Paris"
    status = kube.objects[agent_key(name)]["status"]
    [entry] = status["schedules"]
    assert (entry["name"], entry["scheduleId"], entry["paused"]) == ("nightly", schedule_id, False)
    assert entry["nextRunTime"] == status["nextScheduledRun"]
    assert entry["nextRunTime"].endswith(("02:00:00Z", "01:00:00Z"))  # 03:00 in Paris, winter or summer
    assert conditions(kube, name)["SchedulesSynced"][:2] == ("True", "Synced")

    # Paused with the agent; then removed from the spec: deleted in Temporal and gone from status.
    await schedules.reconcile(ops, kube.edit(agent_key(name), lambda o: o["spec"].update(paused=True)))
    assert kube.objects[agent_key(name)]["status"]["schedules"][0]["paused"] is True
    assert "nextScheduledRun" not in kube.objects[agent_key(name)]["status"]

    await schedules.reconcile(ops, kube.edit(agent_key(name), lambda o: o["spec"].pop("schedules")))
    assert not await exists(client, schedule_id)
    status = kube.objects[agent_key(name)]["status"]
    assert "schedules" not in status and "SchedulesSynced" not in conditions(kube, name)
    assert schedules.wanted(kube.objects[agent_key(name)]["spec"], status) is False  # finalizer released


async def test_deleting_the_agent_deletes_its_schedules_and_the_timer_repairs_drift(
    kube: FakeKube, clock: Clock, dev_server: DevServer, client: Client
) -> None:
    name = f"sched-{uuid.uuid4().hex[:6]}"
    ops = operator(kube, clock, dev_server)
    body = kube.put(agent(name, NIGHTLY, {"name": "hourly", "intervals": [{"every": "1h"}], "prompt": "x"}))
    await schedules.reconcile(ops, body)
    ids = [f"schedule:ns/{name}/nightly", f"schedule:ns/{name}/hourly"]

    await client.get_schedule_handle(ids[1]).delete()  # behind the operator's back
    await schedules.refresh(ops, kube.body(agent_key(name)))
    assert await exists(client, ids[1])

    deleting = kube.body(agent_key(name))
    deleting["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    await schedules.delete(ops, deleting, retry=0)
    assert [await exists(client, i) for i in ids] == [False, False]


async def test_temporal_unreachable_is_a_condition_and_a_bounded_retry_never_a_crash(
    kube: FakeKube, clock: Clock
) -> None:
    name = f"sched-{uuid.uuid4().hex[:6]}"
    ops = make_real_operator(kube, clock=clock, temporal_address=f"127.0.0.1:{free_port()}")
    body = kube.put(agent(name, NIGHTLY))

    with pytest.raises(kopf.TemporaryError):
        await schedules.reconcile(ops, body)
    await schedules.refresh(ops, kube.body(agent_key(name)))  # the timer reports, never raises

    status, reason, message = conditions(kube, name)["SchedulesSynced"]
    assert (status, reason) == ("False", "TemporalUnreachable") and "Temporal" in message
    assert [e["reason"] for e in kube.events] == ["TemporalUnreachable"]
    assert kube.events[0]["type"] == "Warning"
    # Deleting the agent meanwhile: a few attempts, then it is let go with a Warning saying what is left.
    deleting = kube.body(agent_key(name))
    with pytest.raises(kopf.TemporaryError):
        await schedules.delete(ops, deleting, retry=0)
    await schedules.delete(ops, deleting, retry=schedules.DELETE_ATTEMPTS - 1)
    assert kube.events[-1]["reason"] == "ScheduleDeleteFailed"
    assert f"schedule:ns/{name}/" in kube.events[-1]["message"]


async def test_deleting_an_agent_whose_connection_is_gone_lets_it_go_at_once_with_a_warning(
    kube: FakeKube, clock: Clock, dev_server: DevServer
) -> None:
    name = f"sched-{uuid.uuid4().hex[:6]}"
    ops = operator(kube, clock, dev_server)
    manifest = agent(name, NIGHTLY)
    manifest["spec"]["temporal"]["connectionRef"] = {"name": "deleted-first"}
    body = kube.put(manifest)
    body["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"

    await schedules.delete(ops, body, retry=0)  # no TemporaryError: nothing to retry against

    assert [e["reason"] for e in kube.events] == ["ScheduleDeleteFailed"]
    assert "TemporalConnection 'deleted-first' does not exist" in kube.events[0]["message"]
