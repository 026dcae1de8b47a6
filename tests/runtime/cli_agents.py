"""Code agents for the CLI tests, loaded by workers as `cli_agents:<name>` (this directory on PYTHONPATH)."""

from __future__ import annotations

from pydantic_ai import Agent, RunContext
from pydantic_ai.models.test import TestModel

__all__ = ["whoami_agent"]

whoami_agent = Agent(TestModel(), name="whoami", deps_type=str, instructions="Say who the user is.")
"""Deps of a non-object type (a string): the `test` model calls the tool, then answers with its result."""


@whoami_agent.tool
def whoami(ctx: RunContext[str]) -> str:
    """The user this run is for."""
    return f"deps={ctx.deps}"
