"""Agents that call agents: a tool call of one agent's run starts another DurableAgent's run as a Temporal
child workflow on the callee's task queue.

The callee's workers run the child with its own activity settings, approvals and versions; the caller's
workflow only waits for the result, so either side's worker can die without losing the call. The child's
id derives from the caller's workflow id and the tool call id (`child_workflow_id`): a replayed call
finds the child it started, and `REJECT_DUPLICATE` refuses to run a finished child a second time: a
start that finds the id taken (a reset parent, a retried parent run) waits for that run's result instead
(`existing_child_result`, an activity, since workflow code cannot wait on a workflow it did not start). The
child's usage is added into the caller's run usage, so the caller's budget counts it and its result
reports it; the child gets what is left of the caller's budget, and the depth of the call tree is bounded
(`agent.maxSubAgentDepth`), which also bounds a cycle of agents calling each other.

Declarative agents get one tool per `agent.subAgents` entry (toolset `SUB_AGENTS_TOOLSET_ID`); code agents
call `call_agent` from a tool that runs in the workflow (`metadata={"temporal": False}`).

Deterministic code only: the tools run in workflow code, not in activities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

from durable_agents_api.budget import BUDGET_EXCEEDED, UsageBudget, remaining
from durable_agents_api.config import DEFAULT_MAX_SUB_AGENT_DEPTH, SubAgentSpec
from durable_agents_api.contract import WORKFLOW_NAME, ChildRun, RunInput, RunOutput, child_workflow_id

__all__ = [
    "SUB_AGENTS_TOOLSET_ID",
    "SUB_AGENT_DEPTH_EXCEEDED",
    "SUB_AGENT_FAILED",
    "SUB_AGENT_RESULT_ACTIVITY",
    "CallTree",
    "call_agent",
    "depth_error",
    "existing_child_result",
    "sub_agents_toolset",
]

SUB_AGENTS_TOOLSET_ID = "sub_agents"
"""Toolset id of a declarative agent's sub-agent tools (part of the contract: it names an activity)."""
SUB_AGENT_DEPTH_EXCEEDED = "SubAgentDepthExceeded"
"""Error type of a call that would make the call tree deeper than its limit."""
SUB_AGENT_FAILED = "SubAgentFailed"
"""Error type of a call whose child run failed (the child's error is in the message)."""
SUB_AGENT_RESULT_ACTIVITY = "durable-agents.sub-agent-result"
"""Activity waiting for the result of a child run that was already started (part of the contract)."""
_RESULT_HEARTBEAT = timedelta(seconds=10)
"""The worker heartbeats every running activity (`heartbeats`): a dead one is noticed this soon."""


@activity.defn(name=SUB_AGENT_RESULT_ACTIVITY)
async def existing_child_result(workflow_id: str) -> RunOutput:
    """The result of the agent run `workflow_id`, once it finishes; its failure is final."""
    from temporalio.client import WorkflowFailureError

    from durable_agents_runtime.failures import failure_message

    handle = activity.client().get_workflow_handle(workflow_id, result_type=RunOutput)
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        raise ApplicationError(failure_message(error), type=SUB_AGENT_FAILED, non_retryable=True) from None


@dataclass
class CallTree:
    """Where a run sits in a tree of agents calling agents, and the children it started.

    A workflow that runs agents holds one as `call_tree`; the sub-agent tools find it there.
    """

    agent_name: str
    sub_agents: Sequence[SubAgentSpec]
    callers: Sequence[str] = ()
    """The agents that called this run, outermost first."""
    max_depth: int = DEFAULT_MAX_SUB_AGENT_DEPTH
    budget: UsageBudget | None = None
    children: list[ChildRun] = field(default_factory=list[ChildRun])
    call_scope: str | None = None
    """What child ids derive from, with the tool call id: the workflow id (None), or the workflow id and
    the turn in a session, where tool call ids need only be unique within a turn."""
    child_costs: list[float | None] = field(default_factory=list[float | None])
    """The estimated cost of each child that finished (None: a price was unknown)."""

    @classmethod
    def of_run(
        cls, run: RunInput, *, agent_name: str, sub_agents: Sequence[SubAgentSpec], max_depth: int | None
    ) -> CallTree:
        """The call tree of `run`: a child inherits the outermost run's depth limit."""
        limit = run.max_sub_agent_depth or max_depth or DEFAULT_MAX_SUB_AGENT_DEPTH
        return cls(agent_name, sub_agents, tuple(run.callers), limit)


def depth_error(chain: Sequence[str], limit: int) -> ApplicationError:
    """The error of a call that would make the call tree `chain` (outermost first, the callee last) deeper
    than `limit`."""
    return ApplicationError(
        f"sub-agent call refused: {' -> '.join(chain)} would be {len(chain) - 1} calls deep, over the limit "
        f"of {limit} (agent.maxSubAgentDepth of {chain[0]!r}); agents calling each other in a cycle end "
        "here: break the cycle, or raise maxSubAgentDepth",
        type=SUB_AGENT_DEPTH_EXCEEDED,
        non_retryable=True,
    )


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _child_failed(name: str, workflow_id: str, error: ChildWorkflowError) -> ApplicationError:
    cause = _innermost(error)
    kind = cause.type if isinstance(cause, ApplicationError) else None
    message = cause.message if isinstance(cause, ApplicationError) else str(cause)
    if kind in (SUB_AGENT_DEPTH_EXCEEDED, BUDGET_EXCEEDED):
        # The limit is the story: keep its type so the outermost run fails with it.
        return ApplicationError(message, type=kind, non_retryable=True)
    return ApplicationError(
        f"sub-agent {name!r} (workflow {workflow_id}) failed: {message}",
        type=SUB_AGENT_FAILED,
        non_retryable=True,
    )


