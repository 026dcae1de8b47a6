"""`KubeAuthorizer` against a recording stand-in for the apiserver's review endpoints (the real apiserver
is in tests/e2e/test_gateway_rbac.py): what it asks, what it caches, and that an apiserver failure tells
the caller nothing but "try again"."""

from __future__ import annotations

from typing import Any

import pytest

from durable_agents_operator.errors import KubeUnavailable
from durable_agents_operator.gateway_auth import ACCESS_REVIEWS, TOKEN_REVIEWS, KubeAuthorizer
from durable_agents_runtime.gateway.auth import Access, AuthUnavailable, Forbidden, Unauthenticated

pytestmark = pytest.mark.anyio

USER = {"username": "system:serviceaccount:team-a:alice", "uid": "u-1", "groups": ["system:serviceaccounts"]}


class Reviews:
    def __init__(self, *, allowed: bool = True, fail: bool = False) -> None:
        self.allowed = allowed
        self.fail = fail
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def create_review(self, path: str, review: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((path, review))
        if self.fail:
            raise KubeUnavailable("apiserver at 10.0.0.1 refused user alice")
        if path == TOKEN_REVIEWS:
            known = review["spec"]["token"] == "good"
            return {**review, "status": {"authenticated": known, "user": USER if known else {}}}
        return {**review, "status": {"allowed": self.allowed}}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_token_is_reviewed_once_per_interval_and_each_access_asked_with_its_resource() -> None:
    reviews, clock = Reviews(), Clock()
    authorizer = KubeAuthorizer(reviews, audiences=["gateway"], cache_seconds=10, clock=clock)
    access = Access("create", "toolapprovals", "team-a", "run-1")

    principal = await authorizer.authenticate("good")
    await authorizer.authorize(principal, access)
    await authorizer.authenticate("good")
    await authorizer.authorize(principal, access)
    clock.now = 11
    await authorizer.authenticate("good")

    assert principal.name == USER["username"] and principal.groups == ("system:serviceaccounts",)
    assert [path for path, _ in reviews.sent] == [TOKEN_REVIEWS, ACCESS_REVIEWS, TOKEN_REVIEWS]
    assert reviews.sent[0][1]["spec"] == {"token": "good", "audiences": ["gateway"]}
    assert reviews.sent[1][1]["spec"] == {
        "user": USER["username"],
        "uid": "u-1",
        "groups": ["system:serviceaccounts"],
        "resourceAttributes": {
            "group": "durable-agents.dev",
            "resource": "toolapprovals",
            "verb": "create",
            "namespace": "team-a",
            "name": "run-1",
        },
    }


async def test_unknown_tokens_refused_access_and_apiserver_failures_are_the_gateway_errors() -> None:
    with pytest.raises(Unauthenticated):
        await KubeAuthorizer(Reviews()).authenticate("bad")
    with pytest.raises(Unauthenticated):
        await KubeAuthorizer(Reviews()).authenticate(None)
    refusing = KubeAuthorizer(Reviews(allowed=False))
    with pytest.raises(Forbidden):
        await refusing.authorize(await refusing.authenticate("good"), Access("get", "agentruns", "team-a"))
    with pytest.raises(AuthUnavailable) as failed:
        await KubeAuthorizer(Reviews(fail=True)).authenticate("good")
    assert str(failed.value) == ""  # the apiserver's words (users, addresses) stay out of the answer
