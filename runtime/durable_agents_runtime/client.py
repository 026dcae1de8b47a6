"""The Python client of durable agents: what an application imports to run agents, talk to their sessions
and decide the tool calls they wait on, without speaking the workflow contract by hand.

    async with await AgentsClient.connect() as agents:        # TEMPORAL_ADDRESS etc., or a TemporalSpec
        run_id = await agents.start_run("default.travel", "Where to in May?")
        output = await agents.result(run_id)

`SyncAgentsClient` is the same client for code without an event loop. Every call goes through the
runtime's one implementation (`decisions`, `session_client`, `health`), which the CLI and the HTTP gateway
use too. Failures a caller can act on raise the runtime's errors (`RunNotFoundError`, `RunFailedError`,
`DecisionError`, `SessionError`, `TemporalConnectError`), each naming what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from durable_agents_api.config import TemporalSpec
from durable_agents_api.contract import (
    EVENT_TOPIC,
    EVENT_TOPIC_QUERY,
    LIVE_EVENTS_QUERY,
    SUBSCRIBE_SIGNAL,
    WORKFLOW_NAME,
    DecisionOutcome,
    Decisions,
    LiveEvents,
    PendingCall,
    RunInput,
    RunOutput,
    SessionEntry,
    SessionInfo,
    SessionMessage,
    SessionReply,
)
from durable_agents_runtime import decisions as _decisions
from durable_agents_runtime import session_client as _sessions
from durable_agents_runtime.connect import connect
from durable_agents_runtime.connect_errors import CLI_SETTINGS, SettingNames
from durable_agents_runtime.decisions import RunSummary, status_name
from durable_agents_runtime.errors import (
    RunFailedError,
    RunNotFoundError,
    SessionNotFoundError,
    TemporalConnectError,
)
from durable_agents_runtime.failures import failure_message
from durable_agents_runtime.health import AgentHealth, read_health
from durable_agents_runtime.session_client import SessionSummary

__all__ = ["DEFAULT_ADDRESS", "AgentsClient", "RunInfo", "SyncAgentsClient"]

DEFAULT_ADDRESS = "127.0.0.1:7233"
"""The Temporal frontend used when neither the spec nor `TEMPORAL_ADDRESS` names one."""

QUERY_TIMEOUT = timedelta(seconds=20)
"""Longest a query for a run's event topic waits for a worker to answer."""

