"""The operator's small HTTP endpoints (`/metrics`, and `/healthz` while it waits for RBAC): one way to
serve a few GET routes on a host and port for as long as a block runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

__all__ = ["Handler", "serving"]

Handler = Callable[[web.Request], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def serving(routes: Mapping[str, Handler], host: str, port: int) -> AsyncIterator[None]:
    """Answer GET on each path of `routes` at `host:port` while the block runs; the port is closed when
    it ends, also when it raises. A port already taken raises `OSError` before the block starts."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
