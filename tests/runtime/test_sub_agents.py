"""Agents that call agents, and usage budgets: a real dev server, real `durable-agents worker` processes,
the `test` model (which calls every tool once, then answers with their results)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from slow_tools import agent_config, executions, wait_for_entry, worker_env
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from test_dev import cli

from durable_agents_api.budget import UsageBudget
from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import (
    WORKFLOW_NAME,
    RunInput,
    RunOutput,
    SessionMessage,
    child_workflow_id,
)
from durable_agents_runtime.failures import failure_message
from durable_agents_runtime.session_client import send_message

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

SLOW_SECONDS = 3.0
# Worker processes import the test code agents from this directory.
CODE_AGENTS_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parent)}
COMPLETION_BOUND = 120.0
READY_BOUND = 180.0
"""Worker start-up on a busy machine (imports dominate)."""


def caller_config(temporal: Any, name: str, callee_queue: str, **agent: Any) -> RuntimeConfig:
    """An agent (by default with the `test` model) whose one sub-agent, `ask_helper`, is the agent
    serving `callee_queue`."""
    queue = f"{name}-{uuid.uuid4().hex[:8]}"
    # No callee queue: the agent calls itself.
    sub_agent = {
        "name": "ask_helper",
        "agentRef": "helper" if callee_queue else name,
        "taskQueue": callee_queue or queue,
    }
    return RuntimeConfig.model_validate(
        {
            "agent": {"name": name, "subAgents": [sub_agent], **(agent or {"model": "test"})},
            "temporal": {"address": temporal.address, "namespace": temporal.namespace, "taskQueue": queue},
        }
    )


async def failure_of(client: Client, config: RuntimeConfig, **input: Any) -> str:
    """The run's final error as the CLI and AgentRun status show it."""
    began = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failed:
        await client.execute_workflow(
            WORKFLOW_NAME,
            RunInput(**{"prompt": "go", **input}),
            id=f"fail-{uuid.uuid4()}",
            task_queue=config.temporal.task_queue,
            result_type=RunOutput,
            execution_timeout=timedelta(seconds=COMPLETION_BOUND),
        )
    print(f"\nfailed in {time.monotonic() - began:.2f}s")
    return failure_message(failed.value)


async def test_a_call_survives_both_workers_killed_and_starts_the_child_once(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    env = worker_env(log, SLOW_SECONDS)
    child = agent_config(temporal_dev_server, "helper")
    parent = caller_config(temporal_dev_server, "lead", child.temporal.task_queue)
    child_worker = start_worker(child, wait=False, **env)
    parent_worker = start_worker(parent, wait=False, **env)
    child_worker.wait_ready(READY_BOUND)
    parent_worker.wait_ready(READY_BOUND)

    parent_id = f"lead-{uuid.uuid4()}"
    handle = await temporal_client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="Delegate."),
        id=parent_id,
        task_queue=parent.temporal.task_queue,
        result_type=RunOutput,
    )
    await wait_for_entry(log, ("start", "slow_step", child_worker.pid), timeout=30)
    # Mid-call: the parent waits on its child, the child is inside its slow tool. Both workers die.
    parent_worker.kill()
    child_worker.kill()
    killed_at = time.monotonic()
    start_worker(child, wait=False, **env)
    start_worker(parent, wait=False, **env)
    with anyio.fail_after(COMPLETION_BOUND):
        result = await handle.result()
    print(f"\nparent+child SIGKILL → parent completed in {time.monotonic() - killed_at:.1f}s")

    assert "slow:" in result.output_text and "fast:" in result.output_text, result.output_text
    [child_run] = result.children
    assert child_run.workflow_id.startswith(f"{parent_id}/call-")
    assert child_run.task_queue == child.temporal.task_queue
    children = [w async for w in temporal_client.list_workflows(f"ParentWorkflowId = '{parent_id}'")]
    assert [w.id for w in children] == [child_run.workflow_id], "the child was started more than once"
    history = [event async for event in handle.fetch_history_events()]
    initiated = EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    assert sum(1 for event in history if event.event_type == initiated) == 1
    child_result = await temporal_client.get_workflow_handle(
        child_run.workflow_id, result_type=RunOutput
    ).result()
    # The parent's own two model requests (the tool call, the answer) plus the child's.
    assert result.usage.requests == 2 + child_result.usage.requests
    assert result.usage.input_tokens > child_result.usage.input_tokens > 0
    assert result.usage.output_tokens > child_result.usage.output_tokens > 0
    starts = [pid for event, tool, pid in executions(log) if event == "start" and tool == "slow_step"]
    assert len(starts) == 2, "the child's in-flight tool runs again on the child's new worker"


