"""The session workflow: one conversation with the agent serving the task queue, one workflow per session
id (`contract.session_workflow_id`), holding the message history.

Each user message is an Update (`SESSION_MESSAGE_UPDATE`) answered with the agent's reply; the first one
starts the session (update-with-start). Turns run one at a time in the order their Updates were accepted
(an `asyncio.Lock`, which is FIFO and deterministic in workflow code), so two messages sent at once are
answered in order and never interleave.

The session stays bounded: between turns it continues as a new run (carrying its messages, counters and
event stream state) when Temporal suggests it or once its history has `sessions.continueAsNewAfterEvents`
events; before each turn, a message history over `sessions.history.maxBytes` is cut to its last turns or
has its older turns summarised (`session_history`). With no message for `sessions.idleTimeout` it ends;
later messages are refused (the CLI says the session ended and why).

A turn can wait for people as a run does: its calls that need approval or outside input are pending calls
of the session workflow (marked with the turn's message id), decided through the same Update; the session
does not idle out or continue as new while a turn waits.

Deterministic code only; the agent's model requests and tool calls are its activities, as in a run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import TypeAdapter
    from pydantic_ai.durable_exec.temporal import AgentEventStream
    from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
    from temporalio.contrib.workflow_streams import WorkflowStreamState

    # `import a.b as c`: the form that reaches the sandbox's pass-through (see workflow.py).
    import durable_agents_runtime.served_agents as served_agents
    from durable_agents_api.config import DEFAULT_MAX_SUB_AGENT_DEPTH, format_duration
    from durable_agents_api.contract import (
        EVENT_TOPIC_QUERY,
        SESSION_ENDED,
        SESSION_HISTORY_QUERY,
        SESSION_INFO_QUERY,
        SESSION_MESSAGE_UPDATE,
        SESSION_WORKFLOW_NAME,
        SessionEnd,
        SessionEntry,
        SessionInfo,
        SessionMessage,
        SessionReply,
        SessionStart,
        session_memo,
    )
    from durable_agents_runtime import session_history
    from durable_agents_runtime.agent_turn import check_deps, check_size, run_turn, turn_output
    from durable_agents_runtime.approvals import ApprovalGate, DecisionHandlers
    from durable_agents_runtime.sub_agents import CallTree
    from durable_agents_runtime.temporal_internals import stream_offset

__all__ = ["AgentSessionWorkflow"]

_SUMMARY_TIMEOUT = timedelta(minutes=2)
_STATE_ADAPTER = TypeAdapter(WorkflowStreamState)


@workflow.defn(name=SESSION_WORKFLOW_NAME)
class AgentSessionWorkflow(DecisionHandlers):
    """A conversation: messages in (Updates), replies out, the history carried across continue-as-new."""

    @workflow.init
    def __init__(self, start: SessionStart) -> None:
        info = workflow.info()
        # The version of the worker that first ran this task: in `dev`, two versions share one process.
        running_version = info.get_current_deployment_version()
        self._served = served_agents.lookup(
            info.task_queue, running_version.build_id if running_version is not None else None
        )
        self._settings = self._served.sessions
        self._session_id = start.session_id
        self._messages: list[ModelMessage] = ModelMessagesTypeAdapter.validate_python(start.messages)
        self._turns = start.turns
        self._trimmed = start.trimmed_turns
        self._continued = start.continued_as_new
        self._last_activity = start.last_activity or workflow.now()
        prior = _STATE_ADAPTER.validate_python(start.stream_state) if start.stream_state else None
        # Created here: the stream registers its handlers from the workflow's init.
        self._events = AgentEventStream(prior_state=prior) if self._served.event_topic else None
        self._lock = asyncio.Lock()
        self._in_flight = 0
        self._changes = 0
        """Bumped when a message arrives and when a turn ends: the idle clock starts over."""
        self._turns_this_run = 0
        self._live = False
        self._ended: SessionEnd | None = None
        self.approval_gate = ApprovalGate(self._served.approvals)
        self.call_tree: CallTree | None = None
        """The current turn's place in a tree of agent calls (read by the sub-agent tools)."""
        """Read by the agent's `WaitForDecisions` capability when a turn's tool call needs a decision; a
        waiting turn is decided like a run (`DecisionHandlers`), the calls marked with the turn's id."""

    @property
    def live_events(self) -> bool:
        """Whether the turn in progress streams its events (read by the agent's durability capability)."""
        return self._live and self._served.model_streams

    # --- messages ---------------------------------------------------------------------------------------

    @workflow.update(name=SESSION_MESSAGE_UPDATE)
    async def message(self, message: SessionMessage) -> SessionReply:
        """Answer one user message after every message accepted before it."""
        self._in_flight += 1
        self._changes += 1
        try:
            async with self._lock:
                if self._ended is not None:
                    raise ApplicationError(self._ended_message(), type=SESSION_ENDED, non_retryable=True)
                return await self._turn(message)
        finally:
            self._in_flight -= 1
            self._changes += 1
            self._last_activity = workflow.now()

    @message.validator
    def _accept(self, message: SessionMessage) -> None:
        if self._ended is not None:
            raise ApplicationError(self._ended_message(), type=SESSION_ENDED, non_retryable=True)
        if not message.prompt.strip():
            raise ValueError("the message is empty: send some text")

    def _ended_message(self) -> str:
        assert self._ended is not None
        return f"session {self._session_id!r} has ended ({self._ended.reason}): start a new session"

    async def _turn(self, message: SessionMessage) -> SessionReply:
        agent = self._served.agent
        how = "durable-agents chat --deps JSON, or spec.deps of the AgentRun"
        deps = check_deps(agent, message.deps, how=how)
        await self._bound_history()
        self._start_stream_turn()
        self._live = message.stream
        served = self._served
        # Each turn is a run of its own: the agent's budget, and the sub-agents it calls.
        self.call_tree = CallTree(
            agent.name or "agent",
            served.sub_agents,
            max_depth=served.max_sub_agent_depth or DEFAULT_MAX_SUB_AGENT_DEPTH,
            budget=served.budget,
            call_scope=f"{workflow.info().workflow_id}/turn-{self._turns + 1}",
        )
        try:
            result = await run_turn(
                agent,
                message.prompt,
                deps=deps,
                model=message.model,
                message_history=self._messages,
                budget=served.budget,
            )
        finally:
            self._live = False
        reply = SessionReply(
            **turn_output(result).model_dump(exclude={"children"}),
            children=list(self.call_tree.children),
            session_id=self._session_id,
            turn=self._turns + 1,
        )
        check_size(reply, f"the reply to turn {reply.turn}")
        self._messages = result.all_messages()
        self._turns += 1
        self._turns_this_run += 1
        workflow.upsert_memo(session_memo(self._session_id, self._turns, workflow.now().isoformat()))
        return reply

    def _start_stream_turn(self) -> None:
        """Drop the previous turns' events: a reader of this turn starts at `stream_offset`."""
        if self._events is not None:
            stream = self._events.stream
            stream.truncate(stream_offset(stream))

    async def _bound_history(self) -> None:
        history = self._settings.history
        if session_history.history_bytes(self._messages) <= history.max_bytes:
            return
        if history.policy == "keepLast":
            bounded = session_history.keep_last(self._messages, history.keep_last)
            self._messages, self._trimmed = bounded.messages, self._trimmed + bounded.dropped_turns
            return
        older, kept = session_history.split_for_summary(self._messages, history.keep_last)
        if not older:
            return
        summary = await workflow.execute_activity(
            session_history.SUMMARIZE_ACTIVITY,
            session_history.SummarizeInput(transcript=session_history.transcript(older)),
            result_type=str,
            start_to_close_timeout=_SUMMARY_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30)),
        )
        dropped = session_history.keep_last(self._messages, history.keep_last).dropped_turns
        self._messages = session_history.with_summary(summary, older, kept)
        self._trimmed += dropped

    # --- queries ----------------------------------------------------------------------------------------

    @workflow.query(name=SESSION_INFO_QUERY)
    def info(self) -> SessionInfo:
        """The session's counters, state and history size."""
        return SessionInfo(
            session_id=self._session_id,
            turns=self._turns,
            state="ended" if self._ended is not None else "active",
            last_activity=self._last_activity,
            continued_as_new=self._continued,
            history_messages=len(self._messages),
            history_bytes=session_history.history_bytes(self._messages),
            trimmed_turns=self._trimmed,
            stream_offset=stream_offset(self._events.stream) if self._events is not None else 0,
        )

    @workflow.query(name=SESSION_HISTORY_QUERY)
    def history(self) -> list[SessionEntry]:
        """The conversation the session carries (older turns may have been cut or summarised)."""
        return session_history.transcript(self._messages)

    @workflow.query(name=EVENT_TOPIC_QUERY)
    def event_topic(self) -> str | None:
        """The workflow stream topic the session's turns publish events to, or None."""
        return self._served.event_topic

    # --- the session's life -----------------------------------------------------------------------------

    def _continue_due(self) -> bool:
        if self._turns_this_run == 0 or self._in_flight:
            return False
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._settings.continue_as_new_after_events
        )

    @workflow.run
    async def run(self, start: SessionStart) -> SessionEnd:
        """Serve messages until the session is idle for `sessions.idleTimeout`, continuing as new when due."""
        idle = self._settings.idle_timeout
        while True:
            seen = self._changes
            try:
                await workflow.wait_condition(
                    lambda seen=seen: self._changes != seen or self._continue_due(), timeout=idle
                )
            except TimeoutError:
                if self._in_flight == 0 and self._changes == seen:
                    break
                continue
            if self._continue_due():
                await self._continue_as_new()
        reason = f"idle for {format_duration(idle)}, sessions.idleTimeout"
        self._ended = SessionEnd(
            session_id=self._session_id, turns=self._turns, reason=reason, ended_at=workflow.now()
        )
        await self._quiesce()
        return self._ended

    async def _quiesce(self) -> None:
        if self._events is not None:
            self._events.stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _continue_as_new(self) -> None:
        stream_state = None
        if self._events is not None:
            stream = self._events.stream
            stream.truncate(stream_offset(stream))
        await self._quiesce()
        if self._events is not None:
            stream_state = _STATE_ADAPTER.dump_python(self._events.stream.get_state(), mode="json")
        workflow.continue_as_new(
            SessionStart(
                session_id=self._session_id,
                messages=ModelMessagesTypeAdapter.dump_python(self._messages, mode="json"),
                turns=self._turns,
                trimmed_turns=self._trimmed,
                continued_as_new=self._continued + 1,
                last_activity=self._last_activity,
                stream_state=stream_state,
            ),
            memo=session_memo(self._session_id, self._turns, self._last_activity.isoformat()),
        )
