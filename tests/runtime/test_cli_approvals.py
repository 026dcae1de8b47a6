"""`durable-agents runs`, `approve`, `deny`, `answer`, and `run` on a run that waits: real CLI subprocesses,
a real dev server, real worker processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_approvals import code, counted, declarative, env
from test_dev import cli

pytestmark = [pytest.mark.runtime]

WAIT = 60.0


def address(temporal: Any) -> list[str]:
    return ["--address", temporal.address]


def start_run(temporal: Any, task_queue: str) -> str:
    started = cli("run", "files", "tidy up", "--no-wait", "--task-queue", task_queue, *address(temporal))
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def runs_json(temporal: Any, task_queue: str) -> list[dict[str, Any]]:
    listed = cli("runs", "files", "--json", "--task-queue", task_queue, *address(temporal))
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def pending_of(temporal: Any, task_queue: str, run_id: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    while True:
        # Visibility lists a run shortly after it starts (and `run` in a subprocess starts it itself).
        listed = [r for r in runs_json(temporal, task_queue) if r["id"] == run_id]
        run = listed[0] if listed else None
        if run is not None and run["pendingCalls"] and len(run["pendingCalls"]) >= count:
            return run["pendingCalls"]
        assert time.monotonic() < deadline, f"run {run_id} never waited: {run}"
        time.sleep(0.5)


def test_runs_lists_the_pending_call_and_approve_lets_the_run_finish(
    temporal_dev_server: Any, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    queue = cfg.temporal.task_queue
    start_worker(cfg, **env(log))
    run_id = start_run(temporal_dev_server, queue)

    [call] = pending_of(temporal_dev_server, queue, run_id)
    shown = cli("runs", "files", "--task-queue", queue, *address(temporal_dev_server))
    status = cli("status", "files", "--json", "--task-queue", queue, *address(temporal_dev_server))
    approved = cli("approve", run_id, call["tool_call_id"], "--as", "ada", *address(temporal_dev_server))
    result = cli("result", run_id, "--json", *address(temporal_dev_server))

    assert call["tool_name"] == "delete_file" and json.loads(call["args_preview"]) == {"path": "a.txt"}
    assert (
        f"delete_file({call['args_preview']}) waits for approval · call {call['tool_call_id']}"
        in shown.stdout
    )
    assert json.loads(status.stdout)["awaitingDecision"] == 1
    assert approved.returncode == 0, approved.stderr
    assert f"decided {call['tool_call_id']}" in approved.stdout
    assert json.loads(result.stdout)["output"] == "model was told: deleted a.txt"
    assert counted(log, "tool", "delete_file") == 1


def test_deny_needs_a_reason_and_refused_decisions_say_why(
    temporal_dev_server: Any, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    queue = cfg.temporal.task_queue
    start_worker(cfg, **env(log))
    run_id = start_run(temporal_dev_server, queue)
    [call] = pending_of(temporal_dev_server, queue, run_id)
    call_id = call["tool_call_id"]

    no_reason = cli("deny", run_id, call_id, *address(temporal_dev_server))
    unknown = cli("approve", run_id, "no-such-call", *address(temporal_dev_server))
    nothing = cli("approve", run_id, *address(temporal_dev_server))
    no_run = cli("approve", "no-such-run", "x", *address(temporal_dev_server))
    denied = cli("deny", run_id, call_id, "--reason", "keep it", "--as", "ada", *address(temporal_dev_server))
    result = cli("result", run_id, "--json", *address(temporal_dev_server))
    after = cli("approve", run_id, call_id, *address(temporal_dev_server))

    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert unknown.returncode == 1
    assert f"no pending call 'no-such-call': pending are {call_id} (delete_file)" in unknown.stderr
    assert "nothing changed" in unknown.stderr
    assert nothing.returncode == 2 and "or pass --all" in nothing.stderr
    assert no_run.returncode == 1 and "no run 'no-such-run'" in no_run.stderr
    assert denied.returncode == 0, denied.stderr
    assert "ada denied this call: keep it" in json.loads(result.stdout)["output"]
    assert after.returncode == 1 and "has finished: there is nothing to decide" in after.stderr
    assert counted(log, "tool", "delete_file") == 0


def test_answer_gives_an_external_call_its_result_and_run_says_what_it_waits_for(
    temporal_dev_server: Any, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = code(temporal_dev_server, "asking")
    queue = cfg.temporal.task_queue
    start_worker(cfg, **env(log))
    # `run` waits in the foreground and says which call the run waits on, and how to decide it.
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable_agents_cli",
            "run",
            "asking",
            "where to?",
            "--id",
            "asking-1",
            "--task-queue",
            queue,
            *address(temporal_dev_server),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        [call] = pending_of(temporal_dev_server, queue, "asking-1")
        answered = cli("answer", "asking-1", call["tool_call_id"], '"Lisbon"', *address(temporal_dev_server))
        output, _ = waiting.communicate(timeout=WAIT)
    finally:
        waiting.kill()

    assert answered.returncode == 0, answered.stderr
    assert "waiting: ask_user(" in output and "waits for its result (external input)" in output
    assert f"durable-agents answer asking-1 {call['tool_call_id']}" in output
    assert "model was told: Lisbon" in output
    assert waiting.returncode == 0


def test_dev_one_shot_run_shows_the_command_that_decides_and_finishes_after_it(tmp_path: Path):
    """The same manifest locally: `dev --prompt` off a terminal prints the decide command (with the dev
    server's address) instead of waiting in silence."""
    from durable_agents_runtime.devserver import ENV_STATE_DIR

    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable_agents_cli",
            "dev",
            "examples/approval.yaml",
            "--prompt",
            "What is the weather in Paris?",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, ENV_STATE_DIR: str(tmp_path)},
    )
    try:
        assert dev.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + WAIT
        command = None
        while command is None and time.monotonic() < deadline:
            line = dev.stdout.readline()
            lines.append(line)
            found = re.search(r"decide: (durable-agents approve \S+ \S+ --address \S+ --namespace \S+)", line)
            command = found.group(1) if found else None
        assert command is not None, "".join(lines)
        approved = cli(*command.split()[1:], "--as", "ada")
        rest, _ = dev.communicate(timeout=WAIT)
    finally:
        dev.kill()

    assert approved.returncode == 0, approved.stderr
    assert "waiting: get_weather(" in "".join(lines)
    assert dev.returncode == 0, rest
    assert "get_weather" in rest and "Paris" in rest


