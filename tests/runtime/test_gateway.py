"""The HTTP gateway against the session's dev server and real worker processes: the REST API and its
event streams, decisions by token, the OpenAPI document, and the OpenAI-compatible endpoint with the
`openai` SDK itself as the client. The gateway is a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_client import queues  # noqa: F401 (the module's workers)

from durable_agents_runtime.client import AgentsClient
from durable_agents_runtime.devserver import free_port
from durable_agents_runtime.gateway import (
    AgentEntry,
    Gateway,
    GatewayServer,
    LocalTokens,
    StaticCatalog,
    build_app,
)

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin-token-for-tests"
VIEWER = "viewer-token-for-tests"
WAIT = 60.0


@pytest.fixture(scope="module")
def gateway_url(temporal_dev_server: Any, queues: dict[str, str]) -> Iterator[str]:  # noqa: F811
    """A gateway for the module's two agents, `files` and `echo`, with an admin and a viewer token."""

    async def connect() -> AgentsClient:
        return await AgentsClient.connect(
            address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
        )

    catalog = StaticCatalog(
        [
            AgentEntry("files", "default", queues["files"], "files"),
            AgentEntry("echo", "default", queues["echo"], "session_echo"),
        ]
    )
    tokens = LocalTokens({ADMIN: "admin", VIEWER: "viewer"}, principal="ada@test")
    server = GatewayServer(build_app(Gateway(connect, catalog, tokens)), port=0)
    server.start_in_thread()
    yield server.url
    server.stop_thread()


@pytest.fixture
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=WAIT) as client:
        yield client


