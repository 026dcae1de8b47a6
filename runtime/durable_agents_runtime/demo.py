"""An offline demo: two deterministic tools and a scripted model that uses them (examples/hello.yaml).

The answers are made up but stable: the same city always gets the same weather and the same UTC offset,
so the demo and the tests need no network, no API key, and give repeatable output. The model
(`python:durable_agents_runtime.demo:model`) reads the city from the prompt, calls both tools, then
answers from their results — the same three activities (model, tools, model) a real model would cause.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator

from pydantic_ai import FunctionToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

__all__ = ["TOOLSET_ID", "get_local_time", "get_weather", "model", "toolset"]

TOOLSET_ID = "demo"

_CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "windy", "clear")
# Offsets from UTC in hours for a few cities; any other city gets one derived from its name.
_OFFSETS = {"paris": 1, "london": 0, "new york": -5, "tokyo": 9, "sydney": 11, "berlin": 1}
# "in Paris", "for New York", "about Tokyo": the capitalised words after a preposition.
_CITY = re.compile(r"\b(?:in|for|at|about|to)\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)")
_DEFAULT_CITY = "Paris"


def _seed(city: str) -> int:
    return zlib.crc32(city.strip().lower().encode())


def get_weather(city: str) -> str:
    """Current weather in `city`: conditions and temperature in °C."""
    seed = _seed(city)
    return f"{_CONDITIONS[seed % len(_CONDITIONS)]}, {5 + seed % 25} °C in {city}"


def get_local_time(city: str) -> str:
    """Local time in `city` (24-hour clock) at the demo's fixed moment, 12:00 UTC."""
    offset = _OFFSETS.get(city.strip().lower(), _seed(city) % 25 - 12)
    return f"{(12 + offset) % 24:02d}:00 in {city} (UTC{offset:+d})"


toolset: FunctionToolset[None] = FunctionToolset([get_weather, get_local_time], id=TOOLSET_ID)
"""The demo toolset; its id `demo` matches the manifest's toolset id."""


def _this_turn(messages: list[ModelMessage]) -> list[ModelMessage]:
    """The messages from the latest user prompt on: in a conversation, earlier turns are history."""
    for index in range(len(messages) - 1, -1, -1):
        if any(part.part_kind == "user-prompt" for part in messages[index].parts):
            return messages[index:]
    return messages


def _prompt(messages: list[ModelMessage]) -> str:
    for message in _this_turn(messages):
        for part in message.parts:
            if part.part_kind == "user-prompt" and isinstance(part.content, str):
                return part.content
    return ""


def _tool_results(messages: list[ModelMessage]) -> dict[str, str]:
    return {
        part.tool_name: str(part.content)
        for message in _this_turn(messages)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    }


def _city(prompt: str) -> str:
    match = _CITY.search(prompt)
    return match.group(1) if match else _DEFAULT_CITY


def _answer(results: dict[str, str]) -> str:
    weather = results.get("get_weather", "unknown weather")
    time = results.get("get_local_time", "an unknown time")
    return f"It is {weather}; the local time is {time}."


def _script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    results = _tool_results(messages)
    if results:
        return ModelResponse(parts=[TextPart(_answer(results))])
    args = {"city": _city(_prompt(messages))}
    return ModelResponse(
        parts=[ToolCallPart("get_weather", args), ToolCallPart("get_local_time", dict(args))]
    )


async def _stream_script(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    results = _tool_results(messages)
    if results:
        for word in re.findall(r"\S+\s*", _answer(results)):
            yield word
        return
    args = json.dumps({"city": _city(_prompt(messages))})
    yield {0: DeltaToolCall(name="get_weather", json_args=args)}
    yield {1: DeltaToolCall(name="get_local_time", json_args=args)}


model = FunctionModel(_script, stream_function=_stream_script, model_name="demo")
"""A scripted, offline model for the demo toolset: weather and local time for the city in the prompt."""
