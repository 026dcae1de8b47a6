"""The agents this process serves, keyed by task queue.

The workflow module imports this module through the sandbox's pass-through, so the workflow code sees the
same dictionary the worker filled in before it started polling. Several agents can share one process (as in
`durable-agents dev`) because each is looked up by the task queue of the running workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent

from durable_agents_runtime.config import SessionsSpec
from durable_agents_runtime.errors import AgentNotServedError, ConfigError

__all__ = ["ServedAgent", "lookup", "register"]


@dataclass(frozen=True)
class ServedAgent:
    """A durable agent, the event stream topic its runs publish to (None: it publishes none), whether
    its own model can stream (a watched run's model requests are streamed), and its session settings."""

    agent: AbstractAgent[Any, Any]
    event_topic: str | None
    model_streams: bool = True
    sessions: SessionsSpec = field(default_factory=lambda: SessionsSpec())


_agents: dict[str, ServedAgent] = {}


def register(task_queue: str, served: ServedAgent) -> None:
    """Serve `served` on `task_queue`; a task queue serves one agent."""
    existing = _agents.get(task_queue)
    if existing is not None and existing.agent is not served.agent:
        raise ConfigError(
            f"task queue {task_queue!r} already serves agent {existing.agent.name!r}: give each agent its "
            "own task queue (spec.temporal.taskQueue, or distinct metadata.name)"
        )
    _agents[task_queue] = served


def lookup(task_queue: str) -> ServedAgent:
    """The agent served on `task_queue`."""
    try:
        return _agents[task_queue]
    except KeyError:
        raise AgentNotServedError(
            f"no agent is registered for task queue {task_queue!r} in this worker; "
            "start the worker with the config of the agent that owns this task queue"
        ) from None
