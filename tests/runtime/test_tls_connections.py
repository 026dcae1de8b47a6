"""The worker and the CLI through a real TLS terminator (nginx, `tests/tls_proxy.py`) in front of the
session's dev server: server TLS, mTLS and an API key, each served and each refused with the setting to
fix. One nginx per mode for the whole module; certificates made in the test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime.devserver import DevServer
from tls_proxy import MODES, Certificates, Mode, TlsProxy, proxies_for

pytestmark = pytest.mark.runtime

API_KEY = f"sk-tls-test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxies(
    temporal_dev_server: DevServer, pki: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Mode, TlsProxy]]:
    with proxies_for(
        tmp_path_factory.mktemp("nginx"), upstream=temporal_dev_server.address, certs=pki, api_key=API_KEY
    ) as started:
        yield started


def worker_config(proxy: TlsProxy, pki: Certificates, **tls: Any) -> RuntimeConfig:
    """A declarative test-model agent whose worker reaches Temporal through `proxy`."""
    settings: dict[str, Any] = {"caFile": str(pki.ca.cert)}
    if proxy.mode == "mtls":
        settings |= {"clientCertFile": str(pki.client.cert), "clientKeyFile": str(pki.client.key)}
    settings |= tls
    temporal: dict[str, Any] = {
        "address": proxy.address,
        "taskQueue": f"tls-{proxy.mode}-{uuid.uuid4().hex[:8]}",
        "tls": {k: v for k, v in settings.items() if v is not None},
    }
    if proxy.mode == "api-key":
        temporal["apiKeyEnv"] = "TEMPORAL_CLOUD_KEY"
    return RuntimeConfig.model_validate(
        {"agent": {"name": "tls_echo", "model": "test"}, "temporal": temporal}
    )


def cli_env(proxy: TlsProxy, pki: Certificates, **overrides: str | None) -> dict[str, str]:
    """Temporal's standard environment for the CLI to reach `proxy` (an override of None drops a variable)."""
    env = {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca.cert)}
    if proxy.mode == "mtls":
        env["TEMPORAL_TLS_CLIENT_CERT_PATH"] = str(pki.client.cert)
        env["TEMPORAL_TLS_CLIENT_KEY_PATH"] = str(pki.client.key)
    if proxy.mode == "api-key":
        env["TEMPORAL_API_KEY"] = API_KEY
    env |= overrides
    return {k: v for k, v in env.items() if v is not None}