STREAM_TAIL_SECONDS = 5.0
"""How long the last events of a session turn may trail its reply before the stream ends without them."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class RunInfo:
    """One run as Temporal describes it."""

    run_id: str
    status: str
    """`running`, `completed`, `failed`, `canceled`, `terminated`, `timedOut`, `continuedAsNew`."""
    task_queue: str
    started: datetime | None
    closed: datetime | None


class AgentsClient:
    """Runs, sessions, decisions and health of durable agents, over one Temporal connection.

    Agents are addressed by their task queue (`<namespace>.<name>` unless the manifest names another);
    runs by their workflow id, as `start_run` returns it.
    """

    def __init__(self, temporal: Client) -> None:
        """Wrap a Temporal client that has pydantic-ai's plugin (as `connect` gives)."""
        self._temporal = temporal

    @classmethod
    async def connect(
        cls,
        spec: TemporalSpec | None = None,
        *,
        address: str | None = None,
        namespace: str | None = None,
        settings: SettingNames = CLI_SETTINGS,
    ) -> AgentsClient:
        """Connect from `spec` (default: `DEFAULT_ADDRESS`, namespace `default`) with Temporal's standard
        environment variables over it (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
        `TEMPORAL_TLS*`), and `address`/`namespace` over both. A failure raises `TemporalConnectError`."""
        if spec is None:
            spec = TemporalSpec.model_validate({"address": DEFAULT_ADDRESS, "taskQueue": "unused"})
        overrides: dict[str, Any] = {}
        if address:
            overrides["target_host"] = address
        if namespace:
            overrides["namespace"] = namespace
        return cls(await connect(spec, overrides=overrides, settings=settings))

    async def __aenter__(self) -> AgentsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @property
    def temporal(self) -> Client:
        """The Temporal client underneath, for what this client does not cover."""
        return self._temporal

    @property
    def namespace(self) -> str:
        return self._temporal.namespace

    # --- runs ------------------------------------------------------------------------------------------

    async def start_run(
        self,
        task_queue: str,
        prompt: str,
        *,
        deps: Any = None,
        model: str | None = None,
        run_id: str | None = None,
        watch: bool = False,
    ) -> str:
        """Start a run of the agent on `task_queue` and return its id (`run-<uuid>` unless given).

        With `watch`, the run waits (bounded) for a subscriber to read its final event: pass it when
        `run_events` will follow, so no event is missed."""
        handle = await self._temporal.start_workflow(
            WORKFLOW_NAME,
            RunInput(prompt=prompt, deps=deps, model=model),
            id=run_id or f"run-{uuid.uuid4()}",
            task_queue=task_queue,
            result_type=RunOutput,
            start_signal=SUBSCRIBE_SIGNAL if watch else None,
        )
        return handle.id

    async def result(self, run_id: str) -> RunOutput:
        """Wait for the run to end and return its output; `RunFailedError` when it ended without one."""
        handle = self._temporal.get_workflow_handle(run_id, result_type=RunOutput)
        try:
            return await handle.result()
        except WorkflowFailureError as exc:
            status = (await self.describe_run(run_id)).status
            raise RunFailedError(f"run {run_id} {status}: {failure_message(exc)}", status=status) from None
        except RPCError as exc:
            raise self._rpc_error(run_id, exc) from None

    async def run(self, task_queue: str, prompt: str, **options: Any) -> RunOutput:
        """Start a run (`start_run`'s options) and wait for its output."""
        return await self.result(await self.start_run(task_queue, prompt, **options))

    async def describe_run(self, run_id: str) -> RunInfo:
        """The run's status, task queue and times; `RunNotFoundError` when there is no such run."""
        try:
            description = await self._temporal.get_workflow_handle(run_id).describe()
        except RPCError as exc:
            raise self._rpc_error(run_id, exc) from None
        return RunInfo(
            run_id,
            status_name(description.status),
            description.task_queue,
            description.start_time,
            description.close_time,
        )

    async def cancel_run(self, run_id: str) -> None:
        """Ask the run to cancel (it ends `canceled` once its worker handles the request)."""
        try:
            await self._temporal.get_workflow_handle(run_id).cancel()
        except RPCError as exc:
            raise self._rpc_error(run_id, exc) from None

    async def live_events(self, run_id: str) -> LiveEvents:
        """Which topic the run publishes its events on, and whether they are live; when no worker answers
        in `QUERY_TIMEOUT`, the runtime's own topic."""
        try:
            return await self._temporal.get_workflow_handle(run_id).query(
                LIVE_EVENTS_QUERY, result_type=LiveEvents, rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError):
            return LiveEvents(topic=EVENT_TOPIC)

    async def run_events(
        self, run_id: str, *, topic: str | None = None, from_offset: int = 0
    ) -> AsyncIterator[Any]:
        """The run's pydantic-ai events in order, ending with the `AgentRunResultEvent` (nothing for an
        agent that publishes none). `topic` defaults to what `live_events` says."""
        from pydantic_ai.durable_exec.temporal import stream_agent_events

        if topic is None:
            topic = (await self.live_events(run_id)).topic
        if topic is None:
            return
        handle = self._temporal.get_workflow_handle(run_id)
        async for event in stream_agent_events(self._temporal, handle, topic, from_offset=from_offset):
            yield event

    async def list_runs(self, task_queue: str, *, limit: int = 20) -> list[RunSummary]:
        """The newest `limit` runs of the agent on `task_queue`, with the calls the running ones wait on."""
        return await _decisions.list_runs(self._temporal, task_queue, limit=limit)

    # --- decisions -------------------------------------------------------------------------------------

    async def pending_calls(self, run_id: str) -> list[PendingCall]:
        """The calls the run (or session) `run_id` waits on: approvals and external results."""
        return await _decisions.pending_calls(self._temporal.get_workflow_handle(run_id))

    async def decide(self, run_id: str, decisions: Decisions) -> DecisionOutcome:
        """Approve, deny or answer pending calls of the run (or session) `run_id`; `DecisionError` says
        why a decision was refused (nothing changed then)."""
        return await _decisions.decide(self._temporal.get_workflow_handle(run_id), decisions)

    # --- sessions --------------------------------------------------------------------------------------

    async def send_message(
        self,
        *,
        agent: str,
        task_queue: str,
        session_id: str,
        prompt: str,
        deps: Any = None,
        model: str | None = None,
    ) -> SessionReply:
        """Send `prompt` to session `session_id` (started if it never existed) and return the reply."""
        message = SessionMessage(prompt=prompt, deps=deps, model=model)
        return await _sessions.send_message(
            self._temporal, agent=agent, task_queue=task_queue, session_id=session_id, message=message
        )

    async def stream_message(
        self,
        *,
        agent: str,
        task_queue: str,
        session_id: str,
        prompt: str,
        deps: Any = None,
        model: str | None = None,
    ) -> AsyncIterator[Any]:
        """Send `prompt` and yield the turn's pydantic-ai events as they happen, then the `SessionReply`
        last. Events that trail the reply by more than `STREAM_TAIL_SECONDS` are not waited for."""
        common = {"agent": agent, "task_queue": task_queue, "session_id": session_id}
        offset = 0
        with contextlib.suppress(SessionNotFoundError):
            offset = (await _sessions.read_info(self._temporal, **common)).stream_offset
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        readers: list[asyncio.Task[None]] = []

        async def read_events(handle: WorkflowHandle[Any, Any]) -> None:
            try:
                async for event in self._turn_events(handle, offset):
                    await queue.put(event)
            finally:
                await queue.put(done)

        async def on_started(handle: WorkflowHandle[Any, Any]) -> None:
            readers.append(asyncio.create_task(read_events(handle)))

        message = SessionMessage(prompt=prompt, deps=deps, model=model, stream=True)
        reply_task = asyncio.create_task(
            _sessions.send_message(self._temporal, message=message, on_started=on_started, **common)
        )
        try:
            async for event in _drain(queue, done, reply_task):
                yield event
            yield await reply_task
        finally:
            reply_task.cancel()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(reply_task, *readers, return_exceptions=True)

    async def _turn_events(self, handle: WorkflowHandle[Any, Any], offset: int) -> AsyncIterator[Any]:
        from pydantic_ai.durable_exec.temporal import stream_agent_events

        try:
            topic = await handle.query(
                EVENT_TOPIC_QUERY, result_type=cast(type, str | None), rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError):
            return
        if topic is None:
            return
        with contextlib.suppress(RPCError):
            async for event in stream_agent_events(self._temporal, handle, topic, from_offset=offset):
                yield event

    async def session_history(self, *, agent: str, task_queue: str, session_id: str) -> list[SessionEntry]:
        """The conversation session `session_id` carries."""
        return await _sessions.read_history(
            self._temporal, agent=agent, task_queue=task_queue, session_id=session_id
        )

    async def session_info(self, *, agent: str, task_queue: str, session_id: str) -> SessionInfo:
        """The session's turns, state and history size."""
        return await _sessions.read_info(
            self._temporal, agent=agent, task_queue=task_queue, session_id=session_id
        )

    async def list_sessions(self, task_queue: str, *, limit: int = 100) -> list[SessionSummary]:
        """The agent's sessions, most recently started first."""
        return await _sessions.list_sessions(self._temporal, task_queue=task_queue, limit=limit)

    # --- health ----------------------------------------------------------------------------------------

    async def health(self, task_queues: Sequence[str]) -> dict[str, AgentHealth]:
        """The workflow health of each task queue, as the operator writes it into status (never raises
        for Temporal-side failures: those queues come back `reachable=False`)."""
        return await read_health(self._temporal, task_queues)

    def _rpc_error(self, run_id: str, exc: RPCError) -> Exception:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return RunNotFoundError(
                f"no run {run_id!r} in namespace {self.namespace!r}: check the id (`durable-agents runs "
                "AGENT` lists them) and the Temporal address and namespace"
            )
        return TemporalConnectError(f"cannot reach run {run_id!r}: {exc.message}")


