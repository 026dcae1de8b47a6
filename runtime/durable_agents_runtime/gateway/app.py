"""The gateway's ASGI application: REST and Server-Sent Events over `AgentsClient`, the OpenAI-compatible
chat-completions endpoint (`openai_compat`), the OpenAPI document and the console's static files.

Every `/api` and `/v1` request goes through one pipeline (`Gateway.principal`, then `Gateway.allow`): the
per-token rate limit (429), the bearer token (401), the right the request needs (403). Errors are JSON
(`models.ErrorBody`) whose message says what to do; an authorisation failure says no more than its code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durable_agents_api.contract import SESSION_WORKFLOW_NAME, Decisions
from durable_agents_api.errors import DurableAgentsError
from durable_agents_runtime import decisions as _decisions
from durable_agents_runtime.client import AgentsClient, RunInfo
from durable_agents_runtime.errors import (
    DecisionError,
    RunFailedError,
    RunNotFoundError,
    SessionError,
    SessionNotFoundError,
    TemporalConnectError,
)
from durable_agents_runtime.gateway.auth import (
    Access,
    Authorizer,
    AuthUnavailable,
    Forbidden,
    Principal,
    Unauthenticated,
)
from durable_agents_runtime.gateway.catalog import AgentEntry, Catalog, KnownHealth
from durable_agents_runtime.gateway.events import event_view, sse
from durable_agents_runtime.gateway.limits import DEFAULT_BODY_LIMIT, BodyLimit, BodyTooLarge, RateLimiter
from durable_agents_runtime.gateway.models import (
    AgentView,
    ApprovalView,
    DecideRequest,
    MessageRequest,
    RunView,
    SessionHistory,
    SessionView,
    StartRunRequest,
)

__all__ = ["Gateway", "GatewaySettings", "Problem", "build_app"]

CONSOLE_DIR = Path(__file__).parent / "console"

_log = logging.getLogger("durable_agents.gateway")

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's limits."""

    body_limit: int = DEFAULT_BODY_LIMIT
    """Largest request body, in bytes (413 above)."""
    rate_per_second: float = 20.0
    """Requests per second each token may make on average (429 above)."""
    rate_burst: int = 60
    """Requests a token may make at once before the average applies."""
    approvals_sample: int = 50
    """`GET /api/approvals` reads the pending calls of this many newest runs (and sessions) per agent."""


