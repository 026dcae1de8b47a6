"""Agents for the session tests, loaded by worker processes as `session_agents:<name>`.

Their FunctionModel records what the model received (every user prompt and answer it was shown) as one
JSON line per model request in the file `$SESSION_AGENTS_RECORD`, and whether the request was streamed, so
a test asserts on what the model saw. A streamed answer is sent word by word, each word followed by a space.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

RECORD_ENV = "SESSION_AGENTS_RECORD"
SLOW_SECONDS = 0.5
"""A prompt starting with `slow` takes this long to answer."""


def _seen(messages: list[ModelMessage]) -> list[str]:
    """`user: …` and `agent: …` for every prompt and answer in `messages`, in order."""
    seen: list[str] = []
    for message in messages:
        for part in message.parts:
            if isinstance(message, ModelRequest) and isinstance(part, UserPromptPart):
                seen.append(f"user: {part.content}")
            elif isinstance(part, TextPart):
                seen.append(f"agent: {part.content}")
    return seen


def _answer(messages: list[ModelMessage], *, streamed: bool = False) -> str:
    seen = _seen(messages)
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a") as record:
            record.write(json.dumps({"seen": seen, "streamed": streamed}) + "\n")
    last = seen[-1].removeprefix("user: ")
    if last.startswith("slow"):
        time.sleep(SLOW_SECONDS)
    if last.startswith("Summarise the conversation below"):
        # The summary request: name the topics (`topicN`) of the transcript it was given.
        topics = re.findall(r"topic\d+", last)
        return "they talked about " + ", ".join(dict.fromkeys(topics))
    return f"reply to {last!r} after {len([s for s in seen if s.startswith('user: ')])} prompts"


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart(_answer(messages))])


async def _stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    for word in _answer(messages, streamed=True).split(" "):
        yield word + " "


echo = Agent(FunctionModel(_respond, stream_function=_stream), name="session_echo")
"""Answers `reply to '<last prompt>' after <n> prompts`, recording what it was shown."""
