"""Hostile runtime input: each case must end with a clear, bounded outcome, never a wedged run or worker.

Real processes: a dev server of the module's own and a `durable-agents worker` per case, talking to hostile
servers on 127.0.0.1 (an OpenAI-compatible model server or an MCP server that hangs, answers garbage or
malformed JSON, or drips bytes). A case passes when the run either succeeds or fails with a message that
names the cause, within `HOSTILE_BOUND` seconds, and the worker is still up and polling afterwards.

Each case runs under the runtime's default retry policy (bounded attempts and backoff) with a short
start-to-close timeout, so a server that never answers costs `ATTEMPTS` short attempts rather than
minutes; `HOSTILE_BOUND` is derived from those settings.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from faultmatrix import Fleet
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from durable_agents_api.config import DEFAULT_MAXIMUM_ATTEMPTS, RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.devserver import DevServer

pytestmark = [pytest.mark.runtime, pytest.mark.reliability, pytest.mark.anyio]

START_TO_CLOSE_SECONDS = 5
"""Each attempt's limit in these cases (the default is 60 s: the same rule, slower)."""
HOSTILE_BOUND = (
    DEFAULT_MAXIMUM_ATTEMPTS * START_TO_CLOSE_SECONDS
    + sum(min(2**n, 30) for n in range(DEFAULT_MAXIMUM_ATTEMPTS - 1))  # the default backoff: 1, 2, 4, 8 s
    + 40  # start-up and a loaded 2-core machine
)
"""A run that has not ended within the policy's attempts, their timeouts and their backoff is wedged."""
DRIP_LIMIT_SECONDS = 300  # the dripping server gives up by itself after this long


class HostileHandler(BaseHTTPRequestHandler):
    mode = "garbage"
    stop: threading.Event

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self.mode == "hang":
            self.stop.wait(DRIP_LIMIT_SECONDS)
            return
        if self.mode == "drip":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(DRIP_LIMIT_SECONDS):
                if self.stop.wait(1.0):
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
            return
        body = b"{not json" if self.mode == "malformed-json" else b"\x00\xffgarbage\n" * 100
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/json" if self.mode == "malformed-json" else "text/plain"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostileServer:
    """An HTTP server on 127.0.0.1 misbehaving in one `mode`; stops its handlers on exit."""

    def __init__(self, mode: str) -> None:
        self.stop = threading.Event()
        handler = type("Handler", (HostileHandler,), {"mode": mode, "stop": self.stop})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hostile_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with DevServer(tmp_path_factory.mktemp("hostile-temporal")) as server:
        yield server


def _config(temporal: DevServer, agent: dict[str, Any], **extra: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": agent,
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": f"hostile-{uuid.uuid4().hex[:8]}",
            },
            "activities": {"default": {"startToCloseTimeout": f"{START_TO_CLOSE_SECONDS}s"}},
            **extra,
        }
    )


async def _outcome(temporal: DevServer, config: RuntimeConfig, tmp: Path, prompt: str, **env: str) -> str:
    """Serve `config` from a worker, run `prompt`, and describe how it ended (or fail when it did not)."""
    client = await Client.connect(
        temporal.address, namespace=temporal.namespace, plugins=[PydanticAIPlugin()]
    )
    fleet = Fleet(config, tmp, tmp / "executions.jsonl", 1, env=env)
    try:
        fleet.start()
        started = time.monotonic()
        try:
            handle = await client.start_workflow(
                WORKFLOW_NAME,
                RunInput(prompt=prompt),
                id=f"hostile-{uuid.uuid4()}",
                task_queue=config.temporal.task_queue,
                result_type=RunOutput,
            )
        except RPCError as exc:
            return f"refused at start: {exc}"
        try:
            result = await asyncio.wait_for(handle.result(), HOSTILE_BOUND)
        except TimeoutError:
            await handle.terminate("wedged: no outcome within the bound")
            raise AssertionError(f"no outcome within {HOSTILE_BOUND:.0f}s: the run is wedged") from None
        except WorkflowFailureError as exc:
            cause = exc.cause
            while cause.__cause__ is not None:
                cause = cause.__cause__
            return f"failed after {time.monotonic() - started:.0f}s: {cause}"
        assert fleet.live(), "the worker died"
        return f"succeeded: {result.output_text[:100]}"
    finally:
        fleet.close()


