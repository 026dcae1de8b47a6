"""The fault matrix harness: a fleet of real worker processes, a batch of runs, faults at seeded points.

`Fleet` keeps `size` `durable-agents worker` processes serving one RuntimeConfig and replaces each one it
kills. `run_batch` starts the runs (bounded concurrency), injects faults through a `FaultInjector` while
they run, and waits for every run within `run_bound` seconds of its start. `analyse` compares the
executions the workload logged (`fault_tools.py`) with the workflow histories and returns the figures:
lost runs, duplicate executions of completed activities, stuck runs, recovery time after each fault.

Kill points are drawn from a seeded `random.Random` over the executions the batch is expected to log (the
n-th start line triggers a kill), so kills land inside model requests and tool calls, on the worker that
just started one or on a random worker, after a random delay.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault_tools import ENV_LOG, TOOLSET_ID, Execution, Plan, expected_output, read_executions
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import (
    ENV_BIND_HOST,
    ENV_HEALTH_PORT,
    ENV_METRICS_PORT,
    WORKFLOW_NAME,
    RunInput,
    RunOutput,
)
from durable_agents_runtime.devserver import DevServer, free_port

HERE = Path(__file__).resolve().parent
AGENT_NAME = "fault_matrix"
MCP_ID = "calc"

# Executions each run logs when nothing fails: three model requests and three tool calls.
STARTS_PER_RUN = 6
# Completed activities each run has in its history, by kind, when nothing ran twice.
EXPECTED_COMPLETED = {"model": 3, "tool": 3}
EXPECTED_COMPLETED_MCP = {"mcp_call": 1}

# The longest a run may take under faults before it counts as stuck, derived from the runtime's activity
# defaults (DEFAULT_ACTIVITY): an attempt lost with its worker is retried once its 2 s heartbeat
# timeout passes, at worst once the 60 s start-to-close timeout does; the retry then waits at most the 30 s
# maximum interval. 60 + 30 s, plus 30 s for a replacement worker to start on a loaded 2-core machine.
RUN_BOUND = 120.0


def long_variant() -> bool:
    """DA_RELIABILITY_LONG=1 selects the long variants (more runs, more faults)."""
    return os.environ.get("DA_RELIABILITY_LONG", "") not in ("", "0")


def runtime_config(address: str, namespace: str, mcp_url: str | None) -> RuntimeConfig:
    agent: dict[str, Any] = {
        "name": AGENT_NAME,
        "model": "python:fault_tools:model",
        "toolsets": [{"id": TOOLSET_ID, "entrypoint": "fault_tools:toolset"}],
    }
    if mcp_url is not None:
        agent["mcpServers"] = [
            {"id": MCP_ID, "url": mcp_url, "toolPrefix": MCP_ID, "toolFilter": {"include": ["add"]}}
        ]
    return RuntimeConfig.model_validate(
        {
            "agent": agent,
            "temporal": {
                "address": address,
                "namespace": namespace,
                "taskQueue": f"fault-matrix-{uuid.uuid4().hex[:8]}",
            },
        }
    )


def make_plans(rng: random.Random, runs: int, mcp_share: float) -> list[Plan]:
    """Seeded plans: model requests 0.05-0.4 s, tool calls 0.1-1.5 s, `mcp_share` of runs call MCP."""
    return [
        Plan(
            run=i,
            model_seconds=round(rng.uniform(0.05, 0.4), 3),
            tool_seconds=(
                round(rng.uniform(0.1, 1.5), 3),
                round(rng.uniform(0.1, 1.5), 3),
                round(rng.uniform(0.1, 1.5), 3),
            ),
            mcp=rng.random() < mcp_share,
        )
        for i in range(runs)
    ]


# -- workers ---------------------------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Fleet:
    """`size` worker processes for `config`; `kill()` SIGKILLs one and starts its replacement at once."""

    def __init__(
        self, config: RuntimeConfig, directory: Path, log: Path, size: int, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.env = env or {}
        self.directory = directory
        self.log = log
        self.size = size
        self.workers: list[Worker] = []
        self.started: list[Worker] = []
        self.config_path = directory / "runtime.json"
        self.config_path.write_text(config.to_json())

    def spawn(self) -> Worker:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE), environment.get("PYTHONPATH")) if p
        )
        environment.update(self.env)
        environment[ENV_LOG] = str(self.log)
        environment[ENV_BIND_HOST] = "127.0.0.1"
        health_port = free_port()
        environment[ENV_HEALTH_PORT] = str(health_port)
        environment[ENV_METRICS_PORT] = str(free_port())
        output = self.directory / f"worker-{len(self.started)}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "durable_agents_cli", "worker", "--config", str(self.config_path)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        worker = Worker(process, output, health_port)
        self.workers.append(worker)
        self.started.append(worker)
        return worker

    def start(self, ready_timeout: float = 90) -> None:
        """Spawn the fleet and wait until every worker polls (its `/readyz` answers 200)."""
        from urllib.request import urlopen

        spawned = [self.spawn() for _ in range(self.size)]
        deadline = time.monotonic() + ready_timeout
        for worker in spawned:
            while True:
                try:
                    url = f"http://127.0.0.1:{worker.health_port}/readyz"
                    with urlopen(url, timeout=0.5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if not worker.alive():
                    raise AssertionError(f"worker {worker.pid} exited at start:\n{worker.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"worker {worker.pid} not ready after {ready_timeout}s:\n{worker.tail()}"
                    )
                time.sleep(0.05)

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def kill(self, worker: Worker) -> None:
        """SIGKILL `worker` (as when its node dies) and start a replacement without waiting for it."""
        if worker.alive():
            worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(10)
        self.workers.remove(worker)
        self.spawn()

    def close(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.process.kill()
            worker.process.wait(10)


# -- faults ----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault: what, when (wall clock), and which process."""

    kind: str
    at: float
    pid: int
    downtime: float = 0.0


