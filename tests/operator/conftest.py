"""Fixtures of the operator tests: the handlers' logic is called directly with a recording in-memory
Kubernetes API (see `operator_support`) and, for AgentRuns and connections, a real Temporal dev server.
"""

from __future__ import annotations

import pytest
from operator_support import Clock, DevServer, FakeKube

from durable_agents_runtime.devserver import DevServer as DurableAgentsDevServer


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --- a real Temporal dev server, shared by the session ------------------------------------------------------


@pytest.fixture(scope="session")
def dev_server(temporal_dev_server: DurableAgentsDevServer) -> DevServer:
    """The suite's shared dev server (the root conftest's `temporal_dev_server`)."""
    return DevServer(temporal_dev_server.address, temporal_dev_server.namespace)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def clock() -> Clock:
    return Clock()