async def sse_events(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Every event of a Server-Sent Events answer, read to its end."""
    events: list[tuple[str, Any]] = []
    async with http.stream(method, path, **kwargs) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        name = "message"
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                name = "message"
    return events


async def pending_approvals(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    async def poll() -> list[dict[str, Any]]:
        while True:
            found = [a for a in (await http.get("/api/approvals")).json() if a["run_id"] == run_id]
            if found:
                return found
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(poll(), WAIT)


async def finished(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once it has closed (its result event can reach a watcher just before the run closes)."""

    async def poll() -> dict[str, Any]:
        while (run := (await http.get(f"/api/runs/{run_id}")).json())["status"] == "running":
            await asyncio.sleep(0.2)
        return run

    return await asyncio.wait_for(poll(), WAIT)


async def test_a_run_is_started_watched_and_approved_over_http_by_the_right_tokens(
    http: httpx.AsyncClient, gateway_url: str
) -> None:
    agents = (await http.get("/api/agents")).json()
    assert {(a["name"], a["ready"]) for a in agents} == {("files", True), ("echo", True)}

    started = await http.post("/api/agents/files/runs", json={"prompt": "tidy up", "watch": True})
    assert started.status_code == 201
    run_id = started.json()["id"]
    events = asyncio.create_task(sse_events(http, "GET", f"/api/runs/{run_id}/events"))
    [approval] = await pending_approvals(http, run_id)
    assert approval["call"]["tool_name"] == "delete_file" and approval["agent"] == "files"
    decision = {"decisions": [{"tool_call_id": approval["call"]["tool_call_id"], "approve": True}]}

    # No token, a wrong one: 401 and nothing more; a viewer reads but may not decide: 403.
    async with httpx.AsyncClient(base_url=gateway_url, timeout=WAIT) as anonymous:
        missing = await anonymous.get("/api/agents")
        wrong = await anonymous.get("/api/approvals", headers={"Authorization": "Bearer nope"})
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        read = await anonymous.get(f"/api/runs/{run_id}", headers=viewer)
        refused = await anonymous.post(f"/api/runs/{run_id}/decisions", json=decision, headers=viewer)
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert (
        missing.json()
        == wrong.json()
        == {
            "error": {
                "code": "unauthenticated",
                "message": "a valid bearer token is required: send `Authorization: Bearer TOKEN`",
            }
        }
    )
    assert read.status_code == 200 and read.json()["status"] == "running"
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    decided = await http.post(f"/api/runs/{run_id}/decisions", json=decision)
    assert decided.json() == {"decided": [approval["call"]["tool_call_id"]], "pending": []}
    seen = await asyncio.wait_for(events, WAIT)
    names = [name for name, _ in seen]
    assert names[-2:] == ["result", "end"] and "toolCall" in names and "toolResult" in names
    assert seen[-2][1] == {"output": "model was told: deleted a.txt"}
    run = await finished(http, run_id)
    assert (run["status"], run["output"]) == ("completed", "model was told: deleted a.txt")
    # Deciding again is refused with the runtime's reason; the run's history names who decided.
    again = await http.post(f"/api/runs/{run_id}/decisions", json=decision)
    assert again.status_code == 409 and "finished" in again.json()["error"]["message"]
    assert (await http.get("/api/runs/run-nope")).status_code == 404
    runs = (await http.get("/api/agents/files/runs")).json()
    assert run_id in [r["id"] for r in runs]


async def test_a_session_streams_its_reply_and_the_api_documents_itself(http: httpx.AsyncClient) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    path = f"/api/agents/echo/sessions/{session}/messages"

    streamed = await sse_events(http, "POST", path, json={"prompt": "hello", "stream": True})
    plain = await http.post(path, json={"prompt": "again"})

    text = "".join(data["delta"] for name, data in streamed if name == "text")
    assert "reply to 'hello' after 1 prompts" in text
    assert streamed[-1][0] == "reply" and streamed[-1][1]["turn"] == 1
    assert plain.json()["turn"] == 2
    history = (await http.get(f"/api/agents/echo/sessions/{session}")).json()
    assert (history["turns"], [e["role"] for e in history["entries"]]) == (
        2,
        ["user", "agent", "user", "agent"],
    )
    invalid = await http.post(path, json={"prompt": ""})
    assert invalid.status_code == 422 and "prompt" in invalid.json()["error"]["message"]

    document = (await http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    start = document["paths"]["/api/agents/{agent}/runs"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/StartRunRequest")
    assert set(document["components"]["schemas"]["StartRunRequest"]["properties"]) >= {
        "prompt",
        "deps",
        "watch",
    }
    assert "/v1/chat/completions" in document["paths"]


async def test_the_openai_sdk_talks_to_an_agent_streamed_and_not(gateway_url: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=ADMIN, max_retries=0, timeout=WAIT)
    session = f"s-{uuid.uuid4().hex[:8]}"
    headers = {"X-Session-Id": session}
    try:
        models = await sdk.models.list()
        first = await sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "my name is Ada"}], extra_headers=headers
        )
        stream = await sdk.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "what is my name?"}],
            stream=True,
            extra_headers=headers,
        )
        chunks = [chunk async for chunk in stream]
        # Closed here, in this loop: an SDK client left to the garbage collector closes itself in
        # whatever loop is running then, and fails a later test with "Event loop is closed".
        async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    finally:
        await sdk.close()

    assert {m.id for m in models.data} == {"files", "echo"}
    assert first.choices[0].message.content == "reply to 'my name is Ada' after 1 prompts"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    # The session carries the conversation: the second message is its second prompt.
    assert text.strip() == "reply to 'what is my name?' after 2 prompts"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_dev_serves_the_gateway_with_the_token_it_prints_and_stops_it(tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    command = [sys.executable, "-m", "durable_agents_cli", "dev", str(REPO / "examples/hello.yaml")]
    command += ["--port", str(free_port()), "--ui-port", str(free_port()), "--gateway-port", "0"]
    command += ["--state-dir", str(tmp_path / "state")]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_", "DURABLE_AGENTS_"))
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**env, "NO_COLOR": "1"}
        )
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in (text := log.read_text(errors="replace")):
            assert process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)
        [console] = re.findall(r"Console: (http://127\.0\.0\.1:\d+)/console/#token=(\S+)", text)
        url, token = console
        headers = {"Authorization": f"Bearer {token}"}
        agents = httpx.get(f"{url}/api/agents", headers=headers, timeout=WAIT).json()
        refused = httpx.get(f"{url}/api/agents", timeout=WAIT)
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "hello", "messages": [{"role": "user", "content": "Weather in Paris?"}]},
            headers=headers,
            timeout=WAIT,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert [(a["name"], a["ready"]) for a in agents] == [("hello", True)]
    assert refused.status_code == 401
    assert "Paris" in reply.json()["choices"][0]["message"]["content"]
    assert code == 0, log.read_text()