class LogWatcher:
    """Reads the executions the workload appends to the log since the last call."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._offset = 0
        self._partial = b""

    def new(self) -> list[Execution]:
        if not self.log.exists():
            return []
        with self.log.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        rows = []
        for line in lines:
            try:
                rows.append(Execution(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
        return rows


FaultAction = Callable[[Execution], Awaitable[Fault]]


class FaultInjector:
    """Fires `action` when the log reaches each of `points` (counted in start lines), one at a time."""

    def __init__(self, log: Path, points: Iterable[int], action: FaultAction) -> None:
        self.watcher = LogWatcher(log)
        self.points = sorted(points)
        self.action = action
        self.faults: list[Fault] = []
        self.errors: list[str] = []

    async def run(self, done: asyncio.Event) -> None:
        starts = 0
        pending = list(self.points)
        while pending and not done.is_set():
            for execution in self.watcher.new():
                if execution.event != "start":
                    continue
                starts += 1
                if pending and starts >= pending[0]:
                    pending.pop(0)
                    try:
                        self.faults.append(await self.action(execution))
                    except Exception as exc:  # reported as a failure of the test, not swallowed
                        self.errors.append(f"fault at start #{starts}: {exc!r}")
            await asyncio.sleep(0.05)


def worker_killer(fleet: Fleet, rng: random.Random) -> FaultAction:
    """Kill the worker that just started an execution (or, half of the time, a random live one)."""

    async def kill(execution: Execution) -> Fault:
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        live = fleet.live()
        by_pid = {w.pid: w for w in live}
        if execution.pid in by_pid and rng.random() < 0.5:
            victim = by_pid[execution.pid]
        elif live:
            victim = rng.choice(live)
        else:
            raise AssertionError("no live worker to kill: every worker died on its own")
        fleet.kill(victim)
        return Fault("worker SIGKILL", time.time(), victim.pid)

    return kill


# -- runs ------------------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    plan: Plan
    workflow_id: str
    started: float = 0.0
    finished: float | None = None
    output: str | None = None
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


async def _retrying(call: Callable[[], Awaitable[Any]], deadline: float, what: str) -> Any:
    """`call()`, retried while Temporal is unreachable (RPCError), until the wall-clock `deadline`."""
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError(f"{what}: not done within its bound")
        try:
            return await asyncio.wait_for(call(), remaining)
        except RPCError:
            await asyncio.sleep(0.5)


async def _one_run(client: Client, task_queue: str, record: RunRecord, run_bound: float) -> None:
    record.started = time.time()
    deadline = record.started + run_bound

    async def start() -> WorkflowHandle[Any, RunOutput]:
        try:
            return await client.start_workflow(
                WORKFLOW_NAME,
                RunInput(prompt=record.plan.prompt()),
                id=record.workflow_id,
                task_queue=task_queue,
                result_type=RunOutput,
            )
        except WorkflowAlreadyStartedError:
            # A start that reached the server before it went away: the run exists.
            return client.get_workflow_handle(record.workflow_id, result_type=RunOutput)

    try:
        handle = await _retrying(start, deadline, f"starting {record.workflow_id}")
        result: RunOutput = await _retrying(handle.result, deadline, f"run {record.workflow_id}")
        record.output = result.output_text
        record.finished = time.time()
    except WorkflowFailureError as exc:
        record.error = f"failed: {exc.cause!r}"
        record.finished = time.time()
    except TimeoutError as exc:
        record.error = str(exc)


async def run_batch(
    client: Client,
    config: RuntimeConfig,
    plans: list[Plan],
    injector: FaultInjector,
    *,
    concurrency: int,
    run_bound: float = RUN_BOUND,
) -> list[RunRecord]:
    """Run every plan (at most `concurrency` at once) while `injector` injects its faults."""
    prefix = f"fault-{uuid.uuid4().hex[:6]}"
    records = [RunRecord(plan, f"{prefix}-{plan.run}") for plan in plans]
    gate = asyncio.Semaphore(concurrency)
    done = asyncio.Event()

    async def gated(record: RunRecord) -> None:
        async with gate:
            await _one_run(client, config.temporal.task_queue, record, run_bound)

    faults = asyncio.create_task(injector.run(done))
    try:
        await asyncio.gather(*(gated(r) for r in records))
    finally:
        done.set()
        await faults
    return records


# -- analysis --------------------------------------------------------------------------------------------


def _kind(activity_type: str) -> str:
    if activity_type.endswith("__model_request") or activity_type.endswith("__model_request_stream"):
        return "model"
    if f"__toolset__{TOOLSET_ID}__" in activity_type:
        return "tool"
    if f"__mcp_server__{MCP_ID}__call_tool" in activity_type:
        return "mcp_call"
    if f"__mcp_server__{MCP_ID}__" in activity_type:
        return "mcp_list"
    return activity_type


@dataclass
class History:
    """What a run's history says about its activities."""

    completed_attempt: dict[str, int] = field(default_factory=dict)  # activity id → attempt that completed
    completed_at: dict[str, float] = field(default_factory=dict)  # activity id → wall clock
    completed_by_kind: Counter[str] = field(default_factory=Counter)
    mcp_attempts: int = 0  # attempts of MCP call_tool activities (started + retried)


