"""Failed attempts of a run that is still retrying, shown while the CLI waits for the run's result.

Temporal retries a failing activity on its own; the workflow, and so the run's result, learns of it only
when the retries end. `report_retries` polls the run's pending activities and reports each failed attempt
once, with its error and what comes next, so `durable-agents run` never waits in silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from durable_agents_runtime.failures import failure_message

__all__ = ["POLL_SECONDS", "report_retries"]

POLL_SECONDS = 1.0
"""How often the run's pending activities are read while the CLI waits."""


async def report_retries(
    handle: WorkflowHandle[Any, Any], say: Callable[[str], None], *, poll_seconds: float = POLL_SECONDS
) -> None:
    """Call `say` with a line for each failed attempt of `handle`'s activities seen, until cancelled.

    Temporal keeps only an activity's latest failure, so an attempt that fails and is retried between two
    polls is summed up by the next one's line.
    """
    reported: set[tuple[str, int]] = set()
    while True:
        await asyncio.sleep(poll_seconds)
        try:
            description = await handle.describe()
        except RPCError:
            continue  # the result wait reports a lost connection; this is only commentary
        for pending in description.raw_description.pending_activities:
            if not pending.HasField("last_failure"):
                continue
            failed_attempt = pending.attempt - 1
            key = (pending.activity_id, failed_attempt)
            if key in reported:
                continue
            reported.add(key)
            limit = pending.maximum_attempts
            remaining = f"attempt {pending.attempt} of {limit}" if limit else f"attempt {pending.attempt}"
            say(
                f"attempt {failed_attempt} of {pending.activity_type.name} failed: "
                f"{failure_message(pending.last_failure)}; retrying ({remaining})"
            )
