"""Schedules on a real dev server: `spec.schedules` become Temporal Schedules that start the agent's
run workflow on a real worker process (the `schedule_agents:echo_agent` code agent echoes its prompt)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import RunOutput
from durable_agents_api.schedules import AgentSchedule
from durable_agents_runtime.errors import ScheduleNotFoundError
from durable_agents_runtime.schedules import (
    ScheduleOwner,
    delete_schedules,
    list_schedules,
    sync_schedules,
    trigger_schedule,
)

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
NEVER = "0 0 1 1 *"
"""Once a year: a schedule that fires only when triggered during a test."""


@pytest.fixture(scope="module")
def echo_queue(temporal_dev_server: Any, start_module_worker: Any) -> str:
    queue = f"echo-{uuid.uuid4().hex[:8]}"
    config = RuntimeConfig.model_validate(
        {
            "agent": {"name": "echo", "entrypoint": "schedule_agents:echo_agent"},
            "temporal": {
                "address": temporal_dev_server.address,
                "namespace": temporal_dev_server.namespace,
                "taskQueue": queue,
            },
        }
    )
    start_module_worker(config, PYTHONPATH=str(HERE))
    return queue


def owner(queue: str, **fields: Any) -> ScheduleOwner:
    return ScheduleOwner(namespace="ns", agent=f"agent-{uuid.uuid4().hex[:6]}", task_queue=queue, **fields)


def schedule(**fields: Any) -> AgentSchedule:
    return AgentSchedule.model_validate({"name": "nightly", "cron": [NEVER], "prompt": "hello", **fields})


async def output_of(client: Client, workflow_id: str) -> str:
    result = await asyncio.wait_for(
        client.get_workflow_handle(workflow_id, result_type=RunOutput).result(), 30
    )
    return result.output_text


async def first_run(client: Client, agent: ScheduleOwner, name: str, *, after: int = 0) -> str:
    """The workflow id of the schedule's first run after `after` runs, waiting up to 15s for it."""
    for _ in range(150):
        [seen] = [s for s in await list_schedules(client, agent.namespace, agent.agent) if s.name == name]
        if seen.runs > after and seen.last_run_id:
            return seen.last_run_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"schedule {name} started no run")


async def test_a_schedule_fires_on_its_interval_with_its_prompt_then_updates_and_is_deleted(
    temporal_client: Client, echo_queue: str
) -> None:
    agent = owner(echo_queue)
    every = schedule(cron=[], intervals=[{"every": "1s"}], prompt="first prompt")

    created = await sync_schedules(temporal_client, agent, [every])
    assert created.plan.create == (agent.id_of("nightly"),)
    [seen] = created.schedules
    assert seen.next_run_time is not None and seen.next_run_time > datetime.now(UTC).replace(microsecond=0)
    run = await first_run(temporal_client, agent, "nightly")
    assert run.startswith(agent.id_of("nightly"))
    assert await output_of(temporal_client, run) == "echo: first prompt"

    again = await sync_schedules(temporal_client, agent, [every])
    assert again.plan.empty, "an unchanged spec writes nothing"

    changed = await sync_schedules(temporal_client, agent, [every.model_copy(update={"prompt": "second"})])
    assert changed.plan.update == (agent.id_of("nightly"),)
    # A run due when the update landed may still carry the old prompt; the one after it cannot.
    latest = await first_run(temporal_client, agent, "nightly", after=changed.schedules[0].runs + 1)
    assert await output_of(temporal_client, latest) == "echo: second"

    removed = await sync_schedules(temporal_client, agent, [])
    assert removed.plan.delete == (agent.id_of("nightly"),)
    with pytest.raises(ScheduleNotFoundError):
        await trigger_schedule(temporal_client, agent.namespace, agent.agent, "nightly")


async def test_trigger_runs_a_schedule_now_and_the_listing_shows_it(
    temporal_client: Client, echo_queue: str
) -> None:
    agent = owner(echo_queue)
    await sync_schedules(temporal_client, agent, [schedule(prompt="on demand", timeZone="Europe/Paris")])

    run = await trigger_schedule(temporal_client, agent.namespace, agent.agent, "nightly")

    assert run is not None and await output_of(temporal_client, run) == "echo: on demand"
    [listed] = await list_schedules(temporal_client, agent.namespace, agent.agent)
    assert (listed.name, listed.last_run_id, listed.last_run_phase) == ("nightly", run, "Succeeded")
    assert listed.next_run_time is not None and listed.next_run_time.month == 12  # 1 Jan 00:00 Paris, in UTC
    assert await delete_schedules(temporal_client, agent) == (agent.id_of("nightly"),)


@pytest.mark.parametrize(("overlap", "second_starts"), [("skip", False), ("allowAll", True)])
async def test_the_overlap_policy_decides_whether_a_run_starts_while_the_previous_runs(
    temporal_client: Client, echo_queue: str, overlap: str, second_starts: bool
) -> None:
    agent = owner(echo_queue)
    await sync_schedules(temporal_client, agent, [schedule(prompt="sleep 3", overlap=overlap)])

    first = await trigger_schedule(temporal_client, agent.namespace, agent.agent, "nightly")
    await asyncio.sleep(1.1)  # run ids carry the start time to the second: two in one second are one id
    second = await trigger_schedule(temporal_client, agent.namespace, agent.agent, "nightly", wait=1.5)

    assert first is not None
    [seen] = await list_schedules(temporal_client, agent.namespace, agent.agent)
    if second_starts:
        assert second is not None and second != first
        assert (seen.runs, seen.skipped) == (2, 0)
    else:
        assert second is None
        assert (seen.runs, seen.skipped, seen.last_run_phase) == (1, 1, "Running")
    await delete_schedules(temporal_client, agent)


async def test_paused_schedules_and_paused_agents_pause_the_temporal_schedule(
    temporal_client: Client, echo_queue: str
) -> None:
    agent = owner(echo_queue)
    result = await sync_schedules(temporal_client, agent, [schedule(paused=True), schedule(name="other")])
    assert [(s.name, s.paused) for s in result.schedules] == [("nightly", True), ("other", False)]

    paused_agent = ScheduleOwner(agent.namespace, agent.agent, agent.task_queue, paused=True)
    both = [schedule(paused=True), schedule(name="other")]
    result = await sync_schedules(temporal_client, paused_agent, both)
    assert result.plan.update == (agent.id_of("nightly"), agent.id_of("other"))
    assert [s.paused for s in result.schedules] == [True, True]
    await delete_schedules(temporal_client, agent)


async def test_a_schedule_temporal_refuses_is_reported_by_name_and_the_others_still_sync(
    temporal_client: Client, echo_queue: str
) -> None:
    agent = owner(echo_queue)
    # Past the model's own checks, as from a client that skipped them: Temporal's refusal is named too.
    bad = AgentSchedule.model_construct(**{**schedule().__dict__, "name": "broken", "time_zone": "Mars/Base"})

    result = await sync_schedules(temporal_client, agent, [bad, schedule(name="fine")])

    assert set(result.rejected) == {"broken"} and "unknown time zone Mars/Base" in result.rejected["broken"]
    assert [(s.name, s.message is None) for s in result.schedules] == [("broken", False), ("fine", True)]
    assert [s.name for s in await list_schedules(temporal_client, agent.namespace, agent.agent)] == ["fine"]
    await delete_schedules(temporal_client, agent)
