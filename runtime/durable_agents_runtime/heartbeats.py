"""Activity heartbeats sent by the worker process itself, from a thread, for as long as an activity runs.

A short heartbeat timeout is what makes a dead worker's activity move to another worker in seconds. The SDK
(and pydantic-ai's background heartbeat) send heartbeats from the worker's event loop, so a tool that
blocks the loop — an `async def` tool calling `time.sleep` or a blocking HTTP client — misses them and is
timed out and re-run on every attempt, although its worker is alive. `ProcessHeartbeats` heartbeats every
running activity from a thread of its own instead: a live process keeps its activities alive however busy
its loop is; a dead (or frozen) process stops, and Temporal retries the attempt elsewhere after the
heartbeat timeout.

It also notices when the event loop stops answering while activities run, and logs which activities
were running and what to change, once per stall.

An activity that heartbeats with details of its own (progress it resumes from on retry) keeps its own
heartbeats: a detail-less heartbeat from here would replace its details.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from durable_agents_runtime import temporal_internals

__all__ = ["ProcessHeartbeats"]

log = logging.getLogger("durable_agents.worker")

_TICK_SECONDS = 0.25
_STALL_SECONDS = 2.0
"""The event loop counts as blocked when it has not run for this long while activities run."""


@dataclass
class _Running:
    activity_type: str
    workflow_id: str | None
    interval: float
    """Seconds between heartbeats: a third of the heartbeat timeout."""
    last_sent: float = field(default_factory=time.monotonic)
    own_details: bool = False


class ProcessHeartbeats(Interceptor):
    """Worker interceptor: heartbeats for every running activity that has a heartbeat timeout.

    Call `attach(worker)` once the `Worker` exists: the thread sends through that worker's core. The
    thread runs only while activities with a heartbeat timeout run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[bytes, _Running] = {}
        self._send: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_seen = time.monotonic()
        self._stall_reported = False

    def attach(self, worker: Worker) -> None:
        """Send heartbeats through `worker` from now on."""
        self._send = temporal_internals.heartbeat_sender(worker)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)

    # --- called on the event loop, by the interceptors ------------------------------------------------------

    def activity_started(self, info: activity.Info) -> None:
        timeout = info.heartbeat_timeout
        if timeout is None or timeout.total_seconds() <= 0:
            return
        running = _Running(info.activity_type, info.workflow_id, interval=timeout.total_seconds() / 3)
        with self._lock:
            self._running[info.task_token] = running
            if self._thread is not None:
                return
            self._loop = asyncio.get_running_loop()
            self._loop_seen = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="durable-agents-heartbeats", daemon=True)
        self._loop.call_soon(self._loop_tick)
        self._thread.start()

    def activity_finished(self, token: bytes) -> None:
        with self._lock:
            self._running.pop(token, None)

    def details_sent(self, token: bytes) -> None:
        with self._lock:
            running = self._running.get(token)
            if running is not None:
                running.own_details = True

    def _loop_tick(self) -> None:
        self._loop_seen = time.monotonic()
        if self._thread is not None and self._loop is not None:
            self._loop.call_later(_TICK_SECONDS, self._loop_tick)

    # --- the heartbeat thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                if not self._running:
                    self._thread = None  # started again by the next activity
                    return
                for token, running in self._running.items():
                    if not running.own_details and now - running.last_sent >= running.interval:
                        running.last_sent = now
                        self._heartbeat(token)
                stalled = list(self._running.values()) if now - self._loop_seen > _STALL_SECONDS else []
            self._report_stall(now, stalled)

    def _heartbeat(self, token: bytes) -> None:
        if self._send is None:
            return
        try:
            self._send(token)
        except Exception:  # a finished activity or a closing worker: the next tick has moved on
            log.debug("heartbeat not recorded", exc_info=True)

    def _report_stall(self, now: float, stalled: list[_Running]) -> None:
        if not stalled:
            self._stall_reported = False
            return
        if self._stall_reported:
            return
        self._stall_reported = True
        names = ", ".join(sorted({f"{r.activity_type} (run {r.workflow_id})" for r in stalled}))
        log.warning(
            "the worker's event loop has been blocked for %.1fs while %s ran: an async tool is doing "
            "blocking work (e.g. time.sleep or a blocking HTTP client). Heartbeats continue, but every "
            "other run on this worker waits: make the tool a plain `def` (pydantic-ai runs it in a thread) "
            "or await non-blocking I/O",
            now - self._loop_seen,
            names,
        )


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, keeper: ProcessHeartbeats) -> None:
        super().__init__(next)
        self._keeper = keeper

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_Outbound(outbound, self._keeper))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        self._keeper.activity_started(info)
        try:
            return await super().execute_activity(input)
        finally:
            self._keeper.activity_finished(info.task_token)


class _Outbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, keeper: ProcessHeartbeats) -> None:
        super().__init__(next)
        self._keeper = keeper

    def heartbeat(self, *details: Any) -> None:
        if details:
            self._keeper.details_sent(activity.info().task_token)
        super().heartbeat(*details)
