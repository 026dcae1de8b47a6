"""The agent workflow: one workflow type (`contract.WORKFLOW_NAME`) that runs whichever agent serves the task
queue it was started on.

Deterministic code only. The worker builds the agent and registers it in `served_agents` before it polls, so
the workflow looks the agent up by `workflow.info().task_queue`; model requests and tool calls run as the
agent's activities (registered with `AgentPlugin`).

Run events are published on a workflow stream (`AgentEventStream`) when the agent has an event topic, and
only for runs someone watches: a subscriber announces itself with `SUBSCRIBE_SIGNAL` (sent with the start
by `durable-agents run --stream`). A watched run streams its model requests and publishes tool calls and
text as they happen, and stays open until the subscriber has read the final event; a run nobody watches
makes plain model requests (so a model that cannot stream still runs), publishes only its final event and
finishes at once. `LIVE_EVENTS_QUERY` tells a subscriber what it will see.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import AgentEventStream
    from pydantic_ai.exceptions import (
        AgentRunError,
        ModelAPIError,
        UsageLimitExceeded,
        UserError,
    )
    from pydantic_ai.messages import ModelResponse

    # `import a.b as c` (not `from a import b`): only this form reaches the sandbox's pass-through, so the
    # workflow sees the registry the worker filled in rather than a fresh copy.
    import durable_agents_runtime.served_agents as served_agents
    from durable_agents_api.budget import tighten
    from durable_agents_api.contract import (
        EVENT_TOPIC_QUERY,
        LIVE_EVENTS_QUERY,
        PYTHON_MODEL_PREFIX,
        SUBSCRIBE_SIGNAL,
        WORKFLOW_NAME,
        LiveEvents,
        RunInput,
        RunOutput,
    )
    from durable_agents_runtime import pydantic_ai_internals
    from durable_agents_runtime.agent_turn import check_deps, check_size, explain_model_error, turn_output
    from durable_agents_runtime.approvals import ApprovalGate, DecisionHandlers
    from durable_agents_runtime.budgets import budget_exceeded, over_budget, response_cost, usage_limits
    from durable_agents_runtime.sub_agents import CallTree
    from durable_agents_runtime.usage_metrics import record_usage

__all__ = [
    "EVENT_TOPIC_QUERY",
    "LIVE_EVENTS_QUERY",
    "SUBSCRIBE_SIGNAL",
    "AgentRunWorkflow",
]


_DRAIN_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=WORKFLOW_NAME)
class AgentRunWorkflow(DecisionHandlers):
    """One agent run: the prompt in, the output, usage and tool calls out."""

    @workflow.init
    def __init__(self, run: RunInput) -> None:
        info = workflow.info()
        # The version of the worker that first ran this task: in `dev`, two versions share one process.
        running_version = info.get_current_deployment_version()
        build_id = running_version.build_id if running_version is not None else None
        self._served = served_agents.lookup(info.task_queue, build_id)
        # The stream must be created here (its handlers are registered from the workflow's init).
        self._events = AgentEventStream(drain_timeout=_DRAIN_TIMEOUT) if self._served.event_topic else None
        self._subscribed = False
        self._no_live_text = self._why_no_live_text(run)
        self.approval_gate = ApprovalGate(self._served.approvals)
        """Read by the agent's `WaitForDecisions` capability when a tool call needs a decision."""
        served = self._served
        self.call_tree = CallTree.of_run(
            run,
            agent_name=served.agent.name or "agent",
            sub_agents=served.sub_agents,
            max_depth=served.max_sub_agent_depth,
        )
        self.call_tree.budget = tighten(served.budget, run.budget)
        """Read by the sub-agent tools (`sub_agents.call_agent`): this run's place in a tree of calls."""

    def _why_no_live_text(self, run: RunInput) -> str | None:
        if run.model is not None and run.model.startswith(PYTHON_MODEL_PREFIX):
            return f"this run's model {run.model!r} comes from code and is not streamed live"
        if not self._served.model_streams:
            return "the agent's model cannot stream (e.g. a FunctionModel without stream_function)"
        return None

    @property
    def live_events(self) -> bool:
        """Whether this run streams and publishes its events as they happen (read by the agent's
        durability capability at every step): someone watches, and the model can stream."""
        return self._subscribed and self._no_live_text is None

    @workflow.signal(name=SUBSCRIBE_SIGNAL)
    def subscribe(self) -> None:
        """A live subscriber is watching: publish events from now on, and keep the finished run open until
        it has read the final event."""
        self._subscribed = True

    @workflow.query(name=EVENT_TOPIC_QUERY)
    def event_topic(self) -> str | None:
        """The workflow stream topic this run publishes events to, or None."""
        return self._served.event_topic

    @workflow.query(name=LIVE_EVENTS_QUERY)
    def live_events_info(self) -> LiveEvents:
        """What a subscriber of this run sees: the topic, and why there is no live text if there is none."""
        return LiveEvents(topic=self._served.event_topic, no_live_text=self._no_live_text)

    @workflow.run
    async def run(self, run: RunInput) -> RunOutput:
        """Run the agent on the prompt and return its output, usage and tool calls."""
        meter = workflow.metric_meter()
        meter.create_counter("durable_agents_runs_started", "Agent runs started.").add(1)
        try:
            output = await self._run(run)
        except (FailureError, UserError, AgentRunError):
            # These fail the workflow (PydanticAIPlugin); anything else fails the task, which is retried.
            meter.create_counter("durable_agents_runs_failed", "Agent runs that failed.").add(1)
            raise
        meter.create_counter("durable_agents_runs_completed", "Agent runs that completed.").add(1)
        return output

    async def _run(self, run: RunInput) -> RunOutput:
        agent = self._served.agent
        deps = check_deps(
            agent,
            run.deps,
            how="durable-agents run --deps JSON, or spec.deps of the AgentRun",
            passed_by="the run",
        )
        budget = self.call_tree.budget
        try:
            result = await agent.run(
                run.prompt, deps=deps, model=run.model, usage_limits=usage_limits(budget)
            )
        except (UsageLimitExceeded, FailureError) as error:
            limit = over_budget(error)
            if limit is None:
                raise
            # Not chained: the message says it all, and the cause would be the innermost error shown.
            raise budget_exceeded(limit, budget) from None
        except ModelAPIError as error:
            raise ApplicationError(
                explain_model_error(error),
                type=pydantic_ai_internals.public_error_class(error),
                non_retryable=True,
            ) from error
        finally:
            await self._close_events()
        responses = [m for m in result.new_messages() if isinstance(m, ModelResponse)]
        record_usage(self.call_tree.agent_name, responses)
        output = turn_output(result).model_copy(
            update={
                "decided_calls": list(self.approval_gate.log),
                "children": list(self.call_tree.children),
                "cost_usd": self._cost(responses),
            }
        )
        check_size(output, "the run's output")
        return output

    def _cost(self, responses: list[ModelResponse]) -> float | None:
        own = response_cost(responses)
        children = self.call_tree.child_costs
        if own is None or None in children:
            return None
        return own + sum(c for c in children if c is not None)

    async def _close_events(self) -> None:
        if self._events is None:
            return
        if self._subscribed:
            await self._events.close()
            return
        # Nobody announced they are watching: release any pollers and finish without waiting for a reader.
        self._events.stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
