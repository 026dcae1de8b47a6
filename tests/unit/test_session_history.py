"""How a session's message history is bounded and shown (`session_history`), and the `sessions:` manifest
block that configures it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from durable_agents_api.config import SessionsSpec, TemporalSpec
from durable_agents_api.contract import session_id_of, session_workflow_id
from durable_agents_api.errors import ConfigError, format_validation
from durable_agents_api.manifest import load_manifests
from durable_agents_api.resources import DurableAgent
from durable_agents_runtime.session_history import (
    SUMMARY_PREFIX,
    history_bytes,
    keep_last,
    split_for_summary,
    transcript,
    with_summary,
)


def turn(prompt: str, *, tool: bool = False) -> list[ModelMessage]:
    """One turn: the prompt, optionally a tool call and its return, then the answer."""
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(prompt)])]
    if tool:
        messages += [
            ModelResponse(parts=[ToolCallPart("lookup", {"key": prompt}, tool_call_id="c1")]),
            ModelRequest(parts=[ToolReturnPart("lookup", f"value of {prompt}", tool_call_id="c1")]),
        ]
    return [*messages, ModelResponse(parts=[TextPart(f"answer to {prompt}")])]


def prompts(messages: list[ModelMessage]) -> list[str]:
    return [str(p.content) for m in messages for p in m.parts if isinstance(p, UserPromptPart)]


def test_keep_last_drops_whole_turns_from_the_front() -> None:
    history = turn("a") + turn("b", tool=True) + turn("c") + turn("d", tool=True)

    bounded = keep_last(history, 6)

    # "d" is 4 messages, "c" 2: together 6; "b" would split (4 more).
    assert prompts(bounded.messages) == ["c", "d"]
    assert bounded.dropped_turns == 2
    assert bounded.messages == history[-6:]


def test_keep_last_keeps_the_latest_turn_even_when_it_alone_is_longer() -> None:
    history = turn("a") + turn("b", tool=True)

    bounded = keep_last(history, 1)

    assert prompts(bounded.messages) == ["b"]
    assert bounded.dropped_turns == 1


def test_keep_last_carries_the_system_prompt_over_to_the_kept_turns() -> None:
    first = ModelRequest(parts=[SystemPromptPart("be brief"), UserPromptPart("a")])
    history = [first, ModelResponse(parts=[TextPart("ok")]), *turn("b")]

    bounded = keep_last(history, 2)

    assert isinstance(bounded.messages[0], ModelRequest)
    assert [type(p) for p in bounded.messages[0].parts] == [SystemPromptPart, UserPromptPart]
    assert prompts(bounded.messages) == ["b"]


def test_a_summary_replaces_the_older_turns_and_shows_as_the_summary() -> None:
    history = turn("a") + turn("b") + turn("c")
    older, kept = split_for_summary(history, 2)

    summarized = with_summary("they said a and b", older, kept)

    assert prompts(older) == ["a", "b"] and prompts(kept) == ["c"]
    assert prompts(summarized) == [SUMMARY_PREFIX + "they said a and b", "c"]
    assert [(e.role, e.text) for e in transcript(summarized)] == [
        ("summary", "they said a and b"),
        ("user", "c"),
        ("agent", "answer to c"),
    ]


def test_the_transcript_shows_tool_calls_and_their_results() -> None:
    assert [(e.role, e.text) for e in transcript(turn("x", tool=True))] == [
        ("user", "x"),
        ("tool", 'lookup({"key": "x"})'),
        ("tool", "→ value of x"),
        ("agent", "answer to x"),
    ]


def test_history_bytes_is_the_size_of_the_history_as_json() -> None:
    history = turn("a") + turn("b", tool=True)

    assert history_bytes(history) == len(ModelMessagesTypeAdapter.dump_json(history))


def test_a_session_workflow_id_names_the_queue_and_gives_back_the_session_id() -> None:
    workflow_id = session_workflow_id("team-a.support", "chat-42")

    assert workflow_id == "session:team-a.support:chat-42"
    assert session_id_of(workflow_id) == "chat-42"


# --- the sessions: block --------------------------------------------------------------------------------


def agent(**spec: object) -> DurableAgent:
    return DurableAgent.model_validate(
        {"metadata": {"name": "a"}, "spec": {"agent": {"name": "a", "model": "test"}, **spec}}
    )


def test_sessions_defaults_when_the_block_is_left_out() -> None:
    config = agent().spec.runtime_config(temporal=TemporalSpec(task_queue="q"))
    defaults = SessionsSpec()

    assert config.sessions is None  # the rendered config (and so its hash) is unchanged without the block
    assert defaults.idle_timeout == timedelta(hours=24)
    assert defaults.continue_as_new_after_events == 2000
    assert (defaults.history.policy, defaults.history.keep_last) == ("keepLast", 40)
    assert defaults.history.max_bytes == 400_000


def test_the_sessions_block_reaches_the_runtime_config() -> None:
    spec = {"idleTimeout": "30m", "history": {"policy": "summarize", "keepLast": 10}}

    config = agent(sessions=spec).spec.runtime_config(temporal=TemporalSpec(task_queue="q"))

    assert config.sessions is not None
    assert config.sessions.idle_timeout == timedelta(minutes=30)
    assert config.sessions.history.policy == "summarize"
    assert config.to_api()["sessions"]["idleTimeout"] == "30m"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"history": {"maxBytes": 3_000_000}}, "spec.sessions.history.maxBytes"),
        ({"history": {"policy": "forget"}}, "spec.sessions.history.policy"),
        ({"idleTimeout": "soon"}, "spec.sessions.idleTimeout"),
        ({"continueAsNewAfterEvents": 0}, "spec.sessions.continueAsNewAfterEvents"),
    ],
)
def test_a_bad_sessions_field_is_named(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        agent(sessions=spec)

    assert field in format_validation(raised.value)


def test_a_config_error_names_the_sessions_field_in_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(
        "apiVersion: durable-agents.dev/v1alpha1\nkind: DurableAgent\nmetadata: {name: a}\n"
        "spec:\n  agent: {name: a, model: test}\n  sessions: {history: {keepLast: 0}}\n"
    )

    with pytest.raises(ConfigError, match=r"spec\.sessions\.history\.keepLast"):
        load_manifests([path])
