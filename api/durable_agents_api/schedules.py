"""Schedules of a DurableAgent: prompts Temporal runs on a cron expression or an interval.

A schedule is a list item of the agent (`spec.schedules`), not a resource of its own (`AgentSchedule`):
a schedule runs the agent's prompt on the agent's task queue and means nothing without it, so it lives and
dies with the agent — deleting the agent deletes its schedules, `durable-agents dev` reads them from the
same manifest, and the agent's status shows them next to its runs. A separate kind would need its own
reference to resolve, its own ordering problem (schedule before agent) and its own garbage collection, for
the one gain of separate RBAC, which nobody has asked for.

Each schedule becomes one Temporal Schedule (`schedule_id`), whose action starts the agent's run workflow
with a `RunInput` (the schedule's prompt, deps and model). The cron, time zone and duration checks here
run wherever a manifest is read (the operator, `dev`, the CLI); the CRD repeats the shape checks that
the apiserver can make (patterns), so most mistakes are refused at `kubectl apply`.

Pydantic and the standard library only (`zoneinfo` for time zones).
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from functools import cache
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, JsonValue, WithJsonSchema, model_validator

from durable_agents_api.config import Duration, Spec, field_error, format_duration

__all__ = [
    "CRON_PATTERN",
    "MEMO_AGENT",
    "MEMO_SCHEDULE",
    "MEMO_SPEC_HASH",
    "MIN_CATCHUP_WINDOW",
    "SCHEDULE_ID_PREFIX",
    "SCHEDULE_NAME_PATTERN",
    "TIME_ZONE_PATTERN",
    "AgentSchedule",
    "AgentScheduleStatus",
    "CronExpression",
    "OverlapPolicy",
    "ScheduleInterval",
    "ScheduleRunPhase",
    "Schedules",
    "TimeZone",
    "check_cron",
    "check_time_zone",
    "schedule_id",
    "schedule_id_prefix",
    "schedule_name_of",
]

SCHEDULE_ID_PREFIX = "schedule:"
"""Temporal Schedule ids are `schedule:<namespace>/<agent>/<schedule>`; scheduled runs get Temporal's
`-<scheduled time>` suffix on that id. Part of the contract: renaming orphans existing schedules."""
MEMO_SCHEDULE = "durableAgentsSchedule"
"""Memo key, on every scheduled run, holding the schedule's name."""
MEMO_AGENT = "durableAgentsAgent"
"""Memo key, on every scheduled run, holding `<namespace>/<agent>`."""
MEMO_SPEC_HASH = "durableAgentsScheduleHash"
"""Memo key holding the hash of the spec the schedule was written from: how a reconcile tells that the
Temporal Schedule already matches the manifest (the server rewrites cron strings into calendars, so the
schedule itself cannot be compared)."""

SCHEDULE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _cron_field(value: str) -> str:
    """A regex for one cron field: a comma list of `*` or `V` or `V-V`, each with an optional `/step`."""
    item = rf"(\*|({value})(-({value}))?)(/[0-9]+)?"
    return rf"{item}(,{item})*"


_SECOND = _MINUTE = _cron_field("[0-5]?[0-9]")
_HOUR = _cron_field("[01]?[0-9]|2[0-3]")
_DAY = _cron_field("0?[1-9]|[12][0-9]|3[01]")
_MONTH = _cron_field("0?[1-9]|1[0-2]|[A-Za-z]{3,9}")
_WEEKDAY = _cron_field("[0-7]|[A-Za-z]{2,9}")
_YEAR = _cron_field("20[0-9][0-9]|2100")
_FIVE = rf"{_MINUTE}[ \t]+{_HOUR}[ \t]+{_DAY}[ \t]+{_MONTH}[ \t]+{_WEEKDAY}"
# For the CRD: a cron expression of 5 fields (minute hour day-of-month month day-of-week), 6 (+ year) or
# 7 (second first, year last), each value within its range, or a predefined `@` spelling. Names are only
# checked for their length here, and ranges for their order by `check_cron`.
CRON_PATTERN = (
    rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    rf"|{_FIVE}|{_FIVE}[ \t]+{_YEAR}|{_SECOND}[ \t]+{_FIVE}[ \t]+{_YEAR})$"
)
# An IANA time zone name's shape (`UTC`, `Europe/Paris`, `America/Argentina/Buenos_Aires`, `Etc/GMT+2`).
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
MIN_CATCHUP_WINDOW = timedelta(seconds=10)
"""Temporal's smallest catch-up window."""