def test_chat_shows_a_turn_waiting_for_approval_and_replies_once_it_is_decided(
    temporal_dev_server: Any, start_worker: Any, tmp_path: Path
):
    log = tmp_path / "calls.jsonl"
    cfg = declarative(temporal_dev_server)
    queue = cfg.temporal.task_queue
    start_worker(cfg, **env(log))
    command = ["chat", "files", "--session", "tidy-1", "tidy up", "--task-queue", queue]
    chat = subprocess.Popen(
        [sys.executable, "-m", "durable_agents_cli", *command, *address(temporal_dev_server)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert chat.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + WAIT
        decide = None
        while decide is None and time.monotonic() < deadline:
            lines.append(chat.stdout.readline())
            found = re.search(r"decide: (durable-agents approve \S+ \S+ --address \S+)", lines[-1])
            decide = found.group(1) if found else None
        assert decide is not None, "".join(lines)
        status = cli("status", "files", "--json", "--task-queue", queue, *address(temporal_dev_server))
        approved = cli(*decide.split()[1:], "--as", "ada")
        rest, _ = chat.communicate(timeout=WAIT)
    finally:
        chat.kill()

    assert "waiting: delete_file(" in "".join(lines)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["sessionsAwaitingDecision"] == 1
    assert approved.returncode == 0, approved.stderr
    assert chat.returncode == 0, rest
    assert "model was told: deleted a.txt" in rest
    assert counted(log, "tool", "delete_file") == 1
