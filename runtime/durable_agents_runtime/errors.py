"""The runtime's errors. Each message names what is wrong and how to fix it.

The base class and `ConfigError` (an invalid manifest or config) live in the API layer
(`durable_agents_api.errors`), under both packages.
"""

from __future__ import annotations

from durable_agents_api.errors import DurableAgentsError

__all__ = [
    "AgentLoadError",
    "AgentNotServedError",
    "DecisionError",
    "DevServerError",
    "ReplayGateError",
    "RunFailedError",
    "RunNotFoundError",
    "ScheduleError",
    "ScheduleNotFoundError",
    "ScheduleRejectedError",
    "ScheduleUnreachableError",
    "SessionEndedError",
    "SessionError",
    "SessionNotFoundError",
    "SessionUnreachableError",
    "TemporalConnectError",
    "VersioningError",
]


class AgentLoadError(DurableAgentsError):
    """The agent could not be built from its spec (bad entrypoint, unknown model, missing toolset)."""


class TemporalConnectError(DurableAgentsError):
    """The Temporal frontend could not be reached or refused the connection."""


class DevServerError(DurableAgentsError):
    """The embedded Temporal dev server's binary is missing, or the server did not start; the message
    holds the end of its log."""


class AgentNotServedError(DurableAgentsError):
    """A workflow reached a worker that does not serve its task queue's agent (a misrouted task queue)."""


class DecisionError(DurableAgentsError):
    """A decision on a run's tool calls could not be made: no such run or call, the run has finished, the
    call was decided already, or no worker answered. A refused decision changed nothing."""


class RunNotFoundError(DurableAgentsError):
    """No run with this id exists in the namespace."""


class RunFailedError(DurableAgentsError):
    """The run ended without a result: it failed, was cancelled or terminated, or timed out.

    `status` is its final status as the CLI prints it (`failed`, `canceled`, ...)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class VersioningError(DurableAgentsError):
    """A Worker Deployment call failed or a version did not appear in time."""


class ReplayGateError(DurableAgentsError):
    """The histories could not be read or replayed (not a mismatch: the check itself failed)."""


class SessionError(DurableAgentsError):
    """A message, query or listing of a session failed; the message says why and what to do."""


class SessionNotFoundError(SessionError):
    """No session with this id exists for the agent."""


class SessionUnreachableError(SessionError):
    """Temporal did not take or answer the call; trying again later may work."""


class SessionEndedError(SessionError):
    """The session has ended (idle timeout, or it was terminated); it takes no more messages."""


class ScheduleError(DurableAgentsError):
    """A Temporal Schedule of an agent could not be written, read, triggered or deleted."""


class ScheduleRejectedError(ScheduleError):
    """Temporal refused a schedule's spec (a cron or time zone it does not know): the manifest must change.

    `name` is the schedule's name in spec.schedules."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class ScheduleNotFoundError(ScheduleError):
    """The agent has no schedule of that name in Temporal."""


class ScheduleUnreachableError(ScheduleError):
    """Temporal did not answer a schedule call (in time); trying again later may work."""
