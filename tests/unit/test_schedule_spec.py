"""`spec.schedules`: what the model and the CRD accept, the Temporal Schedule built from a schedule, the
sync plan, and the schedule part of the status. No I/O (tests/runtime and tests/operator use a server)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import cel
import pytest
from pydantic import ValidationError
from temporalio.client import ScheduleOverlapPolicy

from durable_agents_api.config import TemporalSpec
from durable_agents_api.contract import WORKFLOW_NAME, RunInput
from durable_agents_api.errors import format_validation
from durable_agents_api.resources import DurableAgent
from durable_agents_api.schedules import MEMO_SPEC_HASH, AgentSchedule, check_cron, schedule_id
from durable_agents_operator import crd
from durable_agents_operator.builders import WorkerTemporal
from durable_agents_operator.builders.agent_objects import build_agent_objects
from durable_agents_operator.schedule_status import SCHEDULES_SYNCED, ScheduleProblem, schedules_status
from durable_agents_runtime.schedules import (
    ScheduleObservation,
    ScheduleOwner,
    build_schedule,
    plan_schedules,
    spec_hash,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def agent(*schedules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "durable-agents.dev/v1alpha1",
        "kind": "DurableAgent",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "u1"},
        "spec": {"agent": {"name": "hello", "model": "test"}, **spec},
    }
    if schedules:
        body["spec"]["schedules"] = list(schedules)
    return body


def errors_of(*schedules: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        DurableAgent.model_validate(agent(*schedules))
    return format_validation(refused.value)


def item(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly", "cron": ["0 3 * * *"], "prompt": "Summarise.", **fields}


# --- the model ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["0 9 * * MON-FRI", "*/15 * * * *", "0 0 1 jan,jul *", "30 8 1-7 * sun", "0 0 * * 7", "@daily",
     "0 12 * * * 2027", "15 0 12 * * * *", "0-59/5 0-23 1-31 1-12 0-6"],
)  # fmt: skip
def test_cron_expressions_temporal_accepts_pass(expression: str) -> None:
    assert check_cron(expression) == expression


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("61 * * * *", "minute '61' is not in range [0-59]"),
        ("0 24 * * *", "hour '24' is not in range [0-23]"),
        ("0 9 * * Funday", "day-of-week 'Funday'"),
        ("0 9 32 * *", "day-of-month '32'"),
        ("0 9 * 13 *", "month '13'"),
        ("0 9 * * 5-1", "ends before it starts"),
        ("*/0 * * * *", "invalid step '0'"),
        ("0 9 * *", "has 4 field(s): write 5"),
        ("@every 1h", "intervals: [{every: 1h}]"),
        ("TZ=Europe/Paris 0 9 * * *", "timeZone"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_the_field_and_the_part(expression: str, said: str) -> None:
    message = errors_of(item(cron=["@hourly", expression]))
    assert "spec.schedules[0].cron[1]:" in message and said in message


def test_an_unknown_time_zone_is_refused_naming_the_field() -> None:
    message = errors_of(item(timeZone="Mars/Olympus_Mons"))
    assert "spec.schedules[0].timeZone: unknown time zone 'Mars/Olympus_Mons'" in message
    assert DurableAgent.model_validate(agent(item(timeZone="America/Argentina/Buenos_Aires")))


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"cron": []}, "spec.schedules[0].cron: a schedule needs `cron` or `intervals`"),
        ({"intervals": [{"every": "ten minutes"}]}, "spec.schedules[0].intervals[0].every: invalid duration"),
        (
            {"intervals": [{"every": "1h", "offset": "1h"}]},
            "intervals[0].offset: must be shorter than `every`",
        ),
        ({"catchupWindow": "5s"}, "spec.schedules[0].catchupWindow: must be at least 10s"),
        ({"overlap": "queue"}, "spec.schedules[0].overlap: Input should be 'skip'"),
        ({"name": "Nightly Run"}, "spec.schedules[0].name:"),
        ({"prompt": ""}, "spec.schedules[0].prompt:"),
    ],
)
def test_bad_schedule_fields_are_refused_naming_the_field(fields: dict[str, Any], said: str) -> None:
    assert said in errors_of(item(**fields))


def test_two_schedules_of_one_name_are_refused() -> None:
    assert "spec.schedules: two schedules are named 'nightly'" in errors_of(item(), item(prompt="again"))


def test_schedules_do_not_change_the_worker_config_so_adding_one_does_not_roll_the_workers() -> None:
    temporal = WorkerTemporal(TemporalSpec(address="t:7233", namespace="default", task_queue="q"))
    plain, scheduled = (DurableAgent.model_validate(a) for a in (agent(), agent(item())))
    hashes = {
        build_agent_objects(a, temporal=temporal, default_image="img").config_hash for a in (plain, scheduled)
    }
    assert len(hashes) == 1
    assert "schedules" not in plain.spec.to_api()


# --- the CRD agrees with the model ----------------------------------------------------------------------


def schedule_schema() -> dict[str, Any]:
    [kind] = [k for k in crd.KINDS if k.kind == "DurableAgent"]
    root = crd.render_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root["properties"]["spec"]["properties"]["schedules"]


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("cron", "0 9 * * MON-FRI", True),
        ("cron", "@weekly", True),
        ("cron", "every day at nine", False),
        ("cron", "0 9 * *", False),
        ("cron", "0 9 * * * * * *", False),
        ("cron", "61 * * * *", False),
        ("cron", "0 24 * * *", False),
        ("cron", "0 9 * * 8", False),
        ("cron", "0 0 1 jan,jul *", True),
        ("cron", "15 0 12 * * * 2027", True),
        ("timeZone", "Europe/Paris", True),
        ("timeZone", "Etc/GMT+2", True),
        ("timeZone", "Europe Paris", False),
        ("timeZone", "+02:00", False),
    ],
)
def test_the_crd_pattern_refuses_a_cron_out_of_range_or_a_time_zone_of_the_wrong_shape(
    field: str, value: str, accepted: bool
) -> None:
    node = schedule_schema()["items"]["properties"][field]
    pattern = (node["items"] if field == "cron" else node)["pattern"]
    assert bool(re.match(pattern, value)) is accepted


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"cron": ["@daily"]}, None),
        ({"intervals": [{"every": "1h"}]}, None),
        ({"cron": []}, "needs `cron` or `intervals`"),
        ({}, "needs `cron` or `intervals`"),
        ({"cron": ["@daily"], "catchupWindow": "5s"}, "catchupWindow"),
        ({"cron": ["@daily"], "catchupWindow": "1m"}, None),
    ],
)
def test_the_crd_rules_refuse_what_the_model_refuses(fields: dict[str, Any], refused: str | None) -> None:
    rules = schedule_schema()["items"]["x-kubernetes-validations"]
    schedule = {"name": "n", "prompt": "p", **fields}
    messages = [r["message"] for r in rules if cel.evaluate(r["rule"], {"self": schedule}) is not True]
    assert (refused is None) == (not messages) and all(refused in m for m in messages)
    model_ok = True
    try:
        AgentSchedule.model_validate(schedule)
    except ValidationError:
        model_ok = False
    assert model_ok is (refused is None)


def test_the_crd_refuses_an_offset_as_long_as_the_interval() -> None:
    [rule] = schedule_schema()["items"]["properties"]["intervals"]["items"]["x-kubernetes-validations"]
    assert cel.evaluate(rule["rule"], {"self": {"every": "1h", "offset": "30m"}}) is True
    assert cel.evaluate(rule["rule"], {"self": {"every": "1h", "offset": "60m"}}) is False


# --- the Temporal Schedule ------------------------------------------------------------------------------

OWNER = ScheduleOwner(namespace="ns", agent="hello", task_queue="ns.hello")


def test_a_schedule_starts_the_agents_run_workflow_with_its_prompt_on_its_task_queue() -> None:
    schedule = AgentSchedule.model_validate(
        item(deps={"user": "ada"}, model="test", overlap="bufferOne", catchupWindow="10m", timeout="5m",
             intervals=[{"every": "1h", "offset": "5m"}], timeZone="Europe/Paris")
    )  # fmt: skip
    built = build_schedule(schedule, OWNER)
    action = built.action
    assert (action.workflow, action.id, action.task_queue) == (  # type: ignore[attr-defined]
        WORKFLOW_NAME,
        "schedule:ns/hello/nightly",
        "ns.hello",
    )
    [args] = action.args  # type: ignore[attr-defined]
    assert RunInput.model_validate(args) == RunInput(prompt="Summarise.", deps={"user": "ada"}, model="test")
    assert action.execution_timeout == timedelta(minutes=5)  # type: ignore[attr-defined]
    assert action.memo[MEMO_SPEC_HASH] == spec_hash(schedule, OWNER)  # type: ignore[attr-defined]
    assert built.spec.cron_expressions == ["0 3 * * *"] and built.spec.time_zone_name == "Europe/Paris"
    assert [(i.every, i.offset) for i in built.spec.intervals] == [(timedelta(hours=1), timedelta(minutes=5))]
    assert built.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    assert built.policy.catchup_window == timedelta(minutes=10)
    assert built.state.paused is False
    json.dumps(action.args)  # a plain JSON value, readable by any converter  # type: ignore[attr-defined]


def test_a_paused_agent_pauses_its_schedules_and_says_why() -> None:
    paused = ScheduleOwner(namespace="ns", agent="hello", task_queue="ns.hello", paused=True)
    schedule = AgentSchedule.model_validate(item())
    built = build_schedule(schedule, paused)
    assert built.state.paused is True and "spec.paused of the agent" in (built.state.note or "")
    assert spec_hash(schedule, paused) != spec_hash(schedule, OWNER)


def test_schedule_ids_name_the_namespace_agent_and_schedule() -> None:
    assert schedule_id("team-a", "support", "daily-digest") == "schedule:team-a/support/daily-digest"
    assert OWNER.id_of("x").startswith(OWNER.prefix)


@pytest.mark.parametrize(
    ("desired", "observed", "others", "plan"),
    [
        ({"a": "h1"}, {}, set(), (("a",), (), ())),
        ({"a": "h1"}, {"a": "h1"}, set(), ((), (), ())),
        ({"a": "h2"}, {"a": "h1"}, set(), ((), ("a",), ())),
        ({"a": "h1"}, {"a": None}, set(), ((), ("a",), ())),  # written by someone else: take it over
        ({}, {}, {"old", "older"}, ((), (), ("old", "older"))),
        ({"a": "h1", "b": "h1"}, {"b": "h1"}, {"a", "gone"}, (("a",), (), ("gone",))),
    ],
)
def test_the_plan_creates_the_missing_updates_the_changed_and_deletes_the_removed(
    desired: dict[str, str], observed: dict[str, str | None], others: set[str], plan: tuple[Any, ...]
) -> None:
    result = plan_schedules(desired, observed, others)
    assert (result.create, result.update, result.delete) == plan


# --- the status -----------------------------------------------------------------------------------------


def seen(name: str, next_run: datetime | None, *, paused: bool = False) -> ScheduleObservation:
    return ScheduleObservation(
        name=name, schedule_id=f"schedule:ns/hello/{name}", next_run_time=next_run, paused=paused
    )


def test_the_status_lists_each_schedule_and_the_earliest_next_run_of_those_not_paused() -> None:
    early, late = NOW + timedelta(hours=1), NOW + timedelta(hours=5)
    observed = [seen("a", late), seen("b", early, paused=True), seen("c", NOW + timedelta(hours=3))]
    update = schedules_status(observed, wanted=3, problem=None, previous={}, generation=2, now=NOW)
    assert [s["name"] for s in update.status["schedules"]] == ["a", "b", "c"]
    assert update.status["nextScheduledRun"] == "2026-12-02T15:00:00Z"
    [condition] = update.status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        SCHEDULES_SYNCED,
        "True",
        "Synced",
    )
    assert update.due and update.event is None  # synced from the start: nothing to announce


def test_a_failed_sync_keeps_the_schedules_last_seen_and_warns_once() -> None:
    previous = schedules_status([seen("a", NOW)], wanted=1, problem=None, previous={}, generation=1, now=NOW)
    before = {**previous.status, "conditions": [*previous.status["conditions"], {"type": "Ready",
              "status": "True", "reason": "AllWorkersPolling", "message": ""}]}  # fmt: skip
    down = ScheduleProblem.unreachable("could not describe schedule: connection refused")

    update = schedules_status(None, wanted=1, problem=down, previous=before, generation=1, now=NOW)
    assert "schedules" not in update.status
    types = {c["type"]: c["status"] for c in update.status["conditions"]}
    assert types == {SCHEDULES_SYNCED: "False", "Ready": "True"}  # the others' conditions are kept
    assert update.event is not None and update.event.warning and update.event.reason == "TemporalUnreachable"

    again = schedules_status(
        None, wanted=1, problem=down, previous={**before, **update.status}, generation=1, now=NOW
    )
    assert not again.due and again.event is None
    healed = schedules_status(
        [seen("a", NOW)], wanted=1, problem=None, previous={**before, **update.status}, generation=1, now=NOW
    )
    assert healed.event is not None and not healed.event.warning


def test_removing_every_schedule_clears_the_fields_and_the_condition() -> None:
    previous = schedules_status([seen("a", NOW)], wanted=1, problem=None, previous={}, generation=1, now=NOW)
    update = schedules_status([], wanted=0, problem=None, previous=previous.status, generation=2, now=NOW)
    assert update.status == {"schedules": None, "nextScheduledRun": None, "conditions": []}
