"""An agent's `spec.schedules` as Temporal Schedules: build, plan, sync, observe, trigger, delete.

Temporal runs the schedules (no timer loop of ours): each one's action starts the agent's run workflow
(`WORKFLOW_NAME`, a `RunInput`) on the agent's task queue. Both the operator and `durable-agents dev` call
`sync_schedules`, which is idempotent and level-based:

- observe: describe each desired schedule id, and list the ids under the agent's prefix;
- plan (`plan_schedules`, pure): create the missing, update those whose spec hash (kept in the action's
  memo, `MEMO_SPEC_HASH`) differs, delete the agent's schedules no longer in the spec;
- execute, then describe again for the status.

A create that races another (AlreadyExists) becomes an update; a delete of a schedule already gone is
done. A schedule whose spec Temporal refuses (INVALID_ARGUMENT) is reported in `SyncResult.rejected`, by
name with Temporal's reason, and the others are synced all the same; any other failure raises
`ScheduleUnreachableError`. Every call carries `rpc_timeout`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.contract import WORKFLOW_NAME, RunInput
from durable_agents_api.schedules import (
    MEMO_AGENT,
    MEMO_SCHEDULE,
    MEMO_SPEC_HASH,
    AgentSchedule,
    AgentScheduleStatus,
    OverlapPolicy,
    ScheduleRunPhase,
    schedule_id,
    schedule_id_prefix,
    schedule_name_of,
)
from durable_agents_runtime.errors import (
    ScheduleNotFoundError,
    ScheduleRejectedError,
    ScheduleUnreachableError,
)

__all__ = [
    "OVERLAP",
    "ScheduleObservation",
    "ScheduleOwner",
    "SchedulePlan",
    "SyncResult",
    "build_schedule",
    "delete_schedules",
    "list_schedules",
    "plan_schedules",
    "spec_hash",
    "sync_schedules",
    "trigger_schedule",
]

OVERLAP: Mapping[OverlapPolicy, ScheduleOverlapPolicy] = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "bufferOne": ScheduleOverlapPolicy.BUFFER_ONE,
    "bufferAll": ScheduleOverlapPolicy.BUFFER_ALL,
    "allowAll": ScheduleOverlapPolicy.ALLOW_ALL,
    "cancelOther": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminateOther": ScheduleOverlapPolicy.TERMINATE_OTHER,
}
_HASH_VERSION = 1
"""Bump when `build_schedule` changes what it writes, so every schedule is rewritten once."""
_PHASES: Mapping[WorkflowExecutionStatus, ScheduleRunPhase] = {
    WorkflowExecutionStatus.RUNNING: "Running",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "Running",
    WorkflowExecutionStatus.COMPLETED: "Succeeded",
}


@dataclass(frozen=True)
class ScheduleOwner:
    """The agent the schedules belong to: where its runs go, and whether it is paused."""

    namespace: str
    """The Kubernetes namespace (`default` for a manifest without one)."""
    agent: str
    """The DurableAgent's `metadata.name`."""
    task_queue: str
    paused: bool = False
    """The agent's `spec.paused`: every schedule is paused with it."""

    @property
    def prefix(self) -> str:
        return schedule_id_prefix(self.namespace, self.agent)

    def id_of(self, name: str) -> str:
        return schedule_id(self.namespace, self.agent, name)


