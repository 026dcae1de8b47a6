"""The one way a failure becomes a message, wherever a user reads it (CLI, AgentRun status, health).

The messages of a failure and its causes, outermost first, joined with ": " on one line; a message that
repeats its parent's is left out, and so is the message of Temporal's own wrappers ("Workflow execution
failed", "Activity task failed") when a cause below says what went wrong (the activity's name is in the
wrapper's fields, not its message). At most `MAX_MESSAGE_CHARS`.

A failure arrives in two shapes: a Python exception (the result a client awaited) or a
`temporalio.api.failure.v1.Failure` read from a workflow history (health). Stack traces and details are never
included: they can hold data the workflow handled. A failure encoded by a payload codec shows Temporal's
placeholder message.
"""

from __future__ import annotations

from collections.abc import Iterator

from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ChildWorkflowError

__all__ = ["MAX_MESSAGE_CHARS", "failure_message", "shorten"]

MAX_MESSAGE_CHARS = 500
"""Failure messages are cut to this length."""

_CAUSE_DEPTH = 8
"""Causes followed below the outermost failure (a chain is rarely deeper than four)."""


def failure_message(failure: BaseException | Failure) -> str:
    """`failure` and its causes as one line, e.g. `RuntimeError: model said no: quota exceeded`."""
    parts: list[str] = []
    for message, wrapper, has_cause in _chain(failure):
        message = " ".join(message.split())
        if not message or (parts and parts[-1] == message) or (wrapper and has_cause):
            continue
        parts.append(message)
    return shorten(": ".join(parts))


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chain(failure: BaseException | Failure) -> Iterator[tuple[str, bool, bool]]:
    """(message, is a Temporal wrapper, has a cause) for the failure and each cause, outermost first."""
    current: BaseException | Failure | None = failure
    depth = 0
    while current is not None and depth <= _CAUSE_DEPTH:
        depth += 1
        if isinstance(current, Failure):
            cause = current.cause if current.HasField("cause") else None
            wrapper = current.HasField("activity_failure_info") or current.HasField(
                "child_workflow_execution_failure_info"
            )
            yield current.message, wrapper, cause is not None
        else:
            cause = getattr(current, "cause", None) or current.__cause__
            wrapper = isinstance(current, WorkflowFailureError | ActivityError | ChildWorkflowError)
            text = getattr(current, "message", None) or str(current) or type(current).__name__
            yield text, wrapper, cause is not None
        current = cause
