"""`start_worker`: real `durable-agents worker` processes for a RuntimeConfig, as pods run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import (
    ENV_BIND_HOST,
    ENV_HEALTH_PORT,
    ENV_METRICS_PORT,
    LIVENESS_PATH,
    METRICS_PATH,
    READINESS_PATH,
)
from durable_agents_runtime.devserver import free_port


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@dataclass
class WorkerProcess:
    """A running `durable-agents worker`; its stdout and stderr go to `output`."""

    process: subprocess.Popen[bytes]
    config_path: Path
    output: Path
    health_port: int
    metrics_port: int
    started_at: float
    """`time.monotonic()` just before the process was spawned."""
    ready_at: float | None = None
    """`time.monotonic()` when `/readyz` first answered 200."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def health_url(self) -> str:
        """The readiness probe (`/readyz`): 200 only while the worker polls."""
        return f"http://127.0.0.1:{self.health_port}{READINESS_PATH}"

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}{LIVENESS_PATH}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{METRICS_PATH}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while http_status(self.health_url, timeout=0.5) != 200:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")
            time.sleep(0.02)
        self.ready_at = time.monotonic()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful drain) and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as when a node dies."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.output.read_text(errors="replace")[-chars:] if self.output.exists() else ""


class WorkerPool:
    """Starts worker processes into temporary directories and kills the ones still running on `close()`."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._started: list[WorkerProcess] = []

    def start(
        self, config: RuntimeConfig, *, ready_timeout: float = 60, wait: bool = True, **env: str
    ) -> WorkerProcess:
        """Serve `config` from a new worker process; with `wait`, return once `/readyz` answers 200."""
        directory = self._tmp.mktemp("worker")
        config_path = directory / "runtime.json"
        config_path.write_text(config.to_json())
        health_port, metrics_port = free_port(), free_port()
        # The worker must not pick up a Temporal or Logfire set-up from the developer's shell.
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
        pythonpath = [p for p in (env.pop("PYTHONPATH", None), environment.get("PYTHONPATH")) if p]
        environment.update(env)
        if pythonpath:
            environment["PYTHONPATH"] = os.pathsep.join(pythonpath)
        environment[ENV_BIND_HOST] = "127.0.0.1"
        environment[ENV_HEALTH_PORT] = str(health_port)
        environment[ENV_METRICS_PORT] = str(metrics_port)
        output = directory / "worker.log"
        with output.open("wb") as sink:
            started_at = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, "-m", "durable_agents_cli", "worker", "--config", str(config_path)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        worker = WorkerProcess(process, config_path, output, health_port, metrics_port, started_at)
        self._started.append(worker)
        if wait:
            worker.wait_ready(ready_timeout)
        return worker

    def close(self) -> None:
        for worker in self._started:
            worker.kill()


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartWorker]:
    """Factory: `start_worker(config, ready_timeout=60, wait=True, **env)` → a running `WorkerProcess`.

    The config is written to a file and served by `python -m durable_agents_runtime worker --config PATH`
    on free probe and metrics ports (bound to 127.0.0.1). `env` adds environment variables; a `PYTHONPATH`
    given there goes in front of the inherited one. With `wait` (the default) it returns once `/readyz`
    answers 200. Workers still running when the test ends are killed.
    """
    pool = WorkerPool(tmp_path_factory)
    yield pool.start
    pool.close()


@pytest.fixture(scope="module")
def start_module_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartWorker]:
    """`start_worker` for workers shared by the tests of one module."""
    pool = WorkerPool(tmp_path_factory)
    yield pool.start
    pool.close()