class Problem(Exception):
    """An error answer: HTTP `status`, a `code` and a `message` saying what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def problem_of(exc: Exception) -> Problem:
    """The answer for an error of the runtime (the message is the runtime's, written for the caller)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, AuthUnavailable):
        return Problem(503, "unavailable", "cannot check the token right now: try again shortly")
    if isinstance(exc, BodyTooLarge):
        return Problem(413, "too_large", exc.message)
    if isinstance(exc, RunNotFoundError | SessionNotFoundError):
        return Problem(404, "not_found", str(exc))
    if isinstance(exc, RunFailedError):
        return Problem(409, "run_failed", str(exc))
    if isinstance(exc, TemporalConnectError):
        return Problem(503, "unavailable", str(exc))
    if isinstance(exc, DecisionError | SessionError):
        return Problem(409, "conflict", str(exc))
    if isinstance(exc, DurableAgentsError):
        return Problem(400, "invalid", str(exc))
    return Problem(500, "internal", "the gateway failed to answer; its log says why")


class Gateway:
    """The state every handler shares: the client (connected when the app starts), the agents, the
    authoriser and the rate limiter."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[AgentsClient]],
        catalog: Catalog,
        authorizer: Authorizer,
        settings: GatewaySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._client: AgentsClient | None = None
        self.catalog = catalog
        self.authorizer = authorizer
        self.settings = settings or GatewaySettings()
        self.limiter = RateLimiter(per_second=self.settings.rate_per_second, burst=self.settings.rate_burst)
        self._clock = clock

    @property
    def client(self) -> AgentsClient:
        if self._client is None:
            raise Problem(503, "unavailable", "the gateway is still connecting to Temporal: try again")
        return self._client

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._client = await self._connect()
        yield

    # --- the pipeline ----------------------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal:
        """Rate limit, then authenticate the request's bearer token."""
        token = _bearer(request)
        host = request.client.host if request.client else "unknown"
        key = hashlib.sha256(token.encode()).hexdigest() if token else f"ip:{host}"
        wait = self.limiter.take(key, self._clock())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise Problem(
                429,
                "rate_limited",
                f"too many requests: at most {self.settings.rate_per_second:g} per second per token "
                f"(bursts of {self.settings.rate_burst}); retry in {seconds}s",
                {"Retry-After": str(seconds)},
            )
        try:
            return await self.authorizer.authenticate(token)
        except Unauthenticated:
            raise Problem(
                401,
                "unauthenticated",
                "a valid bearer token is required: send `Authorization: Bearer TOKEN`",
                {"WWW-Authenticate": "Bearer"},
            ) from None

    async def allow(self, principal: Principal, access: Access) -> None:
        try:
            await self.authorizer.authorize(principal, access)
        except Forbidden:
            raise Problem(
                403, "forbidden", "this token is not allowed to do that: ask for a role that grants it"
            ) from None

    async def agent(self, name: str, namespace: str | None = None) -> AgentEntry:
        """The agent `name` (of `namespace`, which only a name served from several namespaces needs)."""
        entries = await self.catalog.agents()
        found = [e for e in entries if e.name == name and namespace in (None, e.namespace)]
        if len(found) == 1:
            return found[0]
        if found:
            where = ", ".join(sorted(e.namespace for e in found))
            raise Problem(
                409,
                "ambiguous",
                f"agent {name!r} is served from the namespaces {where}: name one (?namespace=NAME, or "
                "NAMESPACE/NAME as a chat-completions model)",
            )
        names = ", ".join(f"{e.namespace}/{e.name}" for e in entries) or "none"
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        raise Problem(404, "not_found", f"no agent {name!r}{where} here: the gateway serves {names}")

    async def agent_access(self, request: Request, verb: str, resource: str) -> tuple[Principal, AgentEntry]:
        """The principal and the agent named by the path (and `?namespace=`), once the principal may `verb`
        `resource`."""
        principal = await self.principal(request)
        agent = await self.agent(request.path_params["agent"], request.query_params.get("namespace"))
        await self.allow(principal, Access(verb, resource, agent.namespace, agent.name))
        return principal, agent

    async def run_access(
        self, request: Request, verb: str, resource: str
    ) -> tuple[Principal, AgentEntry, RunInfo]:
        """The principal, the run named by the path and its agent, once the principal may `verb` `resource`.
        A run of an agent this gateway does not serve is not found."""
        principal = await self.principal(request)
        run_id = request.path_params["run_id"]
        info = await self.client.describe_run(run_id)
        agents = [e for e in await self.catalog.agents() if e.task_queue == info.task_queue]
        if not agents:
            raise RunNotFoundError(f"no run {run_id!r} of an agent this gateway serves: check the id")
        await self.allow(principal, Access(verb, resource, agents[0].namespace, run_id))
        return principal, agents[0], info

    def json(self, model: BaseModel | list[Any], status: int = 200) -> Response:
        if isinstance(model, list):
            content = [m.model_dump(mode="json") for m in model]
        else:
            content = model.model_dump(mode="json")
        return JSONResponse(content, status_code=status)


async def _body(request: Request, model: type[_M]) -> _M:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        # The field paths and what is wrong; never the input itself (it may hold secrets).
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise Problem(422, "invalid", f"the request body is not a valid {model.__name__}: {where}") from None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# --- agents ----------------------------------------------------------------------------------------------


async def list_agents(gateway: Gateway, request: Request) -> Response:
    principal = await gateway.principal(request)
    visible: list[AgentEntry] = []
    for entry in await gateway.catalog.agents():
        with contextlib.suppress(Problem):
            await gateway.allow(principal, Access("get", "durableagents", entry.namespace, entry.name))
            visible.append(entry)
    return gateway.json(await _views(gateway, visible))


async def get_agent(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "get", "durableagents")
    [view] = await _views(gateway, [agent])
    return gateway.json(view)


async def _views(gateway: Gateway, entries: list[AgentEntry]) -> list[AgentView]:
    """Each agent with its health: as the catalog knows it, else read from Temporal (one batch)."""
    unknown = [e.task_queue for e in entries if e.health is None]
    read = await gateway.client.health(unknown) if unknown else {}
    views = []
    for entry in entries:
        known = entry.health
        if known is None:
            h = read[entry.task_queue]
            ready = h.reachable and h.workers > 0
            why = None if ready else (h.error or f"no worker polls task queue {entry.task_queue!r}")
            known = KnownHealth(ready, h.workers, h.running, h.failed, why)
        views.append(
            AgentView(
                name=entry.name,
                namespace=entry.namespace,
                task_queue=entry.task_queue,
                ready=known.ready,
                workers=known.workers,
                running=known.running,
                failed=known.failed,
                message=known.message,
                operator_status=entry.operator_status,
            )
        )
    return views


# --- runs ------------------------------------------------------------------------------------------------


async def start_run(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "create", "agentruns")
    body = await _body(request, StartRunRequest)
    run_id = await gateway.client.start_run(
        agent.task_queue, body.prompt, deps=body.deps, model=body.model, run_id=body.id, watch=body.watch
    )
    return gateway.json(RunView(id=run_id, agent=agent.name, status="running"), 201)


async def list_agent_runs(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "list", "agentruns")
    text = request.query_params.get("limit", "20")
    if not text.isdigit() or not 1 <= int(text) <= 200:
        raise Problem(422, "invalid", f"limit={text!r}: give a number of runs from 1 to 200")
    limit = int(text)
    runs = await gateway.client.list_runs(agent.task_queue, limit=limit)
    views = [
        RunView(
            id=r.run_id,
            agent=agent.name,
            status=r.status,
            started=r.started,
            closed=r.closed,
            pending=r.pending,
        )
        for r in runs
    ]
    return gateway.json(views)


async def get_run(gateway: Gateway, request: Request) -> Response:
    _, agent, info = await gateway.run_access(request, "get", "agentruns")
    view = RunView(
        id=info.run_id, agent=agent.name, status=info.status, started=info.started, closed=info.closed
    )
    if info.status == "running":
        with contextlib.suppress(DecisionError):
            view.pending = await gateway.client.pending_calls(info.run_id)
    elif info.status == "completed":
        output = await gateway.client.result(info.run_id)
        view.output, view.output_text = output.output, output.output_text
    elif info.status != "continuedAsNew":
        try:
            await gateway.client.result(info.run_id)
        except RunFailedError as exc:
            view.error = str(exc)
    return gateway.json(view)


async def run_events(gateway: Gateway, request: Request) -> Response:
    _, _, info = await gateway.run_access(request, "get", "agentruns")

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for event in gateway.client.run_events(info.run_id):
                view = event_view(event)
                if view is not None:
                    yield sse(*view)
            yield sse("end", {"id": info.run_id})
        except Exception as exc:
            yield sse("error", problem_of(exc).message)

    return _event_stream(stream())


async def cancel_run(gateway: Gateway, request: Request) -> Response:
    _, agent, info = await gateway.run_access(request, "delete", "agentruns")
    await gateway.client.cancel_run(info.run_id)
    return gateway.json(RunView(id=info.run_id, agent=agent.name, status=info.status), 202)


# --- approvals -------------------------------------------------------------------------------------------


async def list_approvals(gateway: Gateway, request: Request) -> Response:
    principal = await gateway.principal(request)
    views: list[ApprovalView] = []
    for agent in await gateway.catalog.agents():
        try:
            await gateway.allow(principal, Access("list", "agentruns", agent.namespace))
        except Problem:
            continue
        for workflow_type in (None, SESSION_WORKFLOW_NAME):
            options = {"workflow_type": workflow_type} if workflow_type else {}
            runs = await _decisions.list_runs(
                gateway.client.temporal, agent.task_queue, limit=gateway.settings.approvals_sample, **options
            )
            views += [
                ApprovalView(run_id=r.run_id, agent=agent.name, namespace=agent.namespace, call=call)
                for r in runs
                for call in r.pending or []
            ]
    return gateway.json(views)


async def run_approvals(gateway: Gateway, request: Request) -> Response:
    _, agent, info = await gateway.run_access(request, "get", "agentruns")
    calls = await gateway.client.pending_calls(info.run_id)
    return gateway.json(
        [ApprovalView(run_id=info.run_id, agent=agent.name, namespace=agent.namespace, call=c) for c in calls]
    )


async def decide(gateway: Gateway, request: Request) -> Response:
    principal, _, info = await gateway.run_access(request, "create", "toolapprovals")
    body = await _body(request, DecideRequest)
    decisions = Decisions(
        decisions=body.decisions, all=body.all, reason=body.reason, decided_by=principal.name
    )
    try:
        outcome = await gateway.client.decide(info.run_id, decisions)
    except DecisionError as exc:
        raise Problem(409, "conflict", str(exc)) from None
    return gateway.json(outcome)


# --- sessions --------------------------------------------------------------------------------------------


async def list_sessions(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "list", "agentruns")
    sessions = await gateway.client.list_sessions(agent.task_queue)
    return gateway.json(
        [
            SessionView(session_id=s.session_id, turns=s.turns, last_activity=s.last_activity, state=s.state)
            for s in sessions
        ]
    )


async def session_history(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "get", "agentruns")
    common = _session(agent, request.path_params["session_id"])
    entries = await gateway.client.session_history(**common)
    info = await gateway.client.session_info(**common)
    return gateway.json(
        SessionHistory(session_id=info.session_id, turns=info.turns, state=info.state, entries=entries)
    )


async def send_message(gateway: Gateway, request: Request) -> Response:
    _, agent = await gateway.agent_access(request, "create", "agentruns")
    body = await _body(request, MessageRequest)
    common = {**_session(agent, request.path_params["session_id"]), "prompt": body.prompt}
    options = {"deps": body.deps, "model": body.model}
    if not body.stream:
        reply = await gateway.client.send_message(**common, **options)
        return gateway.json(reply)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for item in gateway.client.stream_message(**common, **options):
                if isinstance(item, BaseModel):
                    yield sse("reply", item.model_dump(mode="json"))
                elif (view := event_view(item)) is not None:
                    yield sse(*view)
        except Exception as exc:
            yield sse("error", problem_of(exc).message)

    return _event_stream(stream())


def _session(agent: AgentEntry, session_id: str) -> dict[str, str]:
    from durable_agents_runtime.session_client import check_session_id

    return {
        "agent": agent.agent_name,
        "task_queue": agent.task_queue,
        "session_id": check_session_id(session_id),
    }


def _event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


# --- the application -------------------------------------------------------------------------------------

_Handler = Callable[[Gateway, Request], Awaitable[Response]]


def _route(gateway: Gateway, path: str, handler: _Handler, method: str) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(gateway, request)
        except Exception as exc:
            problem = problem_of(exc)
            if problem.status == 500:
                _log.exception("%s %s failed", request.method, request.url.path)
            return problem.response()

    return Route(path, endpoint, methods=[method], name=handler.__name__)


ROUTES: list[tuple[str, str, _Handler]] = [
    ("GET", "/api/agents", list_agents),
    ("GET", "/api/agents/{agent}", get_agent),
    ("GET", "/api/agents/{agent}/runs", list_agent_runs),
    ("POST", "/api/agents/{agent}/runs", start_run),
    ("GET", "/api/agents/{agent}/sessions", list_sessions),
    ("GET", "/api/agents/{agent}/sessions/{session_id}", session_history),
    ("POST", "/api/agents/{agent}/sessions/{session_id}/messages", send_message),
    ("GET", "/api/runs/{run_id}", get_run),
    ("GET", "/api/runs/{run_id}/events", run_events),
    ("POST", "/api/runs/{run_id}/cancel", cancel_run),
    ("GET", "/api/runs/{run_id}/approvals", run_approvals),
    ("POST", "/api/runs/{run_id}/decisions", decide),
    ("GET", "/api/approvals", list_approvals),
]
"""(method, path, handler) of the REST API; `openapi.py` documents the same list."""


def build_app(gateway: Gateway) -> BodyLimit:
    """The ASGI application of `gateway`, with the body size limit in front."""
    from durable_agents_runtime.gateway import openai_compat
    from durable_agents_runtime.gateway.openapi import openapi_document

    routes: list[Route | Mount] = [_route(gateway, path, handler, method) for method, path, handler in ROUTES]
    routes += [_route(gateway, path, handler, method) for method, path, handler in openai_compat.ROUTES]
    document = openapi_document()
    routes += [
        Route("/openapi.json", lambda request: JSONResponse(document), methods=["GET"]),
        Route("/healthz", lambda request: JSONResponse({"ok": True}), methods=["GET"]),
        Route("/", lambda request: RedirectResponse("/console/"), methods=["GET"]),
        Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
    ]
    app = Starlette(routes=routes, lifespan=gateway.lifespan)
    return BodyLimit(app, limit=gateway.settings.body_limit)