CRON_EXAMPLE = "'0 9 * * MON-FRI' (09:00 on weekdays)"
_CRON_FIELDS = {
    5: ("minute", "hour", "day-of-month", "month", "day-of-week"),
    6: ("minute", "hour", "day-of-month", "month", "day-of-week", "year"),
    7: ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"),
}
_CRON_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
    "year": (2000, 2100),
}
_PREDEFINED = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")  # fmt: skip
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_INT_RE = re.compile(r"^[0-9]+$")


def _cron_value(text: str, field: str) -> int | None:
    """The number `text` stands for in `field` (month and day names allowed), or None if it is none."""
    low = text.lower()
    if field == "month" and len(low) >= 3:
        names = [i for i, name in enumerate(_MONTHS, start=1) if name.startswith(low)]
        if names:
            return names[0]
    if field == "day-of-week" and len(low) >= 2:
        names = [i for i, name in enumerate(_DAYS) if name.startswith(low)]
        if names:
            return names[0]
    return int(text) if _INT_RE.match(text) else None


def _check_cron_part(part: str, field: str) -> str | None:
    """Why `part` (one comma-separated item of `field`) is invalid, or None."""
    low, high = _CRON_BOUNDS[field]
    base, slash, step = part.partition("/")
    if slash and not (_INT_RE.match(step) and int(step) >= 1):
        return f"{field} {part!r} has an invalid step {step!r} (a whole number >= 1)"
    if base == "*":
        return None
    first, dash, last = base.partition("-")
    start = _cron_value(first, field)
    if start is None or not low <= start <= high:
        return f"{field} {part!r} is not in range [{low}-{high}]"
    if dash:
        end = _cron_value(last, field)
        if end is None or not start <= end <= high:
            return f"{field} {part!r} ends before it starts or is not in range [{low}-{high}]"
    return None


def check_cron(expression: str) -> str:
    """`expression` if it is a cron expression Temporal accepts; else a ValueError saying what to change.

    5 fields (minute hour day-of-month month day-of-week), 6 (+ year) or 7 (second first, year last);
    each a comma list of `*`, `N`, `N-M`, with an optional `/step`; month and day names (`JAN`, `MON`);
    or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    """
    text = expression.strip()
    if text.startswith("@every"):
        raise ValueError(
            f"{expression!r}: write an interval as `intervals: [{{every: 1h}}]` rather than @every in a cron "
            "expression"
        )
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise ValueError(f"{expression!r}: set the schedule's timeZone instead of a TZ= prefix")
    if text in _PREDEFINED:
        return expression
    fields = text.split()
    names = _CRON_FIELDS.get(len(fields))
    if names is None:
        raise ValueError(
            f"{expression!r} has {len(fields)} field(s): write 5 (minute hour day-of-month month "
            f"day-of-week), e.g. {CRON_EXAMPLE}, or @hourly/@daily/@weekly/@monthly/@yearly"
        )
    for field, value in zip(names, fields, strict=True):
        for part in value.split(","):
            if (problem := _check_cron_part(part, field)) is not None:
                raise ValueError(f"{expression!r}: {problem}; e.g. {CRON_EXAMPLE}")
    return expression


@cache
def _zone_database_present() -> bool:
    return bool(zoneinfo.available_timezones())


def check_time_zone(name: str) -> str:
    """`name` if it is an IANA time zone; else a ValueError with examples.

    Without any time zone database on this machine every name is let through: Temporal checks it then.
    """
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if _zone_database_present():
            raise ValueError(
                f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
                "'America/New_York'"
            ) from None
    return name


CronExpression = Annotated[
    str,
    AfterValidator(check_cron),
    WithJsonSchema({"type": "string", "maxLength": 200, "pattern": CRON_PATTERN}),
]
"""A cron expression, checked field by field (see `check_cron`)."""

TimeZone = Annotated[
    str,
    AfterValidator(check_time_zone),
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": TIME_ZONE_PATTERN}),
]
"""An IANA time zone name, checked against the zone database."""

OverlapPolicy = Literal["skip", "bufferOne", "bufferAll", "allowAll", "cancelOther", "terminateOther"]
ScheduleRunPhase = Literal["Running", "Succeeded", "Failed"]


class ScheduleInterval(Spec):
    """Every `every`, counted from the Unix epoch, shifted by `offset`."""

    every: Duration = Field(description="How often, e.g. `30s`, `15m`, `24h`.")
    offset: Duration | None = Field(
        default=None,
        description="Shift within each interval, e.g. every 24h with offset 2h runs at 02:00 UTC daily.",
    )

    @model_validator(mode="after")
    def _offset_within_interval(self) -> Self:
        if self.offset is not None and self.offset >= self.every:
            raise field_error("offset", "must be shorter than `every`")
        return self


