"""Request limits of the gateway: a body size limit and a per-token rate limit (a token bucket).

`RateLimiter` is pure (the clock is passed in); `BodyLimit` is ASGI middleware that refuses a body
larger than the limit before the application reads it (by Content-Length), or as soon as a streamed body
passes it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_BODY_LIMIT", "BodyLimit", "BodyTooLarge", "RateLimiter", "error_response_body"]

DEFAULT_BODY_LIMIT = 1024 * 1024
"""Largest request body accepted, in bytes (1 MiB)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_response_body(code: str, message: str) -> bytes:
    """The JSON body of every gateway error (`models.ErrorBody`)."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most `burst` requests at once per key, refilled at `per_second`; `take` says whether a request
    may go on now, and if not, after how many seconds one will."""

    def __init__(self, *, per_second: float, burst: int, max_keys: int = 10_000) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("the rate limit needs per_second > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float | None:
        """None when the request may go on (a token was taken); else the seconds until one may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                # Full buckets carry nothing worth keeping; dropping them bounds the memory.
                self._buckets = {k: b for k, b in self._buckets.items() if self._level(b, now) < self.burst}
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = self._level(bucket, now)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.per_second

    def _level(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 and a JSON error naming the limit."""

    def __init__(self, app: ASGIApp, *, limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = error_response_body("too_large", BodyTooLarge(self.limit).message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """A streamed request body passed the limit while the application read it (413)."""

    def __init__(self, limit: int) -> None:
        self.message = f"the request body is larger than {limit} bytes, the gateway's limit: send less"
        super().__init__(self.message)
