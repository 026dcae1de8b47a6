"""The replay gate: recent runs of an agent replayed against a new config before that config takes traffic.

Temporal replays a workflow's history whenever a worker picks the run up; code that would now issue other
commands than the history recorded (a removed tool, a renamed toolset, a reordered step) fails with a
non-determinism error. The gate finds that before a rollout: it fetches the histories of the agent's most
recent runs (still running and completed), builds the agent from the new config as a worker would, and
replays each with temporalio's `Replayer`. A mismatch names the workflow id and the first command that no
longer matches its history. `durable-agents replay AGENT [--manifest NEW.yaml]` runs it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin
from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer

from durable_agents_api.config import DEFAULT_REPLAY_HISTORIES, RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME
from durable_agents_runtime import served_agents
from durable_agents_runtime.agents import build_agent, event_topic, model_streams
from durable_agents_runtime.errors import ReplayGateError
from durable_agents_runtime.payload_limits import PayloadLimits
from durable_agents_runtime.temporal_internals import replayer_task_queue
from durable_agents_runtime.workflow import AgentRunWorkflow

__all__ = [
    "DEFAULT_HISTORIES",
    "ReplayGateError",
    "ReplayMismatch",
    "ReplayReport",
    "check",
    "first_mismatch",
    "recent_histories",
    "replay",
]

DEFAULT_HISTORIES = DEFAULT_REPLAY_HISTORIES
_REPLAY_BUILD_ID = "gate"
_SAMPLED_STATUSES = ("Running", "Completed")
"""Failed and terminated runs never resume, so a change cannot break them."""


@dataclass(frozen=True)
class ReplayMismatch:
    """A run whose history the new config does not reproduce."""

    workflow_id: str
    run_id: str
    command: str
    """The first mismatching command, as the SDK words it (e.g. which activity the history scheduled
    and which the new code would schedule)."""
    error: str
    """The replay failure in full."""

    def describe(self) -> str:
        return f"workflow {self.workflow_id} (run {self.run_id}): {self.command}"


@dataclass(frozen=True)
class ReplayReport:
    """What a replay of recent runs found."""

    agent: str
    task_queue: str
    replayed: tuple[str, ...] = ()
    """Workflow ids replayed, most recent first."""
    mismatches: tuple[ReplayMismatch, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        """One paragraph for a terminal, a condition message or an Event."""
        if not self.replayed:
            return (
                f"replay gate: no running or completed runs of agent {self.agent} on task queue "
                f"{self.task_queue} to replay; nothing can break"
            )
        if self.ok:
            return (
                f"replay gate passed: {len(self.replayed)} recent run(s) of agent {self.agent} replay "
                "unchanged with the new config"
            )
        first = self.mismatches[0]
        return (
            f"replay gate refused the change: {len(self.mismatches)} of {len(self.replayed)} recent run(s) "
            f"of agent {self.agent} do not replay with the new config. First: {first.describe()}. Keep "
            "what those runs use (tools, toolset ids, the agent name) until they finish, or roll out with "
            "versioning behavior Pinned so they finish on their own version"
        )


# The core SDK words a mismatch `[TMPRL1100] Nondeterminism error: <what>`, inside a quoted failure message.
_NONDETERMINISM = re.compile(r"[Nn]ondeterminism error:\s*(?P<what>[^\"\n]+)")


def first_mismatch(error: str) -> str:
    """The mismatching command out of a replay failure's text (the first line, when it has no marker)."""
    match = _NONDETERMINISM.search(error)
    text = match.group("what") if match else error.strip()
    return text.splitlines()[0].strip() if text else "replay failed"


def _query(task_queue: str) -> str:
    statuses = ", ".join(f"'{status}'" for status in _SAMPLED_STATUSES)
    queue = task_queue.replace("\\", "\\\\").replace("'", "\\'")
    return f"TaskQueue='{queue}' AND WorkflowType='{WORKFLOW_NAME}' AND ExecutionStatus IN ({statuses})"


async def recent_histories(client: Client, task_queue: str, count: int) -> list[WorkflowHistory]:
    """The histories of the `count` most recent running or completed runs on `task_queue`."""
    histories: list[WorkflowHistory] = []
    try:
        async for execution in client.list_workflows(_query(task_queue), limit=count):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            histories.append(await handle.fetch_history())
    except Exception as exc:  # RPC errors of list/fetch: the check cannot run, which is not a pass
        raise ReplayGateError(
            f"cannot read the recent runs on task queue {task_queue!r}: {exc}. Check the Temporal address "
            "and namespace"
        ) from None
    return histories


async def _iterate(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def replay(config: RuntimeConfig, histories: list[WorkflowHistory]) -> ReplayReport:
    """Replay `histories` with the workflow a worker for `config` would run."""
    from durable_agents_runtime.worker import workflow_runner

    agent = build_agent(config)
    # The workflow finds its agent by task queue, and the replayer runs histories on a queue of its own.
    # The histories name the old version's build id; the lookup falls back to the one agent on the queue.
    replay_queue = replayer_task_queue(_REPLAY_BUILD_ID)
    served_agents.register(
        replay_queue,
        served_agents.ServedAgent.of(
            agent, config, event_topic=event_topic(agent), model_streams=model_streams(agent.model)
        ),
    )
    try:
        replayer = Replayer(
            build_id=_REPLAY_BUILD_ID,
            # The core SDK logs every failed replay task as a warning; the report says it once, clearly.
            runtime=Runtime(telemetry=TelemetryConfig(logging=None)),
            workflows=[AgentRunWorkflow],
            plugins=[PydanticAIPlugin(), AgentPlugin(agent)],
            interceptors=[PayloadLimits()],
            workflow_runner=workflow_runner(config),
            namespace=config.temporal.namespace,
        )
        results = await replayer.replay_workflows(_iterate(histories), raise_on_replay_failure=False)
    finally:
        served_agents.unregister(replay_queue)
    mismatches = tuple(
        ReplayMismatch(history.workflow_id, history.run_id, first_mismatch(str(failure)), str(failure))
        for history, failure in ((h, results.replay_failures.get(h.run_id)) for h in histories)
        if failure is not None
    )
    return ReplayReport(
        agent=config.agent.name,
        task_queue=config.temporal.task_queue,
        replayed=tuple(history.workflow_id for history in histories),
        mismatches=mismatches,
    )


async def check(client: Client, config: RuntimeConfig, *, histories: int = DEFAULT_HISTORIES) -> ReplayReport:
    """Replay the `histories` most recent runs on `config`'s task queue against `config`."""
    return await replay(config, await recent_histories(client, config.temporal.task_queue, histories))