def _call_tree(name_or_ref: str) -> tuple[CallTree, SubAgentSpec]:
    from pydantic_ai.exceptions import UserError

    if not workflow.in_workflow():
        raise UserError(
            "call_agent starts a child workflow, so it must run in workflow code: give the tool "
            "metadata={'temporal': False} (it then runs in the workflow, not in an activity)"
        )
    tree = getattr(workflow.instance(), "call_tree", None)
    if not isinstance(tree, CallTree):
        raise UserError("call_agent works in agent runs and session turns only")
    spec = next((s for s in tree.sub_agents if s.name == name_or_ref), None) or next(
        (s for s in tree.sub_agents if s.agent_ref == name_or_ref), None
    )
    if spec is None:
        known = ", ".join(s.name for s in tree.sub_agents) or "none"
        raise UserError(
            f"agent {tree.agent_name!r} has no sub-agent {name_or_ref!r} (declared: {known}): add it to "
            "spec.agent.subAgents"
        )
    return tree, spec


async def call_agent(
    ctx: Any, name_or_ref: str, prompt: str, *, deps: Any = None, model: str | None = None
) -> RunOutput:
    """Run the sub-agent `name_or_ref` (an `agent.subAgents` name or agentRef) on `prompt` as a child
    workflow of the current run and return its result; its usage is added to this run's.

    `ctx` is the tool's `RunContext`. Call it from a tool that runs in the workflow
    (`metadata={"temporal": False}`).
    """
    tree, spec = _call_tree(name_or_ref)
    chain = [*tree.callers, tree.agent_name]
    if len(chain) > tree.max_depth:
        raise depth_error([*chain, spec.agent_ref], tree.max_depth)
    child_id = child_workflow_id(tree.call_scope or workflow.info().workflow_id, ctx.tool_call_id)
    usage = ctx.usage
    child_input = RunInput(
        prompt=prompt,
        deps=deps,
        model=model,
        budget=remaining(
            tree.budget,
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tool_calls=usage.tool_calls,
        ),
        callers=chain,
        max_sub_agent_depth=tree.max_depth,
    )
    assert spec.task_queue is not None  # RuntimeConfig requires it
    tree.children.append(ChildRun(workflow_id=child_id, agent=spec.name, task_queue=spec.task_queue))
    try:
        output = await workflow.execute_child_workflow(
            WORKFLOW_NAME,
            child_input,
            id=child_id,
            task_queue=spec.task_queue,
            result_type=RunOutput,
            execution_timeout=spec.timeout,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"sub-agent {spec.name} ({spec.agent_ref})",
        )
    except ChildWorkflowError as error:
        raise _child_failed(spec.name, child_id, error) from error
    except WorkflowAlreadyStartedError:
        output = await _attach(spec, child_id)
    _add_usage(usage, output)
    tree.child_costs.append(output.cost_usd)
    return output


async def _attach(spec: SubAgentSpec, child_id: str) -> RunOutput:
    try:
        return await workflow.execute_activity(
            existing_child_result,
            child_id,
            start_to_close_timeout=spec.timeout,
            heartbeat_timeout=_RESULT_HEARTBEAT,
            summary=f"wait for sub-agent run {child_id}",
        )
    except ActivityError as error:
        cause = error.cause
        if isinstance(cause, FailureError):
            raise ApplicationError(
                f"sub-agent {spec.name!r} (workflow {child_id}) failed: {cause.message}",
                type=SUB_AGENT_FAILED,
                non_retryable=True,
            ) from None
        raise


def _add_usage(usage: Any, output: RunOutput) -> None:
    from pydantic_ai.usage import RunUsage

    child = output.usage
    usage.incr(
        RunUsage(
            requests=child.requests,
            input_tokens=child.input_tokens,
            output_tokens=child.output_tokens,
            tool_calls=child.tool_calls,
        )
    )


def _tool(spec: SubAgentSpec) -> Any:
    async def call(ctx: Any, prompt: str) -> str:
        return (await call_agent(ctx, spec.name, prompt)).output_text

    call.__name__ = spec.name
    return call


def sub_agents_toolset(specs: Sequence[SubAgentSpec]) -> Any:
    """One tool per sub-agent (taking the prompt, returning the callee's output as text), run in the
    workflow; None when there are none."""
    if not specs:
        return None
    from pydantic_ai import RunContext
    from pydantic_ai.toolsets import FunctionToolset

    toolset: FunctionToolset[Any] = FunctionToolset(id=SUB_AGENTS_TOOLSET_ID)
    for spec in specs:
        function = _tool(spec)
        function.__annotations__ = {"ctx": RunContext[Any], "prompt": str, "return": str}
        toolset.add_function(
            function,
            takes_ctx=True,
            name=spec.name,
            description=spec.description
            or f"Ask the agent {spec.agent_ref!r} to do a task; pass the task as the prompt.",
            metadata={"temporal": False},
        )
    return toolset
