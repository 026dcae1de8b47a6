"""A real MCP server for tests, from the `mcp` package, over streamable HTTP or SSE on 127.0.0.1.

It runs as its own process (`python mcp_server.py --transport ... --log FILE --header NAME`) so the
worker under test reaches it over the network like any remote MCP server. Tool calls (with `add`'s
arguments) and the value of one request header are appended to the log file as JSON lines (`{"tool": ...}`
/ `{"header": ...}`), which the test reads after the run. `start_mcp_server()` launches it and waits
until it listens.

Tools: `greet` and `add` (meant to be used), `wipe_disk` (meant to be hidden by a tool filter).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["GREETING", "McpServerProcess", "read_log", "start_mcp_server"]

GREETING = "Hello from MCP"
PATHS = {"streamable-http": "/mcp", "sse": "/sse"}

Transport = Literal["streamable-http", "sse"]


@dataclass(frozen=True)
class McpServerProcess:
    """A running test MCP server."""

    url: str
    log: Path
    header: str


def read_log(log: Path) -> list[dict[str, Any]]:
    """The JSON lines the server wrote so far."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@contextmanager
def start_mcp_server(
    tmp_path: Path, *, transport: Transport = "streamable-http", header: str = "X-Calc-Token"
) -> Iterator[McpServerProcess]:
    """Start the server in a subprocess, yield its URL and log file, stop it afterwards."""
    log = tmp_path / f"mcp-{transport}.jsonl"
    stderr = (tmp_path / f"mcp-{transport}.stderr").open("w")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--transport", transport, "--log", str(log), "--header", header],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # The child binds port 0 itself and prints the port it got: no race for a free port.
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"MCP test server did not start; see {stderr.name}")
        port = int(line.split()[1])
        _wait_listening(port)
        yield McpServerProcess(f"http://127.0.0.1:{port}{PATHS[transport]}", log, header)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stderr.close()


def _wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"MCP test server did not listen on port {port} within {timeout}s")


def _serve(transport: Transport, log: Path, header: str) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    def record(entry: dict[str, Any]) -> None:
        with log.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    server = MCPServer("calc")

    @server.tool()
    def greet(name: str) -> str:
        """Greet someone by name."""
        record({"tool": "greet"})
        return f"{GREETING}, {name}!"

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        record({"tool": "add", "args": [a, b]})
        return a + b

    @server.tool()
    def wipe_disk() -> str:
        """A tool the agent must never see (a tool filter hides it)."""
        record({"tool": "wipe_disk"})
        return "wiped"

    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    header_key = header.lower().encode()

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            values = [v.decode() for k, v in scope["headers"] if k == header_key]
            record({"header": values[0] if values else None, "path": scope["path"]})
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"port {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(recording_app, log_level="warning", lifespan="on")).run(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=sorted(PATHS), default="streamable-http")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--header", default="X-Calc-Token")
    args = parser.parse_args()
    _serve(args.transport, args.log, args.header)
