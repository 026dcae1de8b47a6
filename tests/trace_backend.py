"""A real trace backend for the trace tests: Arize Phoenix, an OTLP/HTTP receiver with a span store.

`scripts/install-trace-backend.sh` installs it from PyPI into a venv of its own (`make tools` runs it).
`TraceBackend(directory).start()` runs `phoenix serve` on free 127.0.0.1 ports with its working directory
(sqlite database, logs) under `directory`, with telemetry and every request of its own to the internet
turned off, and waits (bounded) until it answers. Workers export to `otlp_endpoint` (OTLP/HTTP; the
receiver listens on `/v1/traces` of the same port); `spans()` reads back what arrived through Phoenix's
REST API (`GET /v1/projects/default/spans`), as OTLP-shaped dicts: `name`, `context.trace_id`,
`context.span_id`, `parent_id`, `attributes`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from durable_agents_runtime.devserver import free_port

__all__ = ["Span", "TraceBackend", "phoenix_executable"]

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install-trace-backend.sh"
PROJECT = "default"
"""Phoenix files spans without an `openinference.project.name` resource attribute under this project."""

Span = dict[str, Any]


def phoenix_executable() -> Path:
    """The installed `phoenix` (the script's `--installed` mode: it installs nothing, fails if missing)."""
    done = subprocess.run(["bash", str(INSTALL), "--installed"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or "the trace backend is not installed: run `make tools`")
    return Path(done.stdout.strip().splitlines()[-1])


def _environment(directory: Path, port: int, grpc_port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    return {
        **clean,
        "PHOENIX_WORKING_DIR": str(directory),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        # No analytics pixels, web fonts, sandbox downloads or any other request of its own initiative.
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_LOGGING_LEVEL": "warning",
        "PHOENIX_DB_LOGGING_LEVEL": "warning",
        "PHOENIX_LOG_MIGRATIONS": "false",
    }


class TraceBackend:
    """`phoenix serve` in `directory`, on free 127.0.0.1 ports; a context manager that stops it after."""

    def __init__(self, directory: Path, *, ready_timeout: float = 180) -> None:
        self.directory = directory
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_endpoint(self) -> str:
        """What `observability.otlpEndpoint` takes (the worker appends `/v1/traces`)."""
        return self.url

    @property
    def log(self) -> str:
        path = self.directory / "phoenix.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self) -> Self:
        """Spawn the server; `wait_ready` (or `spans`) waits for it, so other set-up can overlap."""
        phoenix = phoenix_executable()
        self.directory.mkdir(parents=True, exist_ok=True)
        environment = _environment(self.directory, self.port, free_port())
        with (self.directory / "phoenix.log").open("wb") as sink:
            self._process = subprocess.Popen(
                [str(phoenix), "serve"],
                cwd=self.directory,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self) -> None:
        """Until `/healthz` answers 200, at most `ready_timeout` seconds (its imports and migrations)."""
        deadline = time.monotonic() + self.ready_timeout
        while not self._healthy():
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise RuntimeError(f"phoenix exited with {code}:\n{self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"phoenix did not answer on {self.url} within {self.ready_timeout}s:\n{self.log}"
                )
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def spans(self, **filters: str) -> list[Span]:
        """Every span stored so far (all pages), optionally filtered as the REST API allows (`trace_id`)."""
        spans: list[Span] = []
        cursor: str | None = None
        while True:
            query = {**filters, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            address = f"{self.url}/v1/projects/{PROJECT}/spans?{urllib.parse.urlencode(query)}"
            try:
                with urllib.request.urlopen(address, timeout=10) as response:
                    page = json.load(response)
            except urllib.error.HTTPError as error:
                if error.code == 404:  # No span has arrived yet, so the project does not exist yet.
                    return []
                raise
            spans.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return spans

    def wait_for_spans(
        self, done: Callable[[list[Span]], bool], *, timeout: float = 30, **filters: str
    ) -> list[Span]:
        """Read the spans until `done(spans)`, at most `timeout` seconds (export is batched)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(**filters)
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s["name"] for s in spans})
                raise AssertionError(f"after {timeout}s the backend has {len(spans)} spans: {names}")
            time.sleep(0.25)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
