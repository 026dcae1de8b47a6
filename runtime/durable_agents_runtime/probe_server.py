"""A tiny HTTP server for the worker's liveness and readiness probes.

Plain asyncio rather than a web framework: it answers two GET paths, and importing nothing keeps the worker's
cold start short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from durable_agents_api.contract import LIVENESS_PATH, READINESS_PATH

__all__ = ["ProbeServer"]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class ProbeServer:
    """Serves `/livez` (200 while the process runs) and `/readyz` (200 when `ready()` is true, else 503)."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on `host:port` (port 0: the probes are off)."""
        if self.port:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            # Drain the headers; probes send no body.
            while await asyncio.wait_for(reader.readline(), timeout=5) not in (b"\r\n", b"\n", b""):
                pass
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body = 405, "method not allowed\n"
            elif path == LIVENESS_PATH:
                status, body = 200, "ok\n"
            elif path == READINESS_PATH:
                ready = self._ready()
                status, body = (200, "ready\n") if ready else (503, "not polling\n")
            else:
                status, body = 404, "not found\n"
            payload = body.encode() if method == "GET" else b""
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
