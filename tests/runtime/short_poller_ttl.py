"""A Temporal dev server that forgets a stopped worker's pollers within seconds.

The server refuses to delete a Worker Deployment version while it lists pollers of it, and by default
it lists a stopped worker for about five minutes; tests of that deletion use this server instead.
"""

from __future__ import annotations

from durable_agents_runtime.devserver import DevServer

__all__ = ["POLLER_TTL", "ShortPollerTtlDevServer"]

POLLER_TTL = "4s"


class ShortPollerTtlDevServer(DevServer):
    """Idle long polls return after 2 s (so live workers stay listed) and stopped ones drop out after
    `POLLER_TTL`."""

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--dynamic-config-value",
            'matching.longPollExpirationInterval="2s"',
            "--dynamic-config-value",
            f'matching.PollerHistoryTTL="{POLLER_TTL}"',
        ]
