"""The worker process's life cycle: a graceful drain on SIGTERM, and a clean refusal of a bad config.

SIGTERM is what Kubernetes sends a pod before it kills it. The worker must stop taking work, let the
activity in flight finish (its completion reaches Temporal, so it never runs again), and exit 0 within
`worker.gracefulShutdownTimeout`. A bad runtime config must stop the worker at once with a message that
names the field, not a traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from slow_tools import agent_config, executions, start_run_into_the_slow_tool, worker_env
from temporalio.client import Client

SLOW_SECONDS = 3.0
GRACE_SECONDS = 10.0
EXIT_MARGIN = 3.0


def readiness(url: str) -> int | None:
    """HTTP status of the readiness probe, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.mark.runtime
@pytest.mark.anyio
async def test_sigterm_lets_the_tool_in_flight_finish_and_exits_zero(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    config = agent_config(temporal_dev_server, "drain_agent", gracefulShutdownTimeout=f"{GRACE_SECONDS:.0f}s")
    log = tmp_path / "tools.log"
    first = start_worker(config, **worker_env(log, SLOW_SECONDS))
    handle = await start_run_into_the_slow_tool(
        temporal_client, config, log, worker_pid=first.pid, id_prefix="drain"
    )

    first.process.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    # While it drains (the tool still has seconds to go), the worker reports itself not ready.
    with anyio.fail_after(SLOW_SECONDS / 2):
        while readiness(first.health_url) == 200:
            await anyio.sleep(0.02)
    exit_code = await anyio.to_thread.run_sync(lambda: first.process.wait(GRACE_SECONDS + EXIT_MARGIN))
    exited_after = time.monotonic() - signalled_at

    assert exit_code == 0, first.output.read_text()[-2000:]
    assert exited_after <= GRACE_SECONDS + EXIT_MARGIN
    assert ("end", "slow_step", first.pid) in executions(log), "the tool in flight was cut off"

    start_worker(config, **worker_env(log, SLOW_SECONDS))
    with anyio.fail_after(60):
        result = await handle.result()
    assert "slow:" in result.output_text
    starts = Counter(tool for event, tool, _ in executions(log) if event == "start")
    assert starts == {"fast_step": 1, "slow_step": 1}, "an activity completed before the drain ran again"


# --- invalid configs ------------------------------------------------------------------------------------

VALID = {"agent": {"name": "hello", "model": "test"}, "temporal": {"taskQueue": "default.hello"}}


def run_worker(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", "worker", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "bad-duration.json",
            json.dumps({**VALID, "worker": {"gracefulShutdownTimeout": "ten seconds"}}),
            "worker.gracefulShutdownTimeout: invalid duration 'ten seconds'",
        ),
        (
            "unknown-field.yaml",
            "agent: {name: hello, model: test, instruction: typo}\ntemporal: {taskQueue: q}\n",
            "agent.instruction: unknown field",
        ),
        (
            "not-json.json",
            '{"agent": {"name": "hello", ',
            "(root): Invalid JSON: EOF while parsing",
        ),
        (
            "not-yaml.yaml",
            "agent: [unclosed\n",
            "not-yaml.yaml",
        ),
        (
            "bad-toolset.json",
            json.dumps(
                {
                    **VALID,
                    "agent": {**VALID["agent"], "toolsets": [{"id": "t", "entrypoint": "no_such_mod:t"}]},
                }
            ),
            "cannot import module 'no_such_mod'",
        ),
    ],
)
def test_worker_with_an_invalid_config_exits_non_zero_naming_the_problem(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)

    done = run_worker(path)

    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert expected in output, output
    assert "Traceback" not in output


def test_worker_with_a_missing_config_file_says_which_path(tmp_path: Path) -> None:
    done = run_worker(tmp_path / "absent.json")

    assert done.returncode != 0
    assert f"{tmp_path / 'absent.json'}" in done.stderr
    assert "Traceback" not in done.stderr