async def test_limits_name_themselves_costs_are_counted_and_a_taken_child_id_is_reused(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any
) -> None:
    looper = caller_config(
        temporal_dev_server, "looper", "", entrypoint="sub_agent_code:looper", maxSubAgentDepth=2
    )
    priced = RuntimeConfig.model_validate(
        {
            "agent": {"name": "priced", "entrypoint": "sub_agent_code:priced"},
            "temporal": {
                "address": temporal_dev_server.address,
                "namespace": temporal_dev_server.namespace,
                "taskQueue": f"priced-{uuid.uuid4().hex[:8]}",
            },
            "budget": {"totalTokens": 500},
        }
    )
    lead = caller_config(temporal_dev_server, "lead", priced.temporal.task_queue)
    workers = [start_worker(c, wait=False, **CODE_AGENTS_ENV) for c in (looper, priced, lead)]
    for worker in workers:
        worker.wait_ready(READY_BOUND)

    # A code agent calling itself through call_agent: the third level is refused, and the outermost run
    # fails saying so.
    message = await failure_of(temporal_client, looper)
    assert "looper -> looper -> looper -> looper would be 3 calls deep, over the limit of 2" in message
    assert "maxSubAgentDepth" in message

    # Within budget: the run's estimated cost is reported (the model is priced as gpt-4o).
    result = await temporal_client.execute_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="go"),
        id=f"priced-{uuid.uuid4()}",
        task_queue=priced.temporal.task_queue,
        result_type=RunOutput,
    )
    assert result.cost_usd is not None and result.cost_usd > 0
    with urllib.request.urlopen(workers[1].metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    labels = r'\{[^}]*agent="priced"[^}]*kind="input"[^}]*model="gpt-4o"[^}]*\}'
    tokens = rf"^durable_agents_tokens\S*{labels} [1-9]"
    assert re.search(tokens, metrics, re.MULTILINE), metrics[-3000:]
    cost = r'^durable_agents_cost_microdollars\S*\{[^}]*agent="priced"[^}]*model="gpt-4o"[^}]*\} [1-9]'
    assert re.search(cost, metrics, re.MULTILINE), metrics[-3000:]
    # A call whose child id is taken (here: started beforehand, as a reset or retried parent finds it)
    # takes that run's result instead of starting a second one. The `test` model's call ids are fixed.
    parent_id = f"lead-{uuid.uuid4()}"
    child_id = child_workflow_id(parent_id, "pyd_ai_tool_call_id__ask_helper")
    await temporal_client.execute_workflow(
        WORKFLOW_NAME, RunInput(prompt="first"), id=child_id, task_queue=priced.temporal.task_queue
    )
    attached = await temporal_client.execute_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="go"),
        id=parent_id,
        task_queue=lead.temporal.task_queue,
        result_type=RunOutput,
    )
    assert "done" in attached.output_text and [c.workflow_id for c in attached.children] == [child_id]
    runs = [w async for w in temporal_client.list_workflows(f"WorkflowId = '{child_id}'")]
    assert len(runs) == 1, "the child ran a second time"
    assert attached.usage.requests == 2 + result.usage.requests

    # The CLI: `runs` shows the parent/child link; `run --budget` counts the child's usage in the parent's
    # budget (1 request each, then the parent's next request would be its third).
    where = ["--task-queue", lead.temporal.task_queue, "--address", temporal_dev_server.address]
    over_id = f"over-{uuid.uuid4()}"
    over = cli("run", "lead", "go", "--budget", "requests=2", "--id", over_id, *where)
    assert over.returncode == 1, over.stdout + over.stderr
    assert "UsageBudgetExceeded: requests 3 (the next request) > limit 2" in over.stdout + over.stderr
    over_child = child_workflow_id(over_id, "pyd_ai_tool_call_id__ask_helper")
    listed = cli("runs", "lead", "--json", *where)
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["id"] == over_id]
    assert (row["status"], row["children"]) == ("failed", [over_child])

    # A session turn calls sub-agents too (child ids derive from the session and the turn).
    reply = await send_message(
        temporal_client,
        agent="lead",
        task_queue=lead.temporal.task_queue,
        session_id=f"s-{uuid.uuid4().hex[:8]}",
        message=SessionMessage(prompt="go"),
    )
    [turn_child] = reply.children
    assert "/turn-1/call-" in turn_child.workflow_id and "done" in reply.output_text
    assert reply.usage.requests == 2 + result.usage.requests

    # A run's own limit tightens the agent's; a looser one cannot lift the agent's 500 tokens.
    tighter = await failure_of(temporal_client, priced, budget=UsageBudget(total_tokens=10))
    assert tighter.startswith("UsageBudgetExceeded: totalTokens "), tighter
    assert "> limit 10 " in tighter
    no_request = await failure_of(temporal_client, priced, budget=UsageBudget(requests=0))
    assert "UsageBudgetExceeded: requests 1 (the next request) > limit 0" in no_request, no_request
    long_prompt = " ".join(["word"] * 600)
    agents_limit = await failure_of(
        temporal_client, priced, prompt=long_prompt, budget=UsageBudget(total_tokens=1_000_000)
    )
    assert "> limit 500 " in agents_limit, agents_limit
