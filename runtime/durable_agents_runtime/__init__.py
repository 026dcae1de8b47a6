"""Runs pydantic-ai agents durably on Temporal: config contract, worker, health and CLI.

`call_agent` (from `sub_agents`) is the one name code agents import from here; it is loaded on first use
so importing a submodule (as the CLI does) does not pull in the workflow machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durable_agents_runtime.sub_agents import call_agent

__all__ = ["call_agent"]


def __getattr__(name: str) -> Any:
    if name == "call_agent":
        from durable_agents_runtime.sub_agents import call_agent

        return call_agent
    raise AttributeError(f"module 'durable_agents_runtime' has no attribute {name!r}")
