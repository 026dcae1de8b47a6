"""An AgentRun's workflow input and its status before, during and after the workflow. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from durable_agents_api.contract import ChildRun, RunOutput, RunUsageSummary
from durable_agents_api.resources import AgentRun, AgentRunStatus, RunUsage
from durable_agents_operator.agentrun_workflow import (
    MAX_MESSAGE_BYTES,
    MAX_OUTPUT_BYTES,
    failed_status,
    finished_message,
    pending_status,
    run_input,
    running_status,
    succeeded_status,
)

NOW = datetime(2026, 11, 26, 12, 0, 30, 500, tzinfo=UTC)


def output(text: str = "done", **usage: int) -> RunOutput:
    return RunOutput(output=text, output_text=text, usage=RunUsageSummary(**usage))


def test_the_workflow_input_carries_the_prompt_deps_model_override_and_budget() -> None:
    run = AgentRun.model_validate(
        {
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {
                "agentRef": {"name": "a"},
                "prompt": "hi",
                "deps": {"city": "Paris"},
                "model": "test",
                "budget": {"totalTokens": 1000},
            },
        }
    )
    assert run_input(run).model_dump(exclude_defaults=True) == {
        "prompt": "hi",
        "deps": {"city": "Paris"},
        "model": "test",
        "budget": {"total_tokens": 1000},
    }


def test_a_succeeded_run_records_output_usage_children_and_completion_in_whole_seconds() -> None:
    child = ChildRun(workflow_id="agentrun-1/call-c1", agent="billing", task_queue="ns.billing")
    result = output(requests=2, input_tokens=10, output_tokens=5, tool_calls=1)
    status = succeeded_status(result.model_copy(update={"children": [child], "cost_usd": 0.5}), completed=NOW)
    assert status == {
        "phase": "Succeeded",
        "output": "done",
        "outputSize": 4,
        "outputTruncated": False,
        "usage": {"requests": 2, "inputTokens": 10, "outputTokens": 5, "toolCalls": 1},
        "costUsd": 0.5,
        "children": 1,
        "childWorkflowIds": ["agentrun-1/call-c1"],
        "completionTime": "2026-11-26T12:00:30Z",
        "message": None,
    }
    assert AgentRunStatus.model_validate(status).usage == RunUsage(
        requests=2, input_tokens=10, output_tokens=5, tool_calls=1
    )


def test_a_long_output_is_cut_on_a_character_boundary_and_keeps_its_full_size() -> None:
    text = "é" * MAX_OUTPUT_BYTES  # two bytes each
    status = succeeded_status(output(text), completed=NOW)
    assert status["outputTruncated"] is True
    assert status["outputSize"] == 2 * MAX_OUTPUT_BYTES
    assert status["output"] == "é" * (MAX_OUTPUT_BYTES // 2)


def test_a_failed_run_keeps_a_short_message_and_a_completion_time_only_when_known() -> None:
    assert failed_status("boom", completed=NOW) == {
        "phase": "Failed",
        "message": "boom",
        "completionTime": "2026-11-26T12:00:30Z",
    }
    long = failed_status("x" * 5000, completed=None)
    assert "completionTime" not in long
    assert len(long["message"]) == MAX_MESSAGE_BYTES


def test_pending_and_running_runs_say_why_and_where() -> None:
    assert pending_status("Temporal is down") == {"phase": "Pending", "message": "Temporal is down"}
    assert running_status(workflow_id="agentrun-1", task_queue="ns.a", started=NOW, generation=2) == {
        "phase": "Running",
        "workflowId": "agentrun-1",
        "taskQueue": "ns.a",
        "startTime": "2026-11-26T12:00:30Z",
        "observedGeneration": 2,
        "message": None,
    }


def test_the_finished_event_names_the_workflow_its_phase_and_why() -> None:
    assert (
        finished_message("agentrun-1", {"phase": "Succeeded", "message": None})
        == "workflow agentrun-1 succeeded"
    )
    failed = {"phase": "Failed", "message": "boom"}
    assert finished_message("agentrun-1", failed) == "workflow agentrun-1 failed: boom"


def test_the_status_usage_has_every_field_of_the_workflow_result_usage() -> None:
    assert set(RunUsage.model_fields) == set(RunUsageSummary.model_fields)