async def read_history(client: Client, workflow_id: str) -> History:
    history = History()
    scheduled: dict[int, tuple[str, str]] = {}
    started: dict[int, int] = {}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_id, _kind(attrs.activity_type.name))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.event_id] = event.activity_task_started_event_attributes.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            activity_id, kind = scheduled[attrs.scheduled_event_id]
            attempt = started.get(attrs.started_event_id, 1)
            history.completed_attempt[activity_id] = attempt
            history.completed_at[activity_id] = event.event_time.ToDatetime().timestamp()
            history.completed_by_kind[kind] += 1
            if kind == "mcp_call":
                history.mcp_attempts += attempt
    return history


@dataclass
class Figures:
    """The fault matrix's results for one batch."""

    name: str
    seed: int
    runs: int
    faults: int
    lost_runs: list[str]
    wrong_outputs: list[str]
    duplicate_executions: list[str]
    extra_activities: list[str]
    stuck_runs: list[str]
    executions: int
    retried_executions: int
    run_seconds_p50: float
    run_seconds_max: float
    recovery_seconds: list[float]
    wall_seconds: float
    faults_kind: str = "worker SIGKILL"
    downtime_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        recovery = sorted(self.recovery_seconds)
        return {
            "name": self.name,
            "seed": self.seed,
            "runs": self.runs,
            "faults": f"{self.faults} x {self.faults_kind}",
            "lost runs": len(self.lost_runs),
            "wrong outputs": len(self.wrong_outputs),
            "duplicate completed activities": len(self.duplicate_executions) + len(self.extra_activities),
            "stuck runs": len(self.stuck_runs),
            "executions logged": self.executions,
            "re-executed in-flight attempts": self.retried_executions,
            "run seconds p50 / max": f"{self.run_seconds_p50:.1f} / {self.run_seconds_max:.1f}",
            "recovery after fault p50 / max (s)": (
                f"{statistics.median(recovery):.1f} / {recovery[-1]:.1f}" if recovery else "n/a"
            ),
            "downtime (s)": ", ".join(f"{d:.1f}" for d in self.downtime_seconds) or "n/a",
            "wall seconds": round(self.wall_seconds, 1),
        }

    def problems(self) -> list[str]:
        """Every violated property, each with the runs or activities involved."""
        found = []
        for label, items in (
            ("lost runs (not completed within the bound, or failed)", self.lost_runs),
            ("runs with a wrong output", self.wrong_outputs),
            ("completed activities executed again", self.duplicate_executions),
            ("runs whose history has extra completed activities", self.extra_activities),
            (f"runs slower than the {RUN_BOUND:.0f}s stuck bound", self.stuck_runs),
        ):
            if items:
                found.append(f"{len(items)} {label}: {items[:10]}")
        return found