class AgentSchedule(Spec):
    """A prompt the agent runs on a schedule: a Temporal Schedule starting the agent's run workflow."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=SCHEDULE_NAME_PATTERN)] = Field(
        description="Unique within the agent (lowercase letters, digits and `-`); part of the Temporal "
        "Schedule id `schedule:<namespace>/<agent>/<name>`."
    )
    cron: list[CronExpression] = Field(
        default_factory=list,
        max_length=10,
        description="Cron expressions (minute hour day-of-month month day-of-week), e.g. `0 9 * * MON-FRI`; "
        "read in `timeZone`.",
    )
    intervals: list[ScheduleInterval] = Field(
        default_factory=list, max_length=10, description="Fixed intervals, e.g. `{every: 1h}`."
    )
    time_zone: TimeZone | None = Field(
        default=None, description="IANA time zone the cron expressions are read in (default UTC)."
    )
    prompt: str = Field(min_length=1, max_length=100_000, description="The prompt each run gets.")
    deps: JsonValue | None = Field(
        default=None,
        description="The runs' deps, as a JSON value (an object for a dataclass or model deps type).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    model: str | None = Field(default=None, description="Model override for the runs.")
    overlap: OverlapPolicy = Field(
        default="skip",
        description="When a run is due while the previous one still runs: `skip` it (default), "
        "`bufferOne` (run it once the previous ends; at most one waits), `bufferAll` (every one, in "
        "turn), `allowAll` (run at once, side by side), `cancelOther` (cancel the previous, then run), "
        "`terminateOther` (terminate the previous, then run).",
    )
    catchup_window: Duration | None = Field(
        default=None,
        description="After Temporal was down, runs missed within this window still start (at least 10s; "
        "default: Temporal's, one year, so with `skip` one missed run starts).",
    )
    timeout: Duration | None = Field(
        default=None, description="Execution timeout of each run (default: none, as for an AgentRun)."
    )
    paused: bool = Field(
        default=False,
        description="Stop starting runs (the agent's spec.paused pauses every schedule as well).",
    )

    @model_validator(mode="after")
    def _when(self) -> Self:
        if not self.cron and not self.intervals:
            raise field_error(
                "cron",
                "a schedule needs `cron` or `intervals`, e.g. cron: ['0 9 * * MON-FRI'] or intervals: "
                "[{every: 1h}]",
            )
        if self.catchup_window is not None and self.catchup_window < MIN_CATCHUP_WINDOW:
            raise field_error(
                "catchupWindow",
                f"must be at least {format_duration(MIN_CATCHUP_WINDOW)} (Temporal's minimum)",
            )
        return self


def _unique_names(schedules: list[AgentSchedule]) -> list[AgentSchedule]:
    seen: set[str] = set()
    for schedule in schedules:
        if schedule.name in seen:
            raise ValueError(f"two schedules are named {schedule.name!r}: give each a name of its own")
        seen.add(schedule.name)
    return schedules


Schedules = Annotated[list[AgentSchedule], AfterValidator(_unique_names), Field(max_length=20)]
"""`spec.schedules`: up to 20 schedules with distinct names."""


class AgentScheduleStatus(Spec):
    """One schedule as Temporal last reported it."""

    name: str = Field(description="The schedule's name.")
    schedule_id: str = Field(description="The Temporal Schedule id.")
    next_run_time: datetime | None = Field(default=None, description="When the next run is due.")
    paused: bool = Field(default=False, description="Whether the Temporal Schedule is paused.")
    last_run_id: str | None = Field(default=None, description="Workflow id of the latest run it started.")
    last_run_time: datetime | None = Field(default=None, description="When that run started.")
    last_run_phase: ScheduleRunPhase | None = Field(default=None, description="How that run is doing.")
    message: str | None = Field(default=None, description="Why the schedule does not match its spec.")


def schedule_id_prefix(namespace: str, agent: str) -> str:
    """The start of every schedule id of the agent `agent` in `namespace`."""
    return f"{SCHEDULE_ID_PREFIX}{namespace}/{agent}/"


def schedule_id(namespace: str, agent: str, name: str) -> str:
    """The Temporal Schedule id of schedule `name` of the agent `agent` in Kubernetes namespace `namespace`
    (`default` for a manifest without one)."""
    return schedule_id_prefix(namespace, agent) + name


def schedule_name_of(schedule_id: str) -> str:
    """The schedule's name inside a `schedule_id`."""
    return schedule_id.rsplit("/", 1)[-1]
