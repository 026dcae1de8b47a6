"""Fixtures of the operator tests: the handlers' logic is called directly with a recording in-memory
Kubernetes API (see `operator_support`) and, for AgentRuns and connections, a real Temporal dev server.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_support import Clock, DevServer, FakeKube
from temporalio.client import Client

TEMPORAL = Path(sys.executable).parent / "temporal"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --- a real Temporal dev server, shared by the session ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def dev_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    """The suite's shared dev server if there is one (`temporal_dev_server`), else one for this session."""
    try:
        shared = request.getfixturevalue("temporal_dev_server")
    except pytest.FixtureLookupError:
        pass
    else:
        yield DevServer(shared.address, shared.namespace)
        return
    ports = [_free_port() for _ in range(3)]
    state = tmp_path_factory.mktemp("temporal")
    log = (state / "temporal.log").open("w")
    command = [
        str(TEMPORAL), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
        "--port", str(ports[0]), "--http-port", str(ports[1]), "--metrics-port", str(ports[2]),
        "--db-filename", str(state / "temporal.db"), "--log-level", "warn",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        target = DevServer(f"127.0.0.1:{ports[0]}")
        asyncio.run(_wait_until_serving(target, server))
        yield target
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


async def _wait_until_serving(target: DevServer, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the dev server exited with {server.returncode}; see its temporal.log")
        try:
            await Client.connect(target.address, namespace=target.namespace)
            return
        # The frontend listens before it is healthy; connecting fails until then.
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def clock() -> Clock:
    return Clock()