async def analyse(
    name: str,
    seed: int,
    client: Client,
    records: list[RunRecord],
    faults: list[Fault],
    log: Path,
    wall_seconds: float,
    *,
    mcp_calls: Counter[int] | None = None,
    run_bound: float = RUN_BOUND,
) -> Figures:
    """The figures of a batch; `mcp_calls` counts the MCP server's executions of `add` per run number."""
    executions = read_executions(log)
    by_activity: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        if execution.event == "start":
            by_activity[(execution.workflow_id, execution.activity_id)].append(execution)

    lost, wrong, duplicates, extra, stuck = [], [], [], [], []
    completions: dict[tuple[str, str], float] = {}
    for record in records:
        if record.output is None:
            lost.append(f"{record.workflow_id}: {record.error}")
            continue
        if record.output != expected_output(record.plan):
            wrong.append(f"{record.workflow_id}: {record.output!r}")
        seconds = record.seconds
        if seconds is not None and seconds > run_bound:
            stuck.append(f"{record.workflow_id}: {seconds:.1f}s")
        history = await read_history(client, record.workflow_id)
        expected = Counter(EXPECTED_COMPLETED)
        if record.plan.mcp:
            expected.update(EXPECTED_COMPLETED_MCP)
        got = Counter({k: v for k, v in history.completed_by_kind.items() if k in expected})
        if got != expected:
            extra.append(f"{record.workflow_id}: completed {dict(got)}, expected {dict(expected)}")
        if record.plan.mcp and mcp_calls is not None:
            # The MCP server cannot log attempts; it may have run each attempt Temporal made, never more.
            calls = mcp_calls.get(record.plan.run, 0)
            if not 1 <= calls <= history.mcp_attempts:
                duplicates.append(
                    f"{record.workflow_id}/mcp add: {calls} executions, {history.mcp_attempts} attempts"
                )
        for activity_id in history.completed_attempt:
            completions[(record.workflow_id, activity_id)] = history.completed_at[activity_id]
        duplicates += executed_again(record.workflow_id, history, by_activity)
    # Logged executions of activities the history never completed belong to lost runs, which count above.

    retried = sum(1 for starts in by_activity.values() for s in starts if s.attempt > 1)
    recovery = _recovery_times(faults, executions, completions)
    seconds = sorted(r.seconds for r in records if r.seconds is not None)
    return Figures(
        name=name,
        seed=seed,
        runs=len(records),
        faults=len(faults),
        lost_runs=lost,
        wrong_outputs=wrong,
        duplicate_executions=duplicates,
        extra_activities=extra,
        stuck_runs=stuck,
        executions=sum(1 for e in executions if e.event == "start"),
        retried_executions=retried,
        run_seconds_p50=statistics.median(seconds) if seconds else float("nan"),
        run_seconds_max=seconds[-1] if seconds else float("nan"),
        recovery_seconds=recovery,
        wall_seconds=wall_seconds,
        faults_kind=faults[0].kind if faults else "none",
        downtime_seconds=[f.downtime for f in faults if f.downtime],
    )


