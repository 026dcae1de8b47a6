"""The agents this process serves, keyed by task queue.

The workflow module imports this module through the sandbox's pass-through, so the workflow code sees the
same dictionary the worker filled in before it started polling. Several agents can share one process (as in
`durable-agents dev`) because each is looked up by the task queue of the running workflow, and so can two
versions of one agent (`dev` serving a changed manifest next to the old one) because a versioned agent is
also keyed by its build id. A workflow task names the build id of the worker that first ran it; a replay
by another version (the replay gate) finds the one agent registered on the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent

from durable_agents_api.budget import UsageBudget
from durable_agents_api.config import ApprovalsSpec, RuntimeConfig, SessionsSpec, SubAgentSpec
from durable_agents_api.errors import ConfigError
from durable_agents_runtime.errors import AgentNotServedError

__all__ = ["ServedAgent", "lookup", "register"]


@dataclass(frozen=True)
class ServedAgent:
    """A durable agent, the event stream topic its runs publish to (None: it publishes none), and whether
    its own model can stream (a watched run's model requests are streamed), its session settings, and how
    its runs wait for decisions on tool calls, the agents it calls and what its runs may use."""

    agent: AbstractAgent[Any, Any]
    event_topic: str | None
    model_streams: bool = True
    sessions: SessionsSpec = field(default_factory=lambda: SessionsSpec())
    approvals: ApprovalsSpec = field(default_factory=ApprovalsSpec)
    sub_agents: tuple[SubAgentSpec, ...] = ()
    max_sub_agent_depth: int | None = None
    budget: UsageBudget | None = None

    @classmethod
    def of(
        cls,
        agent: AbstractAgent[Any, Any],
        config: RuntimeConfig,
        *,
        event_topic: str | None,
        model_streams: bool,
    ) -> ServedAgent:
        """The served form of `agent`, built from `config`."""
        return cls(
            agent,
            event_topic,
            model_streams,
            config.sessions or SessionsSpec(),
            approvals=config.approvals or ApprovalsSpec(),
            sub_agents=tuple(config.agent.sub_agents or ()),
            max_sub_agent_depth=config.agent.max_sub_agent_depth,
            budget=config.budget,
        )


_agents: dict[tuple[str, str | None], ServedAgent] = {}


def register(task_queue: str, served: ServedAgent, build_id: str | None = None) -> None:
    """Serve `served` on `task_queue` (as version `build_id`); a task queue serves one agent per version."""
    existing = _agents.get((task_queue, build_id))
    if existing is not None and existing.agent is not served.agent:
        raise ConfigError(
            f"task queue {task_queue!r} already serves agent {existing.agent.name!r}: give each agent its "
            "own task queue (spec.temporal.taskQueue, or distinct metadata.name)"
        )
    _agents[(task_queue, build_id)] = served


def unregister(task_queue: str, build_id: str | None = None) -> None:
    """Stop serving version `build_id` on `task_queue` (its worker stopped)."""
    _agents.pop((task_queue, build_id), None)


def lookup(task_queue: str, build_id: str | None = None) -> ServedAgent:
    """The agent served on `task_queue` as `build_id`, else the only agent served on `task_queue`."""
    served = _agents.get((task_queue, build_id))
    if served is not None:
        return served
    on_queue = [agent for (queue, _), agent in _agents.items() if queue == task_queue]
    if len(on_queue) == 1:
        return on_queue[0]
    if on_queue:
        raise AgentNotServedError(
            f"task queue {task_queue!r} has {len(on_queue)} versions in this worker and none is build "
            f"{build_id!r}: this workflow task belongs to a version this process does not serve"
        )
    raise AgentNotServedError(
        f"no agent is registered for task queue {task_queue!r} in this worker; "
        "start the worker with the config of the agent that owns this task queue"
    )