def spec_hash(schedule: AgentSchedule, owner: ScheduleOwner) -> str:
    """A digest of everything `build_schedule` writes: equal digests, equal Temporal Schedules."""
    content = {
        "v": _HASH_VERSION,
        "schedule": schedule.to_api(),
        "taskQueue": owner.task_queue,
        "paused": owner.paused,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def build_schedule(schedule: AgentSchedule, owner: ScheduleOwner) -> Schedule:
    """The Temporal Schedule for `schedule`: its action starts the agent's run workflow with its prompt."""
    run = RunInput(prompt=schedule.prompt, deps=schedule.deps, model=schedule.model)
    action = ScheduleActionStartWorkflow(
        WORKFLOW_NAME,
        # A plain JSON value: the worker's pydantic converter reads it as a RunInput whatever the
        # converter of the client that wrote the schedule.
        run.model_dump(mode="json"),
        id=owner.id_of(schedule.name),
        task_queue=owner.task_queue,
        execution_timeout=schedule.timeout,
        memo={
            MEMO_SCHEDULE: schedule.name,
            MEMO_AGENT: f"{owner.namespace}/{owner.agent}",
            MEMO_SPEC_HASH: spec_hash(schedule, owner),
        },
    )
    spec = ScheduleSpec(
        cron_expressions=list(schedule.cron),
        intervals=[ScheduleIntervalSpec(every=i.every, offset=i.offset) for i in schedule.intervals],
        time_zone_name=schedule.time_zone,
    )
    policy = SchedulePolicy(overlap=OVERLAP[schedule.overlap], catchup_window=schedule.catchup_window)
    paused = schedule.paused or owner.paused
    why = "spec.paused of the agent" if owner.paused else f"spec.schedules[{schedule.name}].paused"
    note = f"paused by {why}" if paused else f"managed by durable-agents for {owner.namespace}/{owner.agent}"
    return Schedule(action=action, spec=spec, policy=policy, state=ScheduleState(paused=paused, note=note))


@dataclass(frozen=True)
class SchedulePlan:
    """What to do to make Temporal match the spec, as schedule ids."""

    create: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_schedules(
    desired: Mapping[str, str], observed: Mapping[str, str | None], others: Iterable[str]
) -> SchedulePlan:
    """The plan, given the desired schedules (id → spec hash), those of them Temporal has (id → the hash
    in their memo; None when it has none, e.g. a schedule someone else wrote), and the other ids of the
    agent's schedules Temporal has or the status last listed."""
    create = tuple(sorted(i for i in desired if i not in observed))
    update = tuple(sorted(i for i in desired if i in observed and observed[i] != desired[i]))
    delete = tuple(sorted({i for i in others if i not in desired}))
    return SchedulePlan(create=create, update=update, delete=delete)


@dataclass(frozen=True)
class ScheduleObservation:
    """One Temporal Schedule as described: what `status.schedules` and `durable-agents schedules` show."""

    name: str
    schedule_id: str
    next_run_time: datetime | None
    paused: bool
    last_run_id: str | None = None
    last_run_time: datetime | None = None
    last_run_phase: ScheduleRunPhase | None = None
    overlap: str = "skip"
    spec_hash: str | None = None
    runs: int = 0
    """Runs the schedule has started."""
    skipped: int = 0
    """Runs skipped because of the overlap policy."""
    message: str | None = None
    """Why the schedule does not match its spec (Temporal refused the spec)."""

    def to_status(self) -> dict[str, Any]:
        """The `status.schedules[]` entry (camelCase, unset fields left out)."""
        return AgentScheduleStatus(
            name=self.name,
            schedule_id=self.schedule_id,
            next_run_time=self.next_run_time,
            paused=self.paused,
            last_run_id=self.last_run_id,
            last_run_time=self.last_run_time,
            last_run_phase=self.last_run_phase,
            message=self.message,
        ).to_api()


@dataclass(frozen=True)
class SyncResult:
    """What `sync_schedules` did and saw."""

    plan: SchedulePlan
    schedules: tuple[ScheduleObservation, ...]
    """The desired schedules as Temporal holds them after the sync, in spec order (a rejected one as it
    was before, if it existed)."""
    rejected: Mapping[str, str] = field(default_factory=dict[str, str])
    """Schedule name → why Temporal refused to write it."""


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _unreachable(what: str, exc: Exception) -> ScheduleUnreachableError:
    detail = exc.message if isinstance(exc, RPCError) else (str(exc) or type(exc).__name__)
    return ScheduleUnreachableError(f"could not {what}: {detail}; the next reconcile tries again")


async def _describe(client: Client, sid: str, rpc_timeout: float) -> ScheduleDescription | None:
    """The schedule's description, or None when it does not exist."""
    try:
        return await asyncio.wait_for(
            client.get_schedule_handle(sid).describe(rpc_timeout=_seconds(rpc_timeout)), rpc_timeout * 2
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise _unreachable(f"describe schedule {sid}", exc) from None
    except TimeoutError as exc:
        raise _unreachable(f"describe schedule {sid} within {rpc_timeout:g}s", exc) from None


def _memo_hash(client: Client, description: ScheduleDescription) -> str | None:
    action = description.schedule.action
    memo = getattr(action, "memo", None) or {}
    payload = memo.get(MEMO_SPEC_HASH)
    if payload is None:
        return None
    try:
        value = client.data_converter.payload_converter.from_payload(payload)
    except Exception:
        return None  # not ours to read: rewrite it
    return value if isinstance(value, str) else None


async def _ids_under(client: Client, prefix: str, rpc_timeout: float) -> set[str]:
    """Ids of the schedules whose id starts with `prefix` (the listing is eventually consistent)."""

    async def collect() -> set[str]:
        query = f'ScheduleId STARTS_WITH "{prefix}"'
        listing = await client.list_schedules(query, rpc_timeout=_seconds(rpc_timeout))
        return {entry.id async for entry in listing}

    try:
        return await asyncio.wait_for(collect(), rpc_timeout * 2)
    except RPCError as exc:
        raise _unreachable(f"list the schedules {prefix}*", exc) from None
    except TimeoutError as exc:
        raise _unreachable(f"list the schedules {prefix}* within {rpc_timeout:g}s", exc) from None


async def _write(
    client: Client,
    sid: str,
    schedule: AgentSchedule,
    owner: ScheduleOwner,
    *,
    create: bool,
    rpc_timeout: float,
) -> None:
    built = build_schedule(schedule, owner)
    timeout = _seconds(rpc_timeout)

    def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=built)

    try:
        if create:
            try:
                await asyncio.wait_for(
                    client.create_schedule(sid, built, rpc_timeout=timeout), rpc_timeout * 2
                )
                return
            except ScheduleAlreadyRunningError:
                pass  # created meanwhile (another reconcile): make it match instead
        await asyncio.wait_for(
            client.get_schedule_handle(sid).update(replace, rpc_timeout=timeout), rpc_timeout * 3
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ScheduleRejectedError(
                f"Temporal refused schedule {schedule.name!r}: {exc.message}; fix that schedule in "
                "spec.schedules",
                name=schedule.name,
            ) from None
        raise _unreachable(f"{'create' if create else 'update'} schedule {sid}", exc) from None
    except TimeoutError as exc:
        raise _unreachable(f"write schedule {sid} within {rpc_timeout:g}s", exc) from None


async def _delete(client: Client, sid: str, rpc_timeout: float) -> None:
    try:
        await asyncio.wait_for(
            client.get_schedule_handle(sid).delete(rpc_timeout=_seconds(rpc_timeout)), rpc_timeout * 2
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise _unreachable(f"delete schedule {sid}", exc) from None
    except TimeoutError as exc:
        raise _unreachable(f"delete schedule {sid} within {rpc_timeout:g}s", exc) from None


async def _last_run(
    client: Client, description: ScheduleDescription, rpc_timeout: float
) -> tuple[str | None, datetime | None, ScheduleRunPhase | None]:
    """The latest run the schedule started: workflow id, start time, phase (None when unknown)."""
    if not description.info.recent_actions:
        return None, None, None
    latest = description.info.recent_actions[-1]
    started = latest.action
    workflow_id = getattr(started, "workflow_id", None)
    run_id = getattr(started, "first_execution_run_id", None)
    if workflow_id is None:
        return None, latest.started_at, None
    if any(getattr(r, "workflow_id", None) == workflow_id for r in description.info.running_actions):
        return workflow_id, latest.started_at, "Running"
    try:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        found = await asyncio.wait_for(handle.describe(rpc_timeout=_seconds(rpc_timeout)), rpc_timeout * 2)
    except (RPCError, TimeoutError):
        return workflow_id, latest.started_at, None
    phase = _PHASES.get(found.status, "Failed") if found.status is not None else None
    return workflow_id, latest.started_at, phase


async def _observation(
    client: Client, sid: str, description: ScheduleDescription, rpc_timeout: float
) -> ScheduleObservation:
    info = description.info
    last_id, last_time, phase = await _last_run(client, description, rpc_timeout)
    overlap = next((k for k, v in OVERLAP.items() if v == description.schedule.policy.overlap), "skip")
    return ScheduleObservation(
        name=schedule_name_of(sid),
        schedule_id=sid,
        next_run_time=info.next_action_times[0] if info.next_action_times else None,
        paused=description.schedule.state.paused,
        last_run_id=last_id,
        last_run_time=last_time,
        last_run_phase=phase,
        overlap=overlap,
        spec_hash=_memo_hash(client, description),
        runs=info.num_actions,
        skipped=info.num_actions_skipped_overlap,
    )


async def sync_schedules(
    client: Client,
    owner: ScheduleOwner,
    schedules: Sequence[AgentSchedule],
    *,
    known: Iterable[str] = (),
    rpc_timeout: float = 10.0,
) -> SyncResult:
    """Make the agent's Temporal Schedules match `schedules` (create, update, delete) and describe them.

    `known`: names of schedules the caller saw earlier (the status), deleted too when no longer wanted,
    since a listing may not show a schedule created moments ago.
    """
    by_id = {owner.id_of(s.name): s for s in schedules}
    desired = {sid: spec_hash(s, owner) for sid, s in by_id.items()}
    descriptions = dict(
        zip(by_id, await asyncio.gather(*(_describe(client, sid, rpc_timeout) for sid in by_id)), strict=True)
    )
    observed = {sid: _memo_hash(client, d) for sid, d in descriptions.items() if d is not None}
    others = (await _ids_under(client, owner.prefix, rpc_timeout)) | {owner.id_of(n) for n in known}
    plan = plan_schedules(desired, observed, others - set(desired))
    rejected: dict[str, str] = {}
    for sid in (*plan.create, *plan.update):
        try:
            await _write(client, sid, by_id[sid], owner, create=sid in plan.create, rpc_timeout=rpc_timeout)
        except ScheduleRejectedError as exc:
            rejected[exc.name] = str(exc)
    for sid in plan.delete:
        await _delete(client, sid, rpc_timeout)
    changed = set(plan.create) | set(plan.update)
    fresh = await asyncio.gather(
        *(
            _describe(client, sid, rpc_timeout) if sid in changed else _done(d)
            for sid, d in descriptions.items()
        )
    )
    observations: list[ScheduleObservation] = []
    for (sid, schedule), description in zip(by_id.items(), fresh, strict=True):
        why = rejected.get(schedule.name)
        if description is not None:
            seen = await _observation(client, sid, description, rpc_timeout)
            observations.append(dataclasses.replace(seen, message=why) if why else seen)
        elif why:
            observations.append(ScheduleObservation(schedule.name, sid, None, schedule.paused, message=why))
    return SyncResult(plan=plan, schedules=tuple(observations), rejected=rejected)


async def _done(value: ScheduleDescription | None) -> ScheduleDescription | None:
    return value


async def delete_schedules(
    client: Client, owner: ScheduleOwner, *, known: Iterable[str] = (), rpc_timeout: float = 10.0
) -> tuple[str, ...]:
    """Delete every schedule of the agent (those listed under its prefix and those named in `known`);
    the ids deleted or already gone."""
    ids = (await _ids_under(client, owner.prefix, rpc_timeout)) | {owner.id_of(n) for n in known}
    for sid in sorted(ids):
        await _delete(client, sid, rpc_timeout)
    return tuple(sorted(ids))


async def list_schedules(
    client: Client, namespace: str, agent: str, *, rpc_timeout: float = 10.0
) -> list[ScheduleObservation]:
    """The agent's schedules as Temporal holds them, by name."""
    ids = await _ids_under(client, schedule_id_prefix(namespace, agent), rpc_timeout)
    found: list[ScheduleObservation] = []
    for sid in sorted(ids):
        description = await _describe(client, sid, rpc_timeout)
        if description is not None:
            found.append(await _observation(client, sid, description, rpc_timeout))
    return found


async def trigger_schedule(
    client: Client,
    namespace: str,
    agent: str,
    name: str,
    *,
    overlap: OverlapPolicy | None = None,
    wait: float = 10.0,
    rpc_timeout: float = 10.0,
) -> str | None:
    """Start the schedule's action now; the workflow id of the run it started, or None when none started
    within `wait` seconds (the overlap policy skipped it: the previous run still runs)."""
    sid = schedule_id(namespace, agent, name)
    before = await _describe(client, sid, rpc_timeout)
    if before is None:
        raise ScheduleNotFoundError(
            f"agent {namespace}/{agent} has no schedule {name!r} in Temporal (schedule id {sid}): check the "
            "name with `durable-agents schedules AGENT`, and that the manifest is applied or served by `dev`"
        )
    count = before.info.num_actions
    try:
        await asyncio.wait_for(
            client.get_schedule_handle(sid).trigger(
                overlap=OVERLAP[overlap] if overlap else None, rpc_timeout=_seconds(rpc_timeout)
            ),
            rpc_timeout * 2,
        )
    except (RPCError, TimeoutError) as exc:
        raise _unreachable(f"trigger schedule {sid}", exc) from None
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        after = await _describe(client, sid, rpc_timeout)
        if after is not None and after.info.num_actions > count and after.info.recent_actions:
            return getattr(after.info.recent_actions[-1].action, "workflow_id", None)
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.2)
