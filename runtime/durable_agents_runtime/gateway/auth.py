"""Who may do what through the gateway: each request names the Kubernetes access it needs (`Access`), and
an `Authorizer` decides. Locally that is `LocalTokens` (generated bearer tokens); in a cluster the operator
layer injects one that asks the apiserver (TokenReview, SubjectAccessReview), so this layer never imports
kubernetes. An authoriser raises `Unauthenticated` (401) or `Forbidden` (403); the client is told no more
than that."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "READ_VERBS",
    "Access",
    "AuthUnavailable",
    "Authorizer",
    "Forbidden",
    "LocalTokens",
    "Principal",
    "Unauthenticated",
    "new_token",
]

READ_VERBS = frozenset({"get", "list", "watch"})

Role = Literal["admin", "viewer"]


@dataclass(frozen=True)
class Access:
    """The right a request needs, in RBAC's terms: `verb` on `resource` (of the durable-agents API group)
    in `namespace`, optionally on the object `name`.

    Reading agents or runs is get/list on `durableagents`/`agentruns`; starting a run or sending a message
    is create on `agentruns`; cancelling is delete on `agentruns`; deciding a call is create on
    `toolapprovals`, the same right as creating a ToolApproval object."""

    verb: str
    resource: str
    namespace: str
    name: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who a request comes from (as authenticated); `name` is recorded as who decided a tool call."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {})


class Unauthenticated(Exception):
    """No bearer token, or one that is not valid (401)."""


class Forbidden(Exception):
    """A valid token that lacks the right the request needs (403)."""


class AuthUnavailable(Exception):
    """The authoriser could not decide now (e.g. the apiserver did not answer): 503, try again."""


class Authorizer(Protocol):
    """Decides each request in two steps: who the bearer token belongs to, then whether they may."""

    async def authenticate(self, token: str | None) -> Principal:
        """The token's principal; `Unauthenticated` when there is none or it is not valid."""
        ...

    async def authorize(self, principal: Principal, access: Access) -> None:
        """Return when `principal` may perform `access`; `Forbidden` when not."""
        ...


def new_token() -> str:
    """A fresh bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class LocalTokens:
    """Bearer tokens of a local gateway: each maps to a role, `admin` (everything) or `viewer` (reads)."""

    def __init__(self, tokens: Mapping[str, Role], *, principal: str) -> None:
        self._tokens = dict(tokens)
        self._principal = principal

    async def authenticate(self, token: str | None) -> Principal:
        role = self._role(token)
        if role is None:
            raise Unauthenticated
        name = self._principal if role == "admin" else f"{self._principal} (viewer)"
        return Principal(name, groups=(f"local:{role}",))

    async def authorize(self, principal: Principal, access: Access) -> None:
        if "local:admin" not in principal.groups and access.verb not in READ_VERBS:
            raise Forbidden

    def _role(self, token: str | None) -> Role | None:
        if not token:
            return None
        found: Role | None = None
        # Compare against every token in constant time, so timing tells nothing about any of them.
        for known, role in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = role
        return found
