"""The operator's Prometheus metrics (`/metrics` on `metrics_port`): what its handlers know, at no extra
Temporal or API call.

- `durable_agents_runs_awaiting_decision{namespace, agent}` (gauge): AgentRuns of the agent whose workflow
  waits for a decision, as the AgentRun polls saw them last (`approval_status.Waits`).

`exposition` is pure (the text format, version 0.0.4); `metrics_server` serves it for as long as the
operator runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from durable_agents_operator.approval_status import Waits
from durable_agents_operator.http_endpoint import serving

__all__ = ["CONTENT_TYPE", "exposition", "metrics_server"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_AWAITING = "durable_agents_runs_awaiting_decision"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(waits: Waits) -> str:
    """The metrics in Prometheus' text format, agents sorted by namespace and name."""
    lines = [
        f"# HELP {_AWAITING} AgentRuns whose workflow waits for a decision on a tool call, by agent.",
        f"# TYPE {_AWAITING} gauge",
    ]
    for (namespace, agent), runs in sorted(waits.by_agent.items()):
        lines.append(f'{_AWAITING}{{namespace="{_label(namespace)}",agent="{_label(agent)}"}} {len(runs)}')
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def metrics_server(waits: Callable[[], Waits], host: str, port: int) -> AsyncIterator[None]:
    """Serve `/metrics` on `host:port` while the block runs (nothing when `port` is 0)."""
    if port == 0:
        yield
        return

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=exposition(waits()).encode(), headers={"Content-Type": CONTENT_TYPE})

    async with serving({"/metrics": metrics}, host, port):
        yield
