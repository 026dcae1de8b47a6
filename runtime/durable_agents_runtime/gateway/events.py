"""Run and session events as the gateway streams them: pydantic-ai's events reduced to what a front-end
shows, and the Server-Sent Events framing."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

__all__ = ["event_view", "sse", "text_of"]


def event_view(event: Any) -> tuple[str, dict[str, Any]] | None:
    """(`toolCall` | `toolResult` | `text` | `result`, its data) for an event a front-end shows; None for
    the others (part ends, model request boundaries)."""
    from pydantic_ai.messages import FunctionToolCallEvent, FunctionToolResultEvent
    from pydantic_ai.run import AgentRunResultEvent

    if isinstance(event, FunctionToolCallEvent):
        part = event.part
        return "toolCall", {"tool": part.tool_name, "call_id": part.tool_call_id, "args": part.args_as_dict()}
    if isinstance(event, FunctionToolResultEvent):
        part = event.part
        return "toolResult", {
            "tool": part.tool_name,
            "call_id": part.tool_call_id,
            "content": part.model_response_str(),
        }
    text = text_of(event)
    if text:
        return "text", {"delta": text}
    if isinstance(event, AgentRunResultEvent):
        return "result", {"output": _json_value(event.result.output)}
    return None


def text_of(event: Any) -> str:
    """The text an event adds to the answer as it streams ('' for any other event)."""
    from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta

    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


def _json_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def sse(event: str | None, data: Any) -> bytes:
    """One Server-Sent Event; `data` is JSON-encoded (a string is sent as it is)."""
    payload = data if isinstance(data, str) else json.dumps(data, default=str)
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n").encode()
