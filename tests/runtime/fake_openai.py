"""A scriptable OpenAI-compatible chat-completions server for provider tests.

The worker under test runs in another process and talks to this server over HTTP on 127.0.0.1, exactly as
it would talk to a real provider, streamed (`stream: true`, server-sent events) or not. Each request to
`/v1/chat/completions` takes the next scripted reply (an error status, a tool call, or text); when the
script runs out, the server answers HTTP 500 with a message that says so, so a test that under-scripts
fails loudly instead of hanging. Every request is recorded (headers and JSON body) for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeOpenAI", "RecordedRequest", "Reply", "error", "text", "tool_call"]

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: a status code and a JSON body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])


ReplyFactory = Callable[[RecordedRequest], Reply]
"""A reply computed from the request, e.g. one that echoes a tool result back."""


def _completion(message: dict[str, Any], finish_reason: str, model: str = "fake-model") -> Reply:
    return Reply(
        200,
        {
            "id": f"chatcmpl-fake-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )


def text(content: str) -> Reply:
    """A final answer."""
    return _completion({"role": "assistant", "content": content}, "stop")


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> Reply:
    """The model asks for one tool call."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")


def error(
    status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None
) -> Reply:
    """An error in OpenAI's shape: `{"error": {"message", "type", "code"}}`."""
    return Reply(status, {"error": {"message": message, "type": type_, "code": code, "param": None}})


def _chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion as the chunks of a streamed response (`stream: true`): the message, the finish, usage."""
    choice = completion["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    header = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    return [
        {**header, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        {**header, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
        {**header, "choices": [], "usage": completion["usage"]},
    ]


@dataclass
class FakeOpenAI:
    """The server. Use as a context manager; `base_url` is what `model.baseUrl` should point at."""

    script: deque[Reply | ReplyFactory] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def add(self, *replies: Reply | ReplyFactory) -> None:
        """Append replies; each request consumes one, in order."""
        with self._lock:
            self.script.extend(replies)

    def replace(self, replies: Iterable[Reply | ReplyFactory]) -> None:
        """Drop what is left of the script and the recorded requests, and start over."""
        with self._lock:
            self.script = deque(replies)
            self.requests.clear()

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == CHAT_COMPLETIONS_PATH]

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if request.path != CHAT_COMPLETIONS_PATH:
                return error(404, f"fake server only serves {CHAT_COMPLETIONS_PATH}, not {request.path}")
            if not self.script:
                return error(
                    500, "fake OpenAI server: no scripted reply left for this request", type_="server_error"
                )
            reply = self.script.popleft()
        return reply(request) if callable(reply) else reply

    def __enter__(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                request = RecordedRequest(
                    path=self.path.split("?", 1)[0],
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                )
                reply = fake._next_reply(request)
                if reply.status == 200 and request.body.get("stream"):
                    payload = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in _chunks(reply.body))
                    payload += b"data: [DONE]\n\n"
                    content_type = "text/event-stream"
                else:
                    payload = json.dumps(reply.body).encode()
                    content_type = "application/json"
                self.send_response(reply.status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet; the recorded requests are the log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
