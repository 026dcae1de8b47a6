"""The one failure formatter: exceptions a client awaited and failures read from a history read the same."""

from __future__ import annotations

from temporalio.api.common.v1 import ActivityType
from temporalio.api.enums.v1 import RetryState
from temporalio.api.failure.v1 import ActivityFailureInfo, ApplicationFailureInfo, Failure
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from durable_agents_runtime.failures import MAX_MESSAGE_CHARS, failure_message


def test_failure_message_joins_the_cause_chain_on_one_line_without_stack_traces():
    failure = Failure(
        message="Activity task failed",
        stack_trace='File "secret_module.py", line 1',
        cause=Failure(message="boom:\n  the tool\tsaid no", stack_trace="trace"),
    )

    assert failure_message(failure) == "Activity task failed: boom: the tool said no"


def test_failure_message_skips_a_cause_that_repeats_its_parent():
    failure = Failure(message="boom", cause=Failure(message="boom", cause=Failure(message="root cause")))

    assert failure_message(failure) == "boom: root cause"


def test_long_failure_messages_are_cut():
    message = failure_message(Failure(message="x" * 5000))

    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("…")


def test_the_failure_message_joins_the_causes_outermost_first_without_repeats() -> None:
    try:
        try:
            raise RuntimeError("model said no")
        except RuntimeError as inner:
            raise ValueError("activity failed") from inner
    except ValueError as outer:
        assert failure_message(outer) == "activity failed: model said no"
    assert failure_message(KeyError()) == "KeyError"


def test_temporal_wrappers_give_way_to_the_cause_that_says_what_went_wrong() -> None:
    cause = ApplicationError("the tool said no", type="ToolError")
    activity = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="agent__a__toolset__t__call_tool",
        activity_id="1",
        retry_state=RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED,
    )
    activity.__cause__ = cause
    workflow = WorkflowFailureError(cause=activity)
    workflow.__cause__ = activity

    assert failure_message(workflow) == "the tool said no"

    from_history = Failure(
        message="Activity task failed",
        activity_failure_info=ActivityFailureInfo(activity_type=ActivityType(name="call_tool")),
        cause=Failure(message="the tool said no", application_failure_info=ApplicationFailureInfo(type="E")),
    )
    assert failure_message(from_history) == "the tool said no"


def test_a_wrapper_without_a_cause_keeps_its_own_message() -> None:
    bare = Failure(
        message="Activity task failed",
        activity_failure_info=ActivityFailureInfo(activity_type=ActivityType(name="call_tool")),
    )
    assert failure_message(bare) == "Activity task failed"
