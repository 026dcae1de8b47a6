"""An OpenAI-compatible chat-completions endpoint, so chat front-ends and OpenAI SDK clients talk to a
durable agent unchanged: `model` is the agent's name (`NAMESPACE/NAME` where a name is served from
several namespaces), the last user message is the prompt.

With a session id (the `X-Session-Id` header, or `session_id` in the body: `extra_body` in the SDKs) the
message goes to that session, which carries the conversation itself (earlier messages in the request are
not replayed); without one, each request is a run of its own. `stream: true` answers with OpenAI's
`chat.completion.chunk` events and `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from durable_agents_api.contract import RunOutput
from durable_agents_runtime.gateway.app import Gateway, Problem, _body, problem_of
from durable_agents_runtime.gateway.auth import Access
from durable_agents_runtime.gateway.catalog import AgentEntry
from durable_agents_runtime.gateway.events import text_of
from durable_agents_runtime.gateway.models import (
    ChatChoice,
    ChatChoiceMessage,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChatUsage,
)

__all__ = ["ROUTES", "SESSION_HEADER"]

SESSION_HEADER = "X-Session-Id"


def _prompt(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        parts = [p.get("text", "") for p in message.content or [] if p.get("type") == "text"]
        if parts:
            return "\n".join(parts)
    raise Problem(
        422, "invalid", "messages has no user message with text: the last user message is the prompt"
    )


async def chat_completions(gateway: Gateway, request: Request) -> Response:
    principal = await gateway.principal(request)
    body = await _body(request, ChatCompletionRequest)
    namespace, _, name = body.model.rpartition("/")
    agent = await gateway.agent(name, namespace or None)
    await gateway.allow(principal, Access("create", "agentruns", agent.namespace, agent.name))
    prompt = _prompt(body.messages)
    session_id = request.headers.get(SESSION_HEADER) or body.session_id
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        chunks = _chunks(gateway, agent, prompt, session_id, completion_id, created)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
    output: RunOutput
    if session_id:
        output = await gateway.client.send_message(
            agent=agent.agent_name, task_queue=agent.task_queue, session_id=session_id, prompt=prompt
        )
    else:
        output = await gateway.client.run(agent.task_queue, prompt)
    usage = output.usage
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=agent.name,
        choices=[ChatChoice(message=ChatChoiceMessage(content=output.output_text))],
        usage=ChatUsage(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
        ),
    )
    return gateway.json(completion)


async def _chunks(
    gateway: Gateway, agent: AgentEntry, prompt: str, session_id: str | None, completion_id: str, created: int
) -> AsyncIterator[bytes]:
    def chunk(delta: ChatDelta, finish: bool = False) -> bytes:
        choice = ChatChunkChoice(delta=delta, finish_reason="stop" if finish else None)
        data = ChatCompletionChunk(id=completion_id, created=created, model=agent.name, choices=[choice])
        return f"data: {data.model_dump_json(exclude_none=False)}\n\n".encode()

    yield chunk(ChatDelta(role="assistant", content=""))
    streamed = False
    try:
        async for item in _items(gateway, agent, prompt, session_id):
            if isinstance(item, BaseModel):
                # The answer itself, when none of it streamed (an agent whose text is not published live).
                if not streamed:
                    yield chunk(ChatDelta(content=getattr(item, "output_text", "")))
                continue
            text = text_of(item)
            if text:
                streamed = True
                yield chunk(ChatDelta(content=text))
    except Exception as exc:
        problem = problem_of(exc)
        error = {"error": {"code": problem.code, "message": problem.message}}
        yield f"data: {json.dumps(error)}\n\n".encode()
        return
    yield chunk(ChatDelta(), finish=True)
    yield b"data: [DONE]\n\n"


async def _items(
    gateway: Gateway, agent: AgentEntry, prompt: str, session_id: str | None
) -> AsyncIterator[Any]:
    """The turn's (or run's) events, then its output (`SessionReply` or `RunOutput`) last."""
    client = gateway.client
    if session_id:
        async for item in client.stream_message(
            agent=agent.agent_name, task_queue=agent.task_queue, session_id=session_id, prompt=prompt
        ):
            yield item
        return
    run_id = await client.start_run(agent.task_queue, prompt, watch=True)
    async for event in client.run_events(run_id):
        yield event
    yield await client.result(run_id)


async def list_models(gateway: Gateway, request: Request) -> Response:
    principal = await gateway.principal(request)
    data = []
    for agent in await gateway.catalog.agents():
        try:
            await gateway.allow(principal, Access("get", "durableagents", agent.namespace, agent.name))
        except Problem:
            continue
        data.append({"id": agent.name, "object": "model", "created": 0, "owned_by": agent.namespace})
    return JSONResponse({"object": "list", "data": data})


ROUTES = [("POST", "/v1/chat/completions", chat_completions), ("GET", "/v1/models", list_models)]
