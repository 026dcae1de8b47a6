"""Start-up check of the operator's RBAC, so a missing grant is reported once, clearly, by name.

Without it, a namespace the operator may not read shows up only as repeated request failures.
Nothing here stops the operator: it runs with what it has, and handlers report denials too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from durable_agents_operator.api import API_GROUP
from durable_agents_operator.errors import OperatorError
from durable_agents_operator.settings import OperatorSettings

__all__ = ["REQUIRED", "AccessReviewer", "check_permissions"]

logger = logging.getLogger(__name__)

_OWN = ("get", "list", "watch", "patch")
_CHILD = ("get", "create", "patch", "delete")
REQUIRED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (API_GROUP, "durableagents", _OWN),
    (API_GROUP, "agentruns", _OWN),
    (API_GROUP, "temporalconnections", _OWN),
    (API_GROUP, "durableagents/status", ("patch",)),
    (API_GROUP, "agentruns/status", ("patch",)),
    (API_GROUP, "temporalconnections/status", ("patch",)),
    ("", "configmaps", _CHILD),
    ("", "services", _CHILD),
    ("apps", "deployments", _CHILD),
    ("policy", "poddisruptionbudgets", _CHILD),
    ("", "secrets", ("get",)),
    ("", "events", ("create",)),
)
"""(API group, resource, verbs) the operator needs in every namespace it watches."""


class AccessReviewer(Protocol):
    """Answers "may the operator do this?" (`KubeClient.can_i`)."""

    async def can_i(self, verb: str, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
        """Whether the verb is allowed, and the API server's reason."""
        ...


async def check_permissions(kube: AccessReviewer, settings: OperatorSettings) -> list[str]:
    """Log one error per missing permission (per watched namespace); return the messages."""
    scopes: tuple[str | None, ...] = settings.watch_namespaces or (None,)
    checks = [
        (verb, group, resource, namespace)
        for namespace in scopes
        for group, resource, verbs in REQUIRED
        for verb in verbs
    ]
    try:
        answers = await asyncio.gather(*(kube.can_i(*check) for check in checks))
    except OperatorError as exc:
        logger.warning("could not check the operator's permissions: %s", exc)
        return []
    missing = []
    for (verb, group, resource, namespace), (allowed, _) in zip(checks, answers, strict=True):
        if allowed:
            continue
        where = f"namespace {namespace}" if namespace else "all namespaces"
        qualified = f"{resource}.{group}" if group else resource
        missing.append(f"may not {verb} {qualified} in {where}")
    for message in missing:
        logger.error(
            "RBAC: the operator %s; grant it (the Helm chart's RBAC does) or remove the namespace from "
            "DURABLE_AGENTS_WATCH_NAMESPACES. Objects there are not reconciled until then.",
            message,
        )
    return missing
