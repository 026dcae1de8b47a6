"""Conversations end to end: real `durable-agents worker` processes on the session's dev server, a
FunctionModel agent (`session_agents.echo`) that records what the model was shown, messages sent as the
CLI and the operator send them (`session_client`), and the CLI verbs as real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from test_dev import REPO

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import SessionMessage, session_workflow_id
from durable_agents_api.manifest import load_manifests, runtime_config
from durable_agents_runtime.session_client import (
    SessionEndedError,
    SessionError,
    SessionNotFoundError,
    read_history,
    read_info,
    send_message,
)

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent
MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: {name}
spec:
  agent:
    name: session_echo
    entrypoint: session_agents:echo
  sessions:
{sessions}
"""


class Served:
    """A worker serving the echo agent with some `sessions:` settings, and what its model was shown."""

    def __init__(self, manifest: Path, config: RuntimeConfig, record: Path) -> None:
        self.manifest = manifest
        self.config = config
        self.record = record

    @property
    def task_queue(self) -> str:
        return self.config.temporal.task_queue

    def records(self) -> list[dict[str, Any]]:
        """Every model request the worker's model answered: what it was shown, whether it streamed."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def seen(self, first_prompt: str) -> list[list[str]]:
        """What the model was shown, one list per model request, for the session that began with
        `first_prompt`."""
        lines = [record["seen"] for record in self.records()]
        return [seen for seen in lines if f"user: {first_prompt}" in seen or seen[0].endswith(first_prompt)]

    async def send(self, client: Client, session_id: str, prompt: str) -> Any:
        return await send_message(
            client,
            agent="session_echo",
            task_queue=self.task_queue,
            session_id=session_id,
            message=SessionMessage(prompt=prompt),
        )

    async def info(self, client: Client, session_id: str) -> Any:
        return await read_info(
            client, agent="session_echo", task_queue=self.task_queue, session_id=session_id
        )


def _serve(
    temporal: Any, start: Any, tmp: pytest.TempPathFactory, sessions: str, name: str | None = None
) -> Served:
    directory = tmp.mktemp("sessions")
    name = name or f"echo-{uuid.uuid4().hex[:8]}"
    manifest = directory / f"{name}.yaml"
    manifest.write_text(MANIFEST.format(name=name, sessions=sessions))
    [loaded] = load_manifests([manifest])
    config = runtime_config(loaded, address=temporal.address, namespace=temporal.namespace)
    record = directory / "seen.jsonl"
    start(config, ready_timeout=180, PYTHONPATH=str(HERE), SESSION_AGENTS_RECORD=str(record))
    return Served(manifest, config, record)


@pytest.fixture(scope="module")
def echo(
    temporal_dev_server: Any, start_module_worker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Served:
    """Sessions that continue as new every few turns (30 events) and never go idle during a test."""
    return _serve(
        temporal_dev_server,
        start_module_worker,
        tmp_path_factory,
        "    idleTimeout: 1h\n    continueAsNewAfterEvents: 30",
    )


def new_session() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


async def test_a_second_message_sees_the_first_and_its_reply(temporal_client: Client, echo: Served) -> None:
    session = new_session()

    first = await echo.send(temporal_client, session, f"my name is Ada ({session})")
    second = await echo.send(temporal_client, session, "what is my name?")

    assert (first.turn, second.turn) == (1, 2)
    assert second.output_text == "reply to 'what is my name?' after 2 prompts"
    shown = echo.seen(f"my name is Ada ({session})")
    assert shown[-1] == [
        f"user: my name is Ada ({session})",
        f"agent: reply to 'my name is Ada ({session})' after 1 prompts",
        "user: what is my name?",
    ]


async def test_messages_sent_at_once_are_answered_one_after_another_in_order(
    temporal_client: Client, echo: Served
) -> None:
    session = new_session()
    await echo.send(temporal_client, session, f"start {session}")

    replies = await asyncio.gather(
        *(echo.send(temporal_client, session, f"slow message {i}") for i in range(3))
    )

    by_turn = sorted(replies, key=lambda r: r.turn)
    assert [r.turn for r in by_turn] == [2, 3, 4]
    # Each turn's model request saw every earlier turn complete (prompt and reply), never a turn in flight.
    shown = echo.seen(f"start {session}")
    assert [sum(s.startswith("user: ") for s in seen) for seen in shown] == [1, 2, 3, 4]
    for turn, seen in zip(by_turn, shown[1:], strict=True):
        prompt = turn.output_text.split("'")[1]
        assert seen[-1] == f"user: {prompt}"
        assert all(line.startswith(("user: ", "agent: ")) for line in seen)
        assert len(seen) == 2 * (turn.turn - 1) + 1


async def test_a_session_continues_as_new_and_keeps_its_whole_history(
    temporal_client: Client, echo: Served
) -> None:
    session = new_session()
    prompts = [f"fact {i} of {session}" for i in range(8)]

    for prompt in prompts:
        await echo.send(temporal_client, session, prompt)

    info = await echo.info(temporal_client, session)
    assert info.turns == 8
    assert info.continued_as_new >= 2
    workflow_id = session_workflow_id(echo.task_queue, session)
    runs = [w async for w in temporal_client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    continued = [w for w in runs if w.status == WorkflowExecutionStatus.CONTINUED_AS_NEW]
    assert len(continued) == info.continued_as_new
    # The last model request, in a later run than the first turns, was shown all of them.
    last = echo.seen(prompts[0])[-1]
    assert [s for s in last if s.startswith("user: ")] == [f"user: {p}" for p in prompts]
    history = await read_history(
        temporal_client, agent="session_echo", task_queue=echo.task_queue, session_id=session
    )
    assert [e.text for e in history if e.role == "user"] == prompts


async def test_an_open_session_is_not_counted_as_a_running_run(temporal_client: Client, echo: Served) -> None:
    from durable_agents_runtime.health import read_health

    await echo.send(temporal_client, new_session(), "are sessions runs?")

    health = (await read_health(temporal_client, [echo.task_queue]))[echo.task_queue]

    # An idle conversation must not keep the autoscaler above zero, nor count as a run in progress.
    assert (health.running, health.completed, health.failed) == (0, 0, 0)
    assert health.error is None


async def test_an_unknown_session_is_a_clear_error(temporal_client: Client, echo: Served) -> None:
    with pytest.raises(SessionNotFoundError) as raised:
        await echo.info(temporal_client, "no-such-session")

    assert "no session 'no-such-session'" in str(raised.value)
    assert "durable-agents sessions session_echo" in str(raised.value)


async def test_a_malformed_session_id_is_refused_before_anything_is_sent(
    temporal_client: Client, echo: Served
) -> None:
    with pytest.raises(SessionError, match="session id 'a:b' is not valid: use letters, digits"):
        await echo.send(temporal_client, "a:b", "hello")

    workflow_id = session_workflow_id(echo.task_queue, "a:b")
    assert [w async for w in temporal_client.list_workflows(f"WorkflowId = '{workflow_id}'")] == []


async def test_an_idle_session_ends_and_a_later_message_says_so(
    temporal_dev_server: Any,
    start_worker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    temporal_client: Client,
) -> None:
    served = _serve(temporal_dev_server, start_worker, tmp_path_factory, "    idleTimeout: 2s")
    session = new_session()
    await served.send(temporal_client, session, "hello")
    handle = temporal_client.get_workflow_handle(session_workflow_id(served.task_queue, session))

    deadline = time.monotonic() + 60
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "the idle session did not end"
        await asyncio.sleep(0.5)

    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    with pytest.raises(SessionEndedError) as raised:
        await served.send(temporal_client, session, "are you there?")
    message = str(raised.value)
    assert f"session {session!r} of agent session_echo has ended" in message
    assert "after 1 turns, idle for 2s, sessions.idleTimeout" in message
    assert "start a new session" in message
    # Refused, not restarted: still the one ended run.
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert len(served.seen("hello")) == 1


async def test_keep_last_drops_the_oldest_turns_once_the_history_outgrows_max_bytes(
    temporal_dev_server: Any,
    start_worker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    temporal_client: Client,
) -> None:
    served = _serve(
        temporal_dev_server,
        start_worker,
        tmp_path_factory,
        "    history:\n      maxBytes: 10000\n      policy: keepLast\n      keepLast: 4",
    )
    session = new_session()
    prompts = [f"{i} {session} " + "x" * 3000 for i in range(6)]

    for prompt in prompts:
        await served.send(temporal_client, session, prompt)

    info = await served.info(temporal_client, session)
    assert info.turns == 6
    assert info.trimmed_turns > 0
    last = served.seen(prompts[-1])[-1]
    users = [s.removeprefix("user: ") for s in last if s.startswith("user: ")]
    # Whole turns were dropped from the front, the latest ones kept in order.
    assert users == prompts[-len(users) :]
    assert 1 <= len(users) < len(prompts)
    # Bounded before each turn: at most keepLast messages, plus the turn answered since.
    assert info.history_messages <= 4 + 2


async def test_summarize_replaces_older_turns_with_a_summary_by_the_agents_model(
    temporal_dev_server: Any,
    start_worker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    temporal_client: Client,
) -> None:
    served = _serve(
        temporal_dev_server,
        start_worker,
        tmp_path_factory,
        "    history:\n      maxBytes: 10000\n      policy: summarize\n      keepLast: 2",
    )
    session = new_session()
    prompts = [f"topic{i} {session} " + "y" * 3000 for i in range(5)]

    for prompt in prompts:
        await served.send(temporal_client, session, prompt)

    history = await read_history(
        temporal_client, agent="session_echo", task_queue=served.task_queue, session_id=session
    )
    summaries = [e.text for e in history if e.role == "summary"]
    assert len(summaries) == 1
    # The summary came from the model (the echo agent names the prompts it was asked to summarise).
    assert summaries[0].startswith("they talked about topic0, topic1")
    info = await served.info(temporal_client, session)
    assert info.trimmed_turns > 0
    last = served.seen(prompts[-1])[-1]
    assert last[0].startswith("user: Summary of the earlier conversation: they talked about")
    assert last[-1] == f"user: {prompts[-1]}"


# --- the CLI ----------------------------------------------------------------------------------------------


def chat_cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_"))}
    return subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=REPO,
        input=stdin,
    )


def test_chat_answers_one_message_and_the_next_one_remembers_it(
    echo: Served, temporal_dev_server: Any
) -> None:
    session = new_session()
    where = ["--address", temporal_dev_server.address]

    first = chat_cli("chat", str(echo.manifest), "--session", session, f"hello {session}", *where)
    second = chat_cli("chat", str(echo.manifest), "--session", session, "--json", "and now?", *where)

    assert first.returncode == 0, first.stderr
    assert first.stdout == f"reply to 'hello {session}' after 1 prompts\n"
    assert second.returncode == 0, second.stderr
    reply = json.loads(second.stdout)
    assert reply["session"] == session and reply["turn"] == 2
    assert reply["output"] == "reply to 'and now?' after 2 prompts"


def test_chat_reads_a_conversation_from_stdin_and_streams_each_reply(
    echo: Served, temporal_dev_server: Any
) -> None:
    where = ["--address", temporal_dev_server.address]

    lines = "first line\n\nsecond line\n/exit\n"
    chat = chat_cli("chat", str(echo.manifest), "--stream", *where, stdin=lines)

    assert chat.returncode == 0, chat.stderr
    # A new session: its id is on stderr, for --session next time.
    session = chat.stderr.split()[1]
    assert chat.stderr.startswith(f"session {session} (continue it with --session {session})")
    # Streamed word by word (the echo model's stream function), then the line ends.
    assert chat.stdout == (
        "reply to 'first line' after 1 prompts \nreply to 'second line' after 2 prompts \n"
    )
    history = chat_cli("history", str(echo.manifest), "--session", session, *where)
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines() == [
        f"Session {session} of session_echo: 2 turns, active",
        "user: first line",
        "agent: reply to 'first line' after 1 prompts ",
        "user: second line",
        "agent: reply to 'second line' after 2 prompts ",
    ]
    streamed = [r["streamed"] for r in echo.records() if r["seen"][0] == "user: first line"]
    assert streamed == [True, True]


def test_sessions_lists_each_session_with_its_turns_and_state(echo: Served, temporal_dev_server: Any) -> None:
    where = ["--address", temporal_dev_server.address]
    session = new_session()
    for message in ("one", "two", "three"):
        assert chat_cli("chat", str(echo.manifest), "--session", session, message, *where).returncode == 0

    listed = chat_cli("sessions", str(echo.manifest), "--json", *where)
    table = chat_cli("sessions", str(echo.manifest), *where)

    assert listed.returncode == 0, listed.stderr
    [mine] = [s for s in json.loads(listed.stdout) if s["id"] == session]
    assert mine["turns"] == 3 and mine["state"] == "active" and mine["lastActivity"]
    assert table.stdout.splitlines()[0].split() == ["SESSION", "TURNS", "LAST", "ACTIVITY", "STATE"]
    [row] = [line.split() for line in table.stdout.splitlines() if line.startswith(session)]
    assert row[1] == "3" and row[3] == "active"


def test_history_of_an_unknown_session_says_so_and_exits_2(echo: Served, temporal_dev_server: Any) -> None:
    result = chat_cli(
        "history", str(echo.manifest), "--session", "never-was", "--address", temporal_dev_server.address
    )

    assert result.returncode == 2
    assert "error: agent session_echo has no session 'never-was'" in result.stderr
    assert result.stdout == ""


def test_chat_with_no_worker_stops_waiting_and_says_how_to_start_one(
    temporal_dev_server: Any, tmp_path: Path
) -> None:
    manifest = tmp_path / "nobody.yaml"
    manifest.write_text(MANIFEST.format(name="nobody-serves", sessions="    idleTimeout: 1h"))

    result = chat_cli(
        "chat", str(manifest), "hello", "--worker-timeout", "1", "--address", temporal_dev_server.address
    )

    assert result.returncode == 3
    assert "no worker polls task queue 'default.nobody-serves' (waited 1s)" in result.stderr