async def _drain(queue: asyncio.Queue[Any], done: object, reply: asyncio.Task[Any]) -> AsyncIterator[Any]:
    """The events put on `queue` until `done`; once `reply` has finished, for at most the stream tail."""
    tail_ends: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        if reply.done() and tail_ends is None:
            if reply.exception() is not None:
                return
            tail_ends = loop.time() + STREAM_TAIL_SECONDS
        wait = 0.2 if tail_ends is None else tail_ends - loop.time()
        if wait <= 0:
            return
        try:
            item = await asyncio.wait_for(queue.get(), wait)
        except TimeoutError:
            continue
        if item is done:
            return
        yield item


class SyncAgentsClient:
    """`AgentsClient` for code without an event loop: each call runs on a private loop in a background
    thread and blocks until it is done (at most `timeout` seconds, when given). `close()` stops the
    thread; use it as a context manager."""

    def __init__(
        self, client: AgentsClient, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self._client = client
        self._loop = loop
        self._thread = thread

    @classmethod
    def connect(cls, spec: TemporalSpec | None = None, **options: Any) -> SyncAgentsClient:
        """Connect as `AgentsClient.connect` does (same arguments)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="durable-agents-client", daemon=True)
        thread.start()
        try:
            client = asyncio.run_coroutine_threadsafe(AgentsClient.connect(spec, **options), loop).result()
        except BaseException:
            _stop(loop, thread)
            raise
        return cls(client, loop, thread)

    def __enter__(self) -> SyncAgentsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the background loop (the connection goes with it)."""
        _stop(self._loop, self._thread)

    @property
    def aio(self) -> AgentsClient:
        """The async client underneath (its calls must run on this client's loop)."""
        return self._client

    def _call(self, call: Awaitable[_T], timeout: float | None = None) -> _T:
        return asyncio.run_coroutine_threadsafe(cast(Coroutine[Any, Any, _T], call), self._loop).result(
            timeout
        )

    def _iterate(self, stream: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                try:
                    yield self._call(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None and self._loop.is_running():
                self._call(closer())

    def start_run(self, task_queue: str, prompt: str, **options: Any) -> str:
        """`AgentsClient.start_run`."""
        return self._call(self._client.start_run(task_queue, prompt, **options))

    def result(self, run_id: str, *, timeout: float | None = None) -> RunOutput:
        """`AgentsClient.result`, waiting at most `timeout` seconds (`TimeoutError` then)."""
        return self._call(self._client.result(run_id), timeout)

    def run(self, task_queue: str, prompt: str, *, timeout: float | None = None, **options: Any) -> RunOutput:
        """`AgentsClient.run`, waiting at most `timeout` seconds."""
        return self._call(self._client.run(task_queue, prompt, **options), timeout)

    def describe_run(self, run_id: str) -> RunInfo:
        """`AgentsClient.describe_run`."""
        return self._call(self._client.describe_run(run_id))

    def cancel_run(self, run_id: str) -> None:
        """`AgentsClient.cancel_run`."""
        self._call(self._client.cancel_run(run_id))

    def run_events(self, run_id: str, **options: Any) -> Iterator[Any]:
        """`AgentsClient.run_events`, as a blocking iterator."""
        return self._iterate(self._client.run_events(run_id, **options))

    def list_runs(self, task_queue: str, *, limit: int = 20) -> list[RunSummary]:
        """`AgentsClient.list_runs`."""
        return self._call(self._client.list_runs(task_queue, limit=limit))

    def pending_calls(self, run_id: str) -> list[PendingCall]:
        """`AgentsClient.pending_calls`."""
        return self._call(self._client.pending_calls(run_id))

    def decide(self, run_id: str, decisions: Decisions) -> DecisionOutcome:
        """`AgentsClient.decide`."""
        return self._call(self._client.decide(run_id, decisions))

    def send_message(self, **message: Any) -> SessionReply:
        """`AgentsClient.send_message` (same keyword arguments)."""
        return self._call(self._client.send_message(**message))

    def stream_message(self, **message: Any) -> Iterator[Any]:
        """`AgentsClient.stream_message`, as a blocking iterator (the `SessionReply` last)."""
        return self._iterate(self._client.stream_message(**message))

    def session_history(self, *, agent: str, task_queue: str, session_id: str) -> list[SessionEntry]:
        """`AgentsClient.session_history`."""
        return self._call(
            self._client.session_history(agent=agent, task_queue=task_queue, session_id=session_id)
        )

    def list_sessions(self, task_queue: str, *, limit: int = 100) -> list[SessionSummary]:
        """`AgentsClient.list_sessions`."""
        return self._call(self._client.list_sessions(task_queue, limit=limit))

    def health(self, task_queues: Sequence[str]) -> dict[str, AgentHealth]:
        """`AgentsClient.health`."""
        return self._call(self._client.health(task_queues))


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not loop.is_running() and not loop.is_closed():
        loop.close()
