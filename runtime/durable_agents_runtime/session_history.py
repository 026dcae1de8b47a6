"""A session's message history: its size, where its turns start, the two ways it is bounded
(`sessions.history.policy`), the transcript `durable-agents history` prints, and the summary activity.

Everything but `summarize_turns` is pure and deterministic (the session workflow calls it); the history is
a list of pydantic-ai `ModelMessage`s, each turn starting with a `ModelRequest` that holds the user's prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
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
from temporalio import activity

from durable_agents_api.contract import SessionEntry

__all__ = [
    "SUMMARIZE_ACTIVITY",
    "SUMMARY_PREFIX",
    "Bounded",
    "SummarizeInput",
    "history_bytes",
    "keep_last",
    "split_for_summary",
    "summarize_turns",
    "transcript",
    "with_summary",
]

SUMMARIZE_ACTIVITY = "durable-agents.session.summarize"
"""Activity the worker registers for `policy: summarize` (one model request by the agent's model)."""
SUMMARY_PREFIX = "Summary of the earlier conversation: "
"""How the carried summary starts: the model reads it as context, `history` shows it as the summary."""
_SHOWN_ARGS = 200
_SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below for the assistant who will continue it: the facts, names, numbers, "
    "decisions and open questions it needs, in a few short paragraphs. Write only the summary."
)


def history_bytes(messages: Sequence[ModelMessage]) -> int:
    """Size of `messages` as JSON, as the history travels in activity inputs and continue-as-new."""
    return len(ModelMessagesTypeAdapter.dump_json(list(messages)))


def _turn_starts(messages: Sequence[ModelMessage]) -> list[int]:
    return [
        index
        for index, message in enumerate(messages)
        if isinstance(message, ModelRequest) and any(isinstance(p, UserPromptPart) for p in message.parts)
    ]


def _cut(messages: Sequence[ModelMessage], keep: int) -> int:
    """Where the kept part starts: the first turn start leaving at most `keep` messages, else the last
    turn start (a turn is never split; the latest turn is always kept)."""
    starts = _turn_starts(messages)
    if not starts:
        return 0
    within = [s for s in starts if len(messages) - s <= keep]
    return within[0] if within else starts[-1]


def _system_parts(messages: Sequence[ModelMessage]) -> list[SystemPromptPart]:
    first = messages[0] if messages else None
    if not isinstance(first, ModelRequest):
        return []
    return [p for p in first.parts if isinstance(p, SystemPromptPart)]


def _with_system(system: list[SystemPromptPart], messages: list[ModelMessage]) -> list[ModelMessage]:
    """`messages` with the conversation's system prompt parts at its start (pydantic-ai adds system
    prompts only to a conversation without history, so a trimmed one keeps them explicitly)."""
    if not system or not messages or not isinstance(messages[0], ModelRequest):
        return messages
    first = messages[0]
    if any(isinstance(p, SystemPromptPart) for p in first.parts):
        return messages
    return [ModelRequest(parts=[*system, *first.parts], instructions=first.instructions), *messages[1:]]


@dataclass(frozen=True)
class Bounded:
    """A history after its policy applied: the messages carried on, and how many turns left it."""

    messages: list[ModelMessage]
    dropped_turns: int


def keep_last(messages: Sequence[ModelMessage], keep: int) -> Bounded:
    """The last `keep` messages, rounded to whole turns (policy `keepLast`)."""
    cut = _cut(messages, keep)
    dropped = len([s for s in _turn_starts(messages) if s < cut])
    kept = _with_system(_system_parts(messages), list(messages[cut:]))
    return Bounded(kept, dropped)


def split_for_summary(
    messages: Sequence[ModelMessage], keep: int
) -> tuple[list[ModelMessage], list[ModelMessage]]:
    """(the older turns to summarise, the last `keep` messages kept as they are) (policy `summarize`)."""
    cut = _cut(messages, keep)
    return list(messages[:cut]), list(messages[cut:])


def with_summary(
    summary: str, older: Sequence[ModelMessage], kept: Sequence[ModelMessage]
) -> list[ModelMessage]:
    """The carried history: the summary of `older` as the first request, then the `kept` messages."""
    parts: list[Any] = [*_system_parts(older), UserPromptPart(SUMMARY_PREFIX + summary)]
    return [ModelRequest(parts=parts), ModelResponse(parts=[TextPart("Understood.")]), *kept]


def _text(content: Any) -> str:
    return content if isinstance(content, str) else " ".join(str(c) for c in content if isinstance(c, str))


def _shown(args: Any) -> str:
    text = args if isinstance(args, str) else json.dumps(args, default=str)
    return text if len(text) <= _SHOWN_ARGS else text[: _SHOWN_ARGS - 3] + "..."


def transcript(messages: Sequence[ModelMessage]) -> list[SessionEntry]:
    """The conversation in `messages` as lines to show: prompts, answers, tool calls, the summary."""
    entries: list[SessionEntry] = []
    for message in messages:
        for part in message.parts:
            if isinstance(part, UserPromptPart):
                text = _text(part.content)
                if text.startswith(SUMMARY_PREFIX):
                    entries.append(SessionEntry(role="summary", text=text.removeprefix(SUMMARY_PREFIX)))
                else:
                    entries.append(SessionEntry(role="user", text=text))
            elif isinstance(part, TextPart) and part.content:
                entries.append(SessionEntry(role="agent", text=part.content))
            elif isinstance(part, ToolCallPart):
                entries.append(SessionEntry(role="tool", text=f"{part.tool_name}({_shown(part.args)})"))
            elif isinstance(part, ToolReturnPart):
                entries.append(SessionEntry(role="tool", text=f"→ {_shown(part.model_response_str())}"))
    # The placeholder answer to a summary is not part of the conversation.
    return [
        e
        for i, e in enumerate(entries)
        if not (e.role == "agent" and e.text == "Understood." and i and entries[i - 1].role == "summary")
    ]


class SummarizeInput(BaseModel):
    """`SUMMARIZE_ACTIVITY` input: the older turns as a transcript."""

    transcript: list[SessionEntry]


@activity.defn(name=SUMMARIZE_ACTIVITY)
async def summarize_turns(turns: SummarizeInput) -> str:
    """A summary of `turns`, written by the model of the agent serving this activity's task queue."""
    from pydantic_ai.direct import model_request

    from durable_agents_runtime import served_agents

    served = served_agents.lookup(activity.info().task_queue)
    lines = "\n".join(f"{entry.role}: {entry.text}" for entry in turns.transcript)
    request = ModelRequest(parts=[UserPromptPart(f"{_SUMMARY_INSTRUCTIONS}\n\n{lines}")])
    response = await model_request(served.agent.model, [request])  # pyright: ignore[reportArgumentType]
    return "".join(p.content for p in response.parts if isinstance(p, TextPart)).strip()
