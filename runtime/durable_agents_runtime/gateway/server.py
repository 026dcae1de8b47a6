"""Serving the gateway with uvicorn: as a task of the caller's event loop (`durable-agents dev` and
`gateway`, which handle signals themselves) or in a thread of its own (tests). Stopping is bounded: open
event streams get `SHUTDOWN_GRACE_SECONDS`, then they are closed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Generator
from typing import Any

import uvicorn

__all__ = ["DEFAULT_GATEWAY_PORT", "SHUTDOWN_GRACE_SECONDS", "GatewayServer"]

DEFAULT_GATEWAY_PORT = 8780
SHUTDOWN_GRACE_SECONDS = 2.0
STARTUP_TIMEOUT_SECONDS = 30.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process that embeds the gateway owns SIGINT and SIGTERM.
        yield


class GatewayServer:
    """uvicorn serving `app` on `host:port` (port 0: a free one, `port` tells which once started)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = DEFAULT_GATEWAY_PORT) -> None:
        self.host = host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        return self._server.started

    async def serve(self) -> None:
        """Serve until `stop()` (or cancellation); the app's start-up failure raises here."""
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        """Return once serving; raise what `task` (running `serve`) raised when it could not start."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if task.done():
                task.result()
                raise RuntimeError("the gateway did not start: its lifespan failed (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {STARTUP_TIMEOUT_SECONDS:g}s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Ask the server to stop (open streams get the grace period)."""
        self._server.should_exit = True

    def start_in_thread(self) -> None:
        """Serve from a thread with its own event loop; return once serving."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the gateway did not start (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {STARTUP_TIMEOUT_SECONDS:g}s")
            time.sleep(0.05)

    def stop_thread(self, timeout: float = SHUTDOWN_GRACE_SECONDS + 10) -> None:
        """Stop the server started by `start_in_thread` and wait for its thread."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
