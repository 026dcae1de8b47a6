"""A worker whose spans go nowhere keeps Logfire out of its process; one that exports spans keeps it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime.import_gate import spans_may_leave
from durable_agents_runtime.observability import spans_have_a_destination

BASE = {"agent": {"name": "a", "model": "test"}, "temporal": {"address": "127.0.0.1:7233", "taskQueue": "q"}}
TOKEN = {"LOGFIRE_TOKEN": "pylf_v1_secret"}
OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}

CASES = [
    # (observability section, environment, spans leave?)
    ({}, {}, False),
    ({}, TOKEN, True),
    ({"logfire": {"send": False}}, TOKEN, False),
    ({"logfire": {"enabled": False}}, TOKEN, False),
    ({}, OTLP, True),
    ({"otlpEndpoint": "http://127.0.0.1:4318"}, {}, True),
    ({"otlpEndpoint": "http://127.0.0.1:4318", "logfire": {"enabled": False}}, {}, False),
    ({"logfire": {"send": False}}, OTLP, True),
]


@pytest.mark.parametrize(("observability", "environ", "leave"), CASES)
def test_the_raw_config_and_the_validated_one_agree_on_whether_spans_leave(
    observability: dict[str, Any], environ: dict[str, str], leave: bool
) -> None:
    config = RuntimeConfig.model_validate({**BASE, "observability": observability})
    # As a manifest gives it (only what the user wrote) and as the operator renders it (every default).
    assert spans_may_leave(observability, environ) is leave
    assert spans_may_leave(json.loads(config.to_json())["observability"], environ) is leave
    assert spans_have_a_destination(config, environ) is leave


PROBE = """
import json, sys
from durable_agents_runtime.import_gate import keep_logfire_out
kept_out = keep_logfire_out(sys.argv[1])
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel
import durable_agents_runtime.worker
result = Agent(TestModel(custom_output_text="ok")).run_sync("hi")
loaded = sys.modules.get("logfire") is not None
print(json.dumps({"kept_out": kept_out, "logfire": loaded, "output": result.output}))
"""


def probe(tmp_path: Path, observability: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    config = tmp_path / "runtime.json"
    config.write_text(RuntimeConfig.model_validate({**BASE, "observability": observability}).to_json())
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGFIRE_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "logfire-plugin" not in done.stderr, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_worker_process_exporting_nothing_never_imports_logfire_and_still_runs_agents(
    tmp_path: Path,
) -> None:
    assert probe(tmp_path, {}, {}) == {"kept_out": True, "logfire": False, "output": "ok"}


def test_a_worker_process_exporting_spans_keeps_logfire(tmp_path: Path) -> None:
    assert probe(tmp_path, {"otlpEndpoint": "http://127.0.0.1:4318"}, {}) == {
        "kept_out": False,
        "logfire": True,
        "output": "ok",
    }