def _model_agent(base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"name": "hostile", "model": "openai-chat:hostile-model"}, {"baseUrl": f"{base_url}/v1"}


@pytest.mark.parametrize("mode", ["malformed-json", "garbage", "drip", "hang"])
async def test_a_misbehaving_model_server_ends_the_run_with_a_bounded_outcome(
    hostile_temporal: DevServer, tmp_path: Path, mode: str
) -> None:
    with HostileServer(mode) as server:
        agent, model = _model_agent(server.url)
        config = _config(hostile_temporal, agent, model=model)
        outcome = await _outcome(hostile_temporal, config, tmp_path, "hello", OPENAI_API_KEY="sk-test")
    print(f"\nmodel server {mode}: {outcome}")
    assert outcome.startswith(("failed", "succeeded")), outcome


@pytest.mark.parametrize("mode", ["garbage", "malformed-json", "hang"])
async def test_a_misbehaving_mcp_server_ends_the_run_with_a_bounded_outcome(
    hostile_temporal: DevServer, tmp_path: Path, mode: str
) -> None:
    with HostileServer(mode) as server:
        agent = {
            "name": "hostile_mcp",
            "model": "test",
            "mcpServers": [{"id": "bad", "url": f"{server.url}/mcp"}],
        }
        outcome = await _outcome(hostile_temporal, _config(hostile_temporal, agent), tmp_path, "hello")
    print(f"\nMCP server {mode}: {outcome}")
    assert outcome.startswith(("failed", "succeeded")), outcome


async def test_a_prompt_over_the_payload_limit_is_refused_or_fails_naming_the_size(
    hostile_temporal: DevServer, tmp_path: Path
) -> None:
    agent = {"name": "hostile_big", "model": "test"}
    outcome = await _outcome(hostile_temporal, _config(hostile_temporal, agent), tmp_path, "x" * 2_500_000)
    print(f"\n2.5 MB prompt: {outcome}")
    assert outcome.startswith(("refused", "failed")) and "size" in outcome.lower(), outcome


async def test_a_model_output_over_the_payload_limit_fails_the_run_naming_the_size(
    hostile_temporal: DevServer, tmp_path: Path
) -> None:
    big = "y" * 2_500_000
    body = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": big}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()

    class Big(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        agent, model = _model_agent(f"http://127.0.0.1:{server.server_address[1]}")
        config = _config(
            hostile_temporal,
            agent | {"name": "hostile_output"},
            model=model,
            worker={"eventStream": {"enabled": False}},
        )
        outcome = await _outcome(hostile_temporal, config, tmp_path, "hello", OPENAI_API_KEY="sk-test")
    finally:
        server.shutdown()
        server.server_close()
    print(f"\n2.5 MB model output: {outcome}")
    assert outcome.startswith("failed") and "size" in outcome.lower(), outcome


async def test_tool_arguments_that_keep_failing_validation_fail_the_run_naming_the_tool(
    hostile_temporal: DevServer, tmp_path: Path
) -> None:
    from fake_openai import FakeOpenAI, tool_call

    with FakeOpenAI() as provider:
        provider.add(*(tool_call("get_weather", {"city": 123}, call_id=f"c{i}") for i in range(10)))
        agent = {
            "name": "hostile_args",
            "model": "openai-chat:fake-model",
            "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
        }
        config = _config(hostile_temporal, agent, model={"baseUrl": provider.base_url})
        outcome = await _outcome(hostile_temporal, config, tmp_path, "Weather?", OPENAI_API_KEY="sk-test")
    print(f"\ntool args failing validation: {outcome}")
    assert outcome.startswith("failed") and "get_weather" in outcome, outcome


def test_hostile_servers_stop_on_exit() -> None:
    # The helpers themselves must not leave a hanging connection behind (they are used above).
    with HostileServer("hang") as server:
        port = server.server.server_address[1]
        connection = socket.create_connection(("127.0.0.1", port), timeout=2)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    connection.settimeout(5)
    try:
        received = connection.recv(1)
    except ConnectionResetError:
        received = b""  # the server closed with the request unread: a reset is a close too
    finally:
        connection.close()
    assert received == b"", "the hanging handler did not stop with its server"
