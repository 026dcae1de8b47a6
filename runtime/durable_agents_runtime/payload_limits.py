"""Payloads over Temporal's size limit fail the run at once, with the size, the limit and what to change.

Temporal refuses any payload over 2 MB. Left to itself, an activity whose result is too large fails its
completion on every attempt, and a model request whose message history is too large fails the workflow
task, which Temporal retries forever: the run looks alive and never ends. `PayloadLimits` checks the two
places where an agent's data grows — what an activity returns (a model's answer, a tool's result) and what
the workflow sends into an activity (the message history of the next model request) — and turns an
oversized one into a non-retryable `PayloadTooLarge` failure naming the activity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

__all__ = ["MAX_PAYLOAD_BYTES", "PAYLOAD_TOO_LARGE", "PayloadLimits", "too_large_message"]

MAX_PAYLOAD_BYTES = 1_900_000
"""Largest payload sent: Temporal's limit is 2 MiB (2,097,152 bytes) for one payload, less what Temporal
adds around it."""
PAYLOAD_TOO_LARGE = "PayloadTooLarge"
"""Error type of the failure."""


def _size(payloads: Sequence[Any]) -> int:
    return sum(payload.ByteSize() for payload in payloads)


def too_large_message(activity_type: str, size: int, *, result: bool) -> str:
    """What to tell the user about an oversized payload of `activity_type`."""
    mb = f"{size / 1_000_000:.1f} MB ({size} bytes)"
    limit = f"Temporal's payload limit ({MAX_PAYLOAD_BYTES} bytes)"
    if "__model_request" in activity_type:
        if result:
            return (
                f"the model's response is {mb}, over {limit}: ask the model for a shorter answer, e.g. set "
                "max_tokens in agent.modelSettings"
            )
        return (
            f"the model request of {activity_type} carries a message history of {mb}, over {limit}: the "
            "prompt and the tool results so far are too large; pass large data by reference (a URL or an "
            "object key) instead of inline"
        )
    if result:
        return (
            f"{activity_type} returned {mb}, over {limit}: have the tool store large results and return a "
            "reference to them (a URL or an object key)"
        )
    return f"the input of {activity_type} is {mb}, over {limit}: pass large data by reference instead"


class PayloadLimits(Interceptor):
    """Worker interceptor: fail an oversized activity result or activity input at once."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityResults(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowInbound


class _ActivityResults(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        size = _size(activity.payload_converter().to_payloads([result]))
        if size > MAX_PAYLOAD_BYTES:
            raise ApplicationError(
                too_large_message(activity.info().activity_type, size, result=True),
                type=PAYLOAD_TOO_LARGE,
                non_retryable=True,
            )
        return result


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_ActivityInputs(outbound))


class _ActivityInputs(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        size = _size(workflow.payload_converter().to_payloads(input.args))
        if size > MAX_PAYLOAD_BYTES:
            # Raised in workflow code: an ApplicationError fails the run instead of the workflow task.
            raise ApplicationError(
                too_large_message(input.activity, size, result=False),
                type=PAYLOAD_TOO_LARGE,
                non_retryable=True,
            )
        return super().start_activity(input)
