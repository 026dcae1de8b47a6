"""The gateway's limits and token checks, in process (no Temporal: every answer here comes before the
gateway would call it): 401 for a missing or wrong token, 403 for a viewer's write, 413 for a large
body, 429 per token with Retry-After, each as a JSON error; the token bucket itself; and how a name
served from two namespaces is addressed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from durable_agents_runtime.client import AgentsClient
from durable_agents_runtime.gateway import (
    AgentEntry,
    Gateway,
    GatewaySettings,
    KnownHealth,
    LocalTokens,
    StaticCatalog,
)
from durable_agents_runtime.gateway.app import build_app
from durable_agents_runtime.gateway.limits import RateLimiter

pytestmark = pytest.mark.anyio

ADMIN, VIEWER = "admin-token", "viewer-token"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _never_connects() -> AgentsClient:
    raise AssertionError("these requests must be answered before Temporal is asked")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    gateway = Gateway(
        _never_connects,
        StaticCatalog([AgentEntry("files", "team-a", "team-a.files", "files")]),
        LocalTokens({ADMIN: "admin", VIEWER: "viewer"}, principal="ada"),
        GatewaySettings(body_limit=1000, rate_per_second=1.0, rate_burst=3),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=build_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_missing_or_wrong_token_is_401_and_says_nothing_about_why(http: httpx.AsyncClient) -> None:
    answers = [
        await http.get("/api/agents"),
        await http.get("/api/agents", headers=bearer("wrong")),
        await http.get("/api/agents", headers={"Authorization": f"Basic {ADMIN}"}),
        await http.post("/v1/chat/completions", json={}, headers=bearer("wrong")),
    ]

    assert [a.status_code for a in answers] == [401] * 4
    assert {a.text for a in answers} == {
        '{"error":{"code":"unauthenticated","message":"a valid bearer token is required: send '
        '`Authorization: Bearer TOKEN`"}}'
    }
    assert answers[0].headers["www-authenticate"] == "Bearer"


async def test_a_viewer_token_may_read_but_not_start_or_decide(http: httpx.AsyncClient) -> None:
    start = await http.post("/api/agents/files/runs", json={"prompt": "hi"}, headers=bearer(VIEWER))
    chat = await http.post(
        "/v1/chat/completions",
        json={"model": "files", "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(VIEWER),
    )
    unknown = await http.get("/api/agents/nope", headers=bearer(VIEWER))

    assert (start.status_code, chat.status_code) == (403, 403)
    assert start.json() == chat.json()
    assert start.json()["error"]["code"] == "forbidden"
    assert unknown.status_code == 404 and "serves team-a/files" in unknown.json()["error"]["message"]
    limit = await http.get("/api/agents/files/runs?limit=lots", headers=bearer(ADMIN))
    assert limit.status_code == 422 and "from 1 to 200" in limit.json()["error"]["message"]


async def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(http: httpx.AsyncClient) -> None:
    announced = await http.post("/api/agents/files/runs", content=b"x" * 1001, headers=bearer(ADMIN))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 400

    streamed = await http.post("/api/agents/files/runs", content=chunks(), headers=bearer(ADMIN))

    for answer in (announced, streamed):
        assert answer.status_code == 413
        assert answer.json()["error"] == {
            "code": "too_large",
            "message": "the request body is larger than 1000 bytes, the gateway's limit: send less",
        }


async def test_each_token_is_rate_limited_on_its_own_with_retry_after(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    statuses = [(await http.get("/api/agents/nope", headers=bearer(ADMIN))).status_code for _ in range(4)]
    limited = await http.get("/api/agents/nope", headers=bearer(ADMIN))
    other = await http.get("/api/agents/nope", headers=bearer(VIEWER))
    clock.now += 1.0
    later = await http.get("/api/agents/nope", headers=bearer(ADMIN))

    assert statuses == [404, 404, 404, 429]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "at most 1 per second per token (bursts of 3)" in limited.json()["error"]["message"]
    assert other.status_code == 404
    assert later.status_code == 404


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    limiter = RateLimiter(per_second=2.0, burst=2)

    assert [limiter.take("a", 0.0) for _ in range(2)] == [None, None]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)
    assert limiter.take("a", 0.5) is None
    assert limiter.take("a", 100.0) is None and limiter.take("a", 100.0) is None
    assert limiter.take("a", 100.0) is not None
    with pytest.raises(ValueError, match="per_second > 0"):
        RateLimiter(per_second=0, burst=1)


async def test_a_name_served_from_two_namespaces_needs_its_namespace(clock: Clock) -> None:
    gateway = Gateway(
        _never_connects,
        StaticCatalog(
            [
                AgentEntry("files", "team-a", "team-a.files", "files"),
                AgentEntry("files", "team-b", "b", "files"),
            ]
        ),
        LocalTokens({ADMIN: "admin", VIEWER: "viewer"}, principal="ada"),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=build_app(gateway))
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        ambiguous = await http.post("/api/agents/files/runs", json={"prompt": "hi"}, headers=bearer(VIEWER))
        ambiguous_chat = await http.post(
            "/v1/chat/completions", json={"model": "files", **chat}, headers=bearer(ADMIN)
        )
        # Named with its namespace, the agent is found: the viewer is then refused, as for one namespace.
        named = await http.post(
            "/api/agents/files/runs?namespace=team-b", json={"prompt": "hi"}, headers=bearer(VIEWER)
        )
        named_chat = await http.post(
            "/v1/chat/completions", json={"model": "team-b/files", **chat}, headers=bearer(VIEWER)
        )
        elsewhere = await http.get("/api/agents/files?namespace=team-c", headers=bearer(VIEWER))

    for answer in (ambiguous, ambiguous_chat):
        assert answer.status_code == 409
        assert answer.json()["error"] == {
            "code": "ambiguous",
            "message": "agent 'files' is served from the namespaces team-a, team-b: name one "
            "(?namespace=NAME, or NAMESPACE/NAME as a chat-completions model)",
        }
    assert (named.status_code, named_chat.status_code) == (403, 403)
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["message"] == (
        "no agent 'files' in namespace 'team-c' here: the gateway serves team-a/files, team-b/files"
    )


async def test_agents_whose_health_the_catalog_knows_are_listed_without_asking_temporal(clock: Clock) -> None:
    known = KnownHealth(ready=False, workers=1, running=2, failed=3, message="RollingOut: 1 of 2 available")
    gateway = Gateway(
        _never_connects,
        StaticCatalog(
            [AgentEntry("files", "team-a", "team-a.files", "files", operator_status="x", health=known)]
        ),
        LocalTokens({VIEWER: "viewer"}, principal="ada"),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=build_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        listed = await http.get("/api/agents", headers=bearer(VIEWER))

    assert listed.status_code == 200, listed.text
    assert listed.json() == [
        {
            "name": "files",
            "namespace": "team-a",
            "task_queue": "team-a.files",
            "ready": False,
            "workers": 1,
            "running": 2,
            "failed": 3,
            "message": "RollingOut: 1 of 2 available",
            "operator_status": "x",
        }
    ]
