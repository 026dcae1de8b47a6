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
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import TypeAdapter, ValidationError
    from pydantic_ai.durable_exec.temporal import AgentEventStream
    from pydantic_ai.exceptions import (
        AgentRunError,
        ModelAPIError,
        ModelAuthenticationError,
        ModelConnectionError,
        ModelContextWindowExceededError,
        ModelHTTPError,
        ModelNotFoundError,
        ModelQuotaExceededError,
        ModelRateLimitError,
        ModelRequestRejectedError,
        UserError,
    )
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.run import AgentRunResult
    from pydantic_core import to_jsonable_python

    # `import a.b as c` (not `from a import b`): only this form reaches the sandbox's pass-through, so the
    # workflow sees the registry the worker filled in rather than a fresh copy.
    import durable_agents_runtime.served_agents as served_agents
    from durable_agents_api.contract import (
        APPROVALS_QUERY,
        DECIDE_UPDATE,
        EVENT_TOPIC_QUERY,
        LIVE_EVENTS_QUERY,
        PYTHON_MODEL_PREFIX,
        SUBSCRIBE_SIGNAL,
        WORKFLOW_NAME,
        DecisionOutcome,
        Decisions,
        LiveEvents,
        PendingCall,
        RunInput,
        RunOutput,
        RunUsageSummary,
        ToolCallRecord,
    )
    from durable_agents_runtime import pydantic_ai_internals
    from durable_agents_runtime.approvals import ApprovalGate
    from durable_agents_runtime.payload_limits import MAX_PAYLOAD_BYTES, PAYLOAD_TOO_LARGE

__all__ = [
    "EVENT_TOPIC_QUERY",
    "LIVE_EVENTS_QUERY",
    "SUBSCRIBE_SIGNAL",
    "AgentRunWorkflow",
    "explain_model_error",
    "summarize",
]


_DRAIN_TIMEOUT = timedelta(seconds=30)


def _provider_message(error: ModelAPIError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(body) if body else error.message


def explain_model_error(error: ModelAPIError) -> str:
    """What a model request failure means and what to change, for the run's final error."""
    status = f"HTTP {error.status_code}, " if isinstance(error, ModelHTTPError) else ""
    said = f"{status}model {error.model_name}: {_provider_message(error)}"
    if isinstance(error, ModelRateLimitError):
        return (
            f"the model provider rate-limited every attempt ({said}); the retry policy gave up. Raise "
            "activities.model.retry (maximumAttempts, maximumInterval) or lower the request rate"
        )
    if isinstance(error, ModelQuotaExceededError):
        return f"the model provider's quota is exhausted ({said}): raise the quota or wait for it to reset"
    if isinstance(error, ModelAuthenticationError):
        return f"the model provider refused the credentials ({said}): set a valid API key for the provider"
    if isinstance(error, ModelNotFoundError):
        return f"the model provider does not know this model ({said}): fix agent.model or the run's model"
    if isinstance(error, ModelContextWindowExceededError):
        return f"the conversation no longer fits the model's context window ({said}): shorten the prompt"
    if isinstance(error, ModelRequestRejectedError) or (
        isinstance(error, ModelHTTPError) and 400 <= error.status_code < 500
    ):
        return (
            f"the model provider rejected the request ({said}); retrying cannot help. Fix what it names, "
            "e.g. agent.modelSettings or the prompt"
        )
    if isinstance(error, ModelConnectionError):
        return (
            f"could not reach the model provider ({said}) within the retry policy: check model.baseUrl and "
            "the network, or raise activities.model.retry"
        )
    return (
        f"the model request kept failing ({said}) until the retry policy gave up: check the provider's "
        "status, or raise activities.model.retry"
    )


def summarize(result: AgentRunResult[Any]) -> RunOutput:
    """The workflow result for a finished agent run: output, usage and the tool calls made."""
    output = to_jsonable_python(result.output)
    # The output tool (structured output) is how the run ended, not a tool the agent used.
    output_tool = pydantic_ai_internals.output_tool_name(result)
    tool_calls = [
        ToolCallRecord(tool_name=part.tool_name, args=part.args_as_dict())
        for message in result.all_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart) and part.tool_name != output_tool
    ]
    usage = result.usage
    return RunOutput(
        output=output,
        output_text=output if isinstance(output, str) else TypeAdapter(Any).dump_json(output).decode(),
        usage=RunUsageSummary(
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tool_calls=usage.tool_calls,
        ),
        tool_calls=tool_calls,
    )


def _accepts_none(deps_type: Any) -> bool:
    try:
        TypeAdapter(deps_type).validate_python(None)
    except (ValidationError, TypeError):
        return False
    return True


def _type_name(deps_type: Any) -> str:
    return getattr(deps_type, "__name__", None) or repr(deps_type)


@workflow.defn(name=WORKFLOW_NAME)
class AgentRunWorkflow:
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

    @workflow.query(name=APPROVALS_QUERY)
    def pending_calls(self) -> list[PendingCall]:
        """The tool calls this run waits on: for approval, or for their result from outside."""
        return list(self.approval_gate.pending.values())

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, decisions: Decisions) -> DecisionOutcome:
        """Approve or deny pending calls, or answer external ones; the run goes on once all are decided.
        Who decided is in the Update's input, so the workflow history records it."""
        return self.approval_gate.decide(decisions)

    @decide.validator
    def _validate_decisions(self, decisions: Decisions) -> None:
        self.approval_gate.validate(decisions)

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
        deps = self._deps(run)
        try:
            result = await agent.run(
                run.prompt,
                deps=deps,
                model=run.model,
            )
        except ModelAPIError as error:
            raise ApplicationError(
                explain_model_error(error),
                type=pydantic_ai_internals.public_error_class(error),
                non_retryable=True,
            ) from error
        finally:
            await self._close_events()
        output = summarize(result)
        size = len(output.model_dump_json())
        if size > MAX_PAYLOAD_BYTES:
            raise ApplicationError(
                f"the run's output is {size} bytes, over Temporal's payload size limit ({MAX_PAYLOAD_BYTES} "
                "bytes): ask the agent for a shorter answer, or have a tool store the result and return a "
                "reference to it",
                type=PAYLOAD_TOO_LARGE,
                non_retryable=True,
            )
        return output

    def _deps(self, run: RunInput) -> Any:
        agent = self._served.agent
        deps_type = agent.deps_type
        # pydantic-ai's Agent defaults to NoneType; some wrappers report `object`: neither declares deps.
        declared = deps_type not in (type(None), object)
        if run.deps is None:
            if declared and not _accepts_none(deps_type):
                raise ApplicationError(
                    f"agent {agent.name!r} needs deps of type {_type_name(deps_type)}, but the run passed "
                    "none: pass them (durable-agents run --deps JSON, or spec.deps of the AgentRun)",
                    type="InvalidDeps",
                    non_retryable=True,
                )
            return None
        if not declared:
            raise ApplicationError(
                f"agent {agent.name!r} declares no deps type, but the run passed deps: leave deps out, or "
                "declare deps_type= on the Agent so the deps can cross into its activities",
                type="InvalidDeps",
                non_retryable=True,
            )
        try:
            return TypeAdapter(deps_type).validate_python(run.deps)
        except ValidationError as exc:
            raise ApplicationError(
                f"deps do not match agent {agent.name!r}'s deps type {_type_name(deps_type)}: {exc}",
                type="InvalidDeps",
                non_retryable=True,
            ) from None

    async def _close_events(self) -> None:
        if self._events is None:
            return
        if self._subscribed:
            await self._events.close()
            return
        # Nobody announced they are watching: release any pollers and finish without waiting for a reader.
        self._events.stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
