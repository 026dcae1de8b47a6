"""The gateway's authoriser in a cluster: Kubernetes decides who may do what.

A bearer token is checked with a TokenReview (who is it?), then each request with a SubjectAccessReview
for that user against the resource the request touches (`gateway.auth.Access`: reading runs is get/list
on agentruns, deciding a call is create on toolapprovals, ...), so RBAC alone decides. The gateway (runtime
layer) receives it as its `Authorizer` and never imports kubernetes.

Answers are cached for `cache_seconds` (keyed by a hash of the token, never the token), so a console
polling every second costs the apiserver one review of each kind per token per interval. The gateway's
service account needs create on tokenreviews (authentication.k8s.io) and subjectaccessreviews
(authorization.k8s.io).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from durable_agents_api.resources import API_GROUP
from durable_agents_operator.errors import KubeApiError
from durable_agents_runtime.gateway.auth import Access, AuthUnavailable, Forbidden, Principal, Unauthenticated

__all__ = ["KubeAuthorizer"]

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
MAX_CACHED = 10_000


class Reviews(Protocol):
    async def create_review(self, path: str, review: dict[str, Any]) -> dict[str, Any]: ...


class KubeAuthorizer:
    """`Authorizer` over TokenReview and SubjectAccessReview (`kube` is a `KubeClient`)."""

    def __init__(
        self,
        kube: Reviews,
        *,
        audiences: Sequence[str] = (),
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._audiences = list(audiences)
        self._ttl = cache_seconds
        self._clock = clock
        self._principals: dict[str, tuple[float, Principal | None]] = {}
        self._decisions: dict[tuple[str, Access], tuple[float, bool]] = {}

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cached(self._principals, key)
        if cached is None:
            cached = self._store(self._principals, key, await self._review_token(token))
        if cached[1] is None:
            raise Unauthenticated
        return cached[1]

    async def authorize(self, principal: Principal, access: Access) -> None:
        key = (principal.uid or principal.name, access)
        cached = self._cached(self._decisions, key)
        if cached is None:
            cached = self._store(self._decisions, key, await self._review_access(principal, access))
        if not cached[1]:
            raise Forbidden

    async def _review_token(self, token: str) -> Principal | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = self._audiences
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status = (await self._create(TOKEN_REVIEWS, review)).get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        extra = {k: tuple(v) for k, v in (user.get("extra") or {}).items()}
        return Principal(
            user.get("username", ""),
            uid=user.get("uid", ""),
            groups=tuple(user.get("groups") or ()),
            extra=extra,
        )

    async def _review_access(self, principal: Principal, access: Access) -> bool:
        attributes = {"group": API_GROUP, "resource": access.resource, "verb": access.verb}
        attributes["namespace"] = access.namespace
        if access.name:
            attributes["name"] = access.name
        spec: dict[str, Any] = {"user": principal.name, "groups": list(principal.groups)}
        if principal.uid:
            spec["uid"] = principal.uid
        if principal.extra:
            spec["extra"] = {k: list(v) for k, v in principal.extra.items()}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {**spec, "resourceAttributes": attributes},
        }
        status = (await self._create(ACCESS_REVIEWS, review)).get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    async def _create(self, path: str, review: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._kube.create_review(path, review)
        except KubeApiError:
            # The apiserver's message may name the user or the rule: keep it out of the answer.
            raise AuthUnavailable from None

    def _cached(self, cache: dict[Any, tuple[float, Any]], key: Any) -> tuple[float, Any] | None:
        entry = cache.get(key)
        return entry if entry is not None and entry[0] > self._clock() else None

    def _store(self, cache: dict[Any, tuple[float, Any]], key: Any, value: Any) -> tuple[float, Any]:
        if len(cache) >= MAX_CACHED:
            now = self._clock()
            for stale in [k for k, (expires, _) in cache.items() if expires <= now] or list(cache):
                del cache[stale]
        entry = (self._clock() + self._ttl, value)
        cache[key] = entry
        return entry
