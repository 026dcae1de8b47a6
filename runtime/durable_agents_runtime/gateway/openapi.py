"""The gateway's OpenAPI document (`GET /openapi.json`), generated from the same pydantic models the
handlers validate with, and the same route list (`app.ROUTES`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from durable_agents_api.contract import DecisionOutcome, SessionReply
from durable_agents_runtime.gateway.models import (
    AgentView,
    ApprovalView,
    ChatCompletion,
    ChatCompletionRequest,
    DecideRequest,
    ErrorBody,
    MessageRequest,
    RunView,
    SessionHistory,
    SessionView,
    StartRunRequest,
)

__all__ = ["OPERATIONS", "openapi_document"]

_REF = "#/components/schemas/{model}"

OPERATIONS: dict[str, tuple[str, type[BaseModel] | None, type[BaseModel] | None, bool, str]] = {
    # handler: (summary, request body, response body, response is a list, response media type)
    "list_agents": ("The agents served and their health", None, AgentView, True, "application/json"),
    "get_agent": ("One agent and its health", None, AgentView, False, "application/json"),
    "list_agent_runs": ("The newest runs of an agent (?limit=)", None, RunView, True, "application/json"),
    "start_run": ("Start a run of an agent", StartRunRequest, RunView, False, "application/json"),
    "list_sessions": ("The sessions of an agent", None, SessionView, True, "application/json"),
    "session_history": ("A session's conversation", None, SessionHistory, False, "application/json"),
    "send_message": (
        "Send a message to a session (started if new); with `stream`, Server-Sent Events: toolCall, "
        "toolResult, text, then reply",
        MessageRequest,
        SessionReply,
        False,
        "application/json",
    ),
    "get_run": (
        "A run's status, output or error, and pending calls",
        None,
        RunView,
        False,
        "application/json",
    ),
    "run_events": (
        "A run's events as Server-Sent Events: toolCall, toolResult, text, result, end (or error)",
        None,
        None,
        False,
        "text/event-stream",
    ),
    "cancel_run": ("Ask a run to cancel", None, RunView, False, "application/json"),
    "run_approvals": ("The calls a run waits on", None, ApprovalView, True, "application/json"),
    "decide": (
        "Approve, deny or answer a run's pending calls",
        DecideRequest,
        DecisionOutcome,
        False,
        "application/json",
    ),
    "list_approvals": (
        "Every pending call of the agents served",
        None,
        ApprovalView,
        True,
        "application/json",
    ),
    "chat_completions": (
        "OpenAI-compatible chat completions: model is the agent's name (or NAMESPACE/NAME); "
        "X-Session-Id maps to a session",
        ChatCompletionRequest,
        ChatCompletion,
        False,
        "application/json",
    ),
    "list_models": ("The agents, as OpenAI models", None, None, False, "application/json"),
}

_ERRORS = {
    "401": "No valid bearer token",
    "403": "The token lacks the right this needs",
    "404": "No such agent, run or session",
    "409": "Refused: the run finished, the call was decided, the session ended; or the agent's name is "
    "served from several namespaces (name one with ?namespace=)",
    "413": "The request body is too large",
    "422": "The request body is not valid",
    "429": "Too many requests for this token; see Retry-After",
}


def _schemas() -> dict[str, Any]:
    models = {m for op in OPERATIONS.values() for m in op[1:3] if m is not None} | {ErrorBody}
    _, schema = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)], ref_template=_REF
    )
    return schema.get("$defs", {})


def _operation(name: str, method: str, path: str) -> dict[str, Any]:
    summary, request, response, many, media = OPERATIONS[name]
    error = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    content: dict[str, Any] = {}
    if response is not None:
        ref = {"$ref": _REF.format(model=response.__name__)}
        content = {media: {"schema": {"type": "array", "items": ref} if many else ref}}
    elif media == "text/event-stream":
        content = {media: {"schema": {"type": "string"}}}
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "OK", "content": content},
            **{code: {"description": text, "content": error} for code, text in _ERRORS.items()},
        },
        "parameters": [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in path.split("/")
            if part.startswith("{")
        ],
    }
    if "{agent}" in path:
        operation["parameters"].append(
            {
                "name": "namespace",
                "in": "query",
                "required": False,
                "description": "The agent's namespace: needed only when its name is served from several",
                "schema": {"type": "string"},
            }
        )
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=request.__name__)}}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the gateway serves."""
    from durable_agents_runtime.gateway import openai_compat
    from durable_agents_runtime.gateway.app import ROUTES

    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in [*ROUTES, *openai_compat.ROUTES]:
        paths.setdefault(path, {})[method.lower()] = _operation(handler.__name__, method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "durable-agents gateway", "version": "v1alpha1"},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
