"""A toolset whose one tool blocks the worker's event loop (`time.sleep` inside an async tool).

The shutdown tests use it for the worst case: while it runs, nothing else on the worker's event loop
moves, so an orderly stop cannot proceed and only the hard bound can end the process. It appends
`start block <pid>` to the file named by `BLOCKING_TOOLS_LOG` when it begins, and blocks for
`BLOCKING_TOOLS_SECONDS` (default 60).

Loaded as the toolset entrypoint `blocking_tools:toolset` (with this directory on PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic_ai import FunctionToolset

__all__ = ["ENV_LOG", "ENV_SECONDS", "TOOLSET_ID", "toolset"]

ENV_LOG = "BLOCKING_TOOLS_LOG"
ENV_SECONDS = "BLOCKING_TOOLS_SECONDS"
TOOLSET_ID = "blocking"

toolset: FunctionToolset[None] = FunctionToolset(id=TOOLSET_ID)


@toolset.tool_plain
async def block(item: str) -> str:
    """Process an item (blocking the event loop while it does)."""
    with Path(os.environ[ENV_LOG]).open("a") as log:
        log.write(f"start block {os.getpid()}\n")
    time.sleep(float(os.environ.get(ENV_SECONDS, "60")))  # blocking on purpose
    return f"blocked:{item}"
