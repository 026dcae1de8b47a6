"""Fixtures of the operator tests: the handlers' logic is called directly with a recording in-memory
Kubernetes API (see `operator_support`) and, for AgentRuns and connections, a real Temporal dev server.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# --- real `durable-agents worker` processes -----------------------------------------------------------------

RUNTIME_CONFTEST = Path(__file__).parents[1] / "runtime" / "conftest.py"


@pytest.fixture
def start_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The runtime tests' worker-process pool (`tests/runtime/conftest.py`), loaded under its own name:
    `start_worker(config, **env)` starts a worker process on a rendered runtime config."""
    spec = importlib.util.spec_from_file_location("runtime_worker_pool", RUNTIME_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    pool = module.WorkerPool(tmp_path_factory)
    yield pool.start
    pool.close()
