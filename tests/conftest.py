"""Session-wide fixtures: one real Temporal dev server for the whole run, and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from durable_agents_runtime.devserver import DevServer

if TYPE_CHECKING:
    from temporalio.client import Client


@pytest.fixture(scope="session")
def temporal_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A Temporal dev server on free ports (`.address`, `.namespace`), shared by every test of the session."""
    with DevServer(tmp_path_factory.mktemp("temporal")) as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def temporal_client(temporal_dev_server: DevServer) -> Client:
    """A client of the session's dev server with pydantic-ai's plugin (its payload converter)."""
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client

    return await Client.connect(
        temporal_dev_server.address, namespace=temporal_dev_server.namespace, plugins=[PydanticAIPlugin()]
    )