def executed_again(
    workflow_id: str, history: History, starts_by_activity: dict[tuple[str, str], list[Execution]]
) -> list[str]:
    """Completed activities of one run that executed again: an execution of an attempt after the one the
    history completed, or the same attempt executed twice."""
    found = []
    for activity_id, completed in history.completed_attempt.items():
        attempts = Counter(s.attempt for s in starts_by_activity.get((workflow_id, activity_id), []))
        if any(a > completed or n > 1 for a, n in attempts.items()):
            found.append(f"{workflow_id}/{activity_id}: attempts {sorted(attempts.elements())}")
    return found


def _recovery_times(
    faults: list[Fault], executions: list[Execution], completions: dict[tuple[str, str], float]
) -> list[float]:
    """Per fault: from the fault until every activity in flight at that moment had completed.

    In flight = started and not ended before the fault, on the killed worker (a worker kill) or anywhere
    (a Temporal outage). Faults with nothing in flight have no recovery time.
    """
    ended = {(e.workflow_id, e.activity_id, e.attempt) for e in executions if e.event == "end"}
    ends_at = {(e.workflow_id, e.activity_id, e.attempt): e.time for e in executions if e.event == "end"}
    times = []
    for fault in faults:
        in_flight = [
            (e.workflow_id, e.activity_id)
            for e in executions
            if e.event == "start"
            and e.time <= fault.at
            and (fault.kind != "worker SIGKILL" or e.pid == fault.pid)
            and (
                (e.workflow_id, e.activity_id, e.attempt) not in ended
                or ends_at[(e.workflow_id, e.activity_id, e.attempt)] > fault.at
            )
        ]
        done = [completions[key] for key in in_flight if key in completions]
        if done:
            times.append(max(done) - fault.at)
    return times


class TemporalKiller:
    """SIGKILLs the dev server and starts it again on the same ports and sqlite file after a seeded pause.

    `server` is always the current server (the restarted one after a fault); `close()` stops it.
    """

    def __init__(self, server: DevServer, rng: random.Random, downtime: tuple[float, float]) -> None:
        self.server = server
        self.rng = rng
        self.downtime = downtime

    async def __call__(self, execution: Execution) -> Fault:
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        old = self.server
        pid = old.pid
        assert pid is not None, "the dev server is not running"
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        old.stop()  # reaps the killed process and releases the state directory's lock
        await asyncio.sleep(self.rng.uniform(*self.downtime))
        restarted = type(old)(
            old.state_dir,
            port=old.port,
            http_port=old.http_port,
            metrics_port=old.metrics_port,
            namespace=old.namespace,
        )
        await asyncio.to_thread(restarted.start)
        self.server = restarted
        return Fault("Temporal SIGKILL + restart", killed_at, pid, downtime=time.time() - killed_at)

    def close(self) -> None:
        self.server.stop()