def cli_process(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`durable-agents ARGS` started in the background (the modes' commands run side by side)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "durable_agents_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment | env,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_workers_serve_and_the_cli_runs_and_reads_status_through_each_kind_of_tls(
    proxies: dict[Mode, TlsProxy], pki: Certificates, start_worker: Any
) -> None:
    configs = {mode: worker_config(proxies[mode], pki) for mode in MODES}
    workers = {mode: start_worker(configs[mode], wait=False, TEMPORAL_CLOUD_KEY=API_KEY) for mode in MODES}
    for worker in workers.values():
        worker.wait_ready(90)

    def each(*args: str) -> dict[Mode, tuple[int, str, str]]:
        started = {
            mode: cli_process(
                *args, "--task-queue", configs[mode].temporal.task_queue, env=cli_env(proxies[mode], pki)
            )
            for mode in MODES
        }
        return {mode: finish(process) for mode, process in started.items()}

    runs = each("run", "tls_echo", "hello over TLS")
    statuses = each("status", "tls_echo", "--json")
    for mode in MODES:
        code, out, err = runs[mode]
        assert code == 0, f"{mode}: {out}{err}{workers[mode].tail()}"
        code, out, err = statuses[mode]
        assert code == 0, f"{mode}: {out}{err}"
        fields = json.loads(out)
        assert fields["workers"] >= 1 and fields["runs"]["completed"] >= 1, (mode, fields)
        # The calls went through nginx (its access log), not around it.
        log = (proxies[mode].directory / "access.log").read_text()
        assert "/temporal.api.workflowservice.v1.WorkflowService/" in log, mode

    # The key reached the worker through its environment only: never its argv, never its output.
    worker = workers["api-key"]
    assert API_KEY not in Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode(errors="replace")
    for mode, worker in workers.items():
        worker.stop()
        assert API_KEY not in worker.tail(10**7), mode
        assert API_KEY not in "".join(runs[mode][1:] + statuses[mode][1:]), mode


# What the CLI is given (Temporal's environment variables over a working set-up), and the setting its
# message must name.
CLI_FAILURES: dict[str, tuple[Mode, dict[str, str | None], str]] = {
    "no CA: the system's CAs": (
        "tls",
        {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": None, "TEMPORAL_TLS": "true"},
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    ),
    "another CA": (
        "tls",
        {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "other-ca.crt"},
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    ),
    "wrong server name": (
        "tls",
        {"TEMPORAL_TLS_SERVER_NAME": "temporal.example"},
        "TEMPORAL_TLS_SERVER_NAME",
    ),
    "plaintext to a TLS server": ("tls", {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": None}, "TEMPORAL_TLS=true"),
    "missing client certificate": (
        "mtls",
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": None, "TEMPORAL_TLS_CLIENT_KEY_PATH": None},
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
    ),
    "expired client certificate": (
        "mtls",
        {
            "TEMPORAL_TLS_CLIENT_CERT_PATH": "expired-client.crt",
            "TEMPORAL_TLS_CLIENT_KEY_PATH": "expired-client.key",
        },
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
    ),
    "client certificate of another CA": (
        "mtls",
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": "stranger.crt", "TEMPORAL_TLS_CLIENT_KEY_PATH": "stranger.key"},
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
    ),
    "missing API key": ("api-key", {"TEMPORAL_API_KEY": None}, "TEMPORAL_API_KEY"),
    "wrong API key": ("api-key", {"TEMPORAL_API_KEY": "sk-wrong-key-0000"}, "TEMPORAL_API_KEY"),
}


def failure_env(case: str, proxies: dict[Mode, TlsProxy], pki: Certificates) -> dict[str, str]:
    mode, overrides, _ = CLI_FAILURES[case]
    pki_dir = pki.ca.cert.parent
    files = {k: (str(pki_dir / v) if v and v.endswith((".crt", ".key")) else v) for k, v in overrides.items()}
    return cli_env(proxies[mode], pki, **files)


@pytest.mark.anyio
async def test_each_refused_connection_names_the_setting_to_fix(
    proxies: dict[Mode, TlsProxy], pki: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every case through the CLI's own connect (`connect_client`, in this process: fast)."""
    from durable_agents_cli.targeting import connect_client
    from durable_agents_runtime.errors import TemporalConnectError

    problems = []
    for case, (_, _, setting) in CLI_FAILURES.items():
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("TEMPORAL_")]:
                env.delenv(name)
            for name, value in failure_env(case, proxies, pki).items():
                env.setenv(name, value)
            try:
                await connect_client(argparse.Namespace(address=None, namespace=None))
            except TemporalConnectError as exc:
                message = str(exc)
            else:
                message = "connected"
        if setting not in message or not message.startswith("could not connect to Temporal"):
            problems.append(f"{case}: expected {setting} named in: {message}")
        assert API_KEY not in message and "sk-wrong-key-0000" not in message
    assert not problems, "\n".join(problems)


def test_the_cli_prints_the_setting_to_fix_and_exits_1(
    proxies: dict[Mode, TlsProxy], pki: Certificates
) -> None:
    cases = ("missing client certificate", "wrong API key")
    started = {
        case: cli_process("status", "tls_echo", "--task-queue", "unused", env=failure_env(case, proxies, pki))
        for case in cases
    }
    for case, process in started.items():
        code, out, err = finish(process, timeout=60)
        assert code == 1, f"{case}: {out}{err}"
        assert CLI_FAILURES[case][2] in err and "Traceback" not in err, f"{case}: {err}"
        assert "sk-wrong-key-0000" not in out + err


# The worker's failures: the setting in its runtime config words, and a growing delay between attempts.
WORKER_FAILURES: dict[str, tuple[Mode, dict[str, str], str]] = {
    "wrong CA": ("tls", {"caFile": "other-ca.crt"}, "temporal.tls.caFile"),
    "expired client certificate": (
        "mtls",
        {"clientCertFile": "expired-client.crt", "clientKeyFile": "expired-client.key"},
        "temporal.tls.clientCertFile",
    ),
    "wrong API key": ("api-key", {}, "temporal.apiKeyEnv"),
}


def test_a_refused_worker_says_what_to_fix_and_backs_off(
    proxies: dict[Mode, TlsProxy], pki: Certificates, start_worker: Any
) -> None:
    pki_dir = pki.ca.cert.parent
    workers = {}
    for case, (mode, files, _) in WORKER_FAILURES.items():
        config = worker_config(proxies[mode], pki, **{k: str(pki_dir / v) for k, v in files.items()})
        workers[case] = start_worker(config, wait=False, TEMPORAL_CLOUD_KEY="sk-wrong-key-0000")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        len(re.findall(r"retrying in", w.tail(10**6))) < 3 for w in workers.values()
    ):
        time.sleep(0.2)
    for case, worker in workers.items():
        log = worker.tail(10**6)
        setting = WORKER_FAILURES[case][2]
        delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", log)]
        assert len(delays) >= 3, f"{case}: the worker did not report its connection failure:\n{log}"
        assert setting in log, f"{case}: the message does not name {setting}:\n{log}"
        assert delays == sorted(delays) and delays[2] >= 2 * delays[0], f"{case}: no back-off: {delays}"
        assert "sk-wrong-key-0000" not in log
        assert worker.process.poll() is None, f"{case}: a refused worker keeps trying (readiness stays 503)"
