"""Start-up check of the operator's RBAC, so a missing grant is reported once, clearly, by name.

Without it, a namespace the operator may not read shows up only as repeated request failures.
The operator watches only the namespaces it may watch (kopf stops entirely on a forbidden watch, which
in a pod means a crash loop) and checks again periodically; handlers report other denials as they hit
them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from durable_agents_api.resources import API_GROUP
from durable_agents_operator.errors import OperatorError
from durable_agents_operator.settings import OperatorSettings

__all__ = [
    "REQUIRED",
    "SHARED_CREDENTIALS",
    "WATCH_NEEDED",
    "AccessReviewer",
    "Permissions",
    "check_permissions",
    "required",
]

logger = logging.getLogger(__name__)

_OWN = ("get", "list", "watch", "patch")
_CHILD = ("get", "create", "patch", "delete")
_LISTED_CHILD = (*_CHILD, "list")
"""Versioned agents list their per-version ConfigMaps and Deployments by label."""
_WATCHED_CHILD = (*_LISTED_CHILD, "watch")
"""The worker Deployments are also watched (`deployment_cache`), so health ticks need no GET each."""
REQUIRED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (API_GROUP, "durableagents", _OWN),
    # AgentRuns arrive from kopf's watch; a ToolApproval's handler reads its run by name.
    (API_GROUP, "agentruns", _OWN),
    # ToolApprovals arrive from kopf's watch; kopf patches its progress annotations.
    (API_GROUP, "toolapprovals", ("list", "watch", "patch")),
    (API_GROUP, "temporalconnections", _OWN),
    (API_GROUP, "durableagents/status", ("patch",)),
    (API_GROUP, "agentruns/status", ("patch",)),
    (API_GROUP, "temporalconnections/status", ("patch",)),
    (API_GROUP, "toolapprovals/status", ("patch",)),
    ("", "configmaps", _LISTED_CHILD),
    ("", "services", _CHILD),
    ("apps", "deployments", _WATCHED_CHILD),
    ("policy", "poddisruptionbudgets", _CHILD),
    ("", "secrets", ("get",)),
    ("", "events", ("create",)),
)
"""(API group, resource, verbs) the operator needs in every namespace it watches."""
SHARED_CREDENTIALS = ("", "secrets", ("create", "patch"))
"""Needed too when the default connection has a CA, client certificate or API key: the operator copies it
into a Secret `<agent>-temporal` next to each agent without a `connectionRef`."""


WORKER_NETWORK_POLICIES = ("networking.k8s.io", "networkpolicies", _CHILD)
"""Needed too when the operator gives each agent's workers a NetworkPolicy (`worker_network_policy`)."""


def required(settings: OperatorSettings) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """What the operator needs with these settings."""
    extra = (SHARED_CREDENTIALS,) if settings.temporal_shares_credentials else ()
    if settings.worker_network_policy:
        extra = (*extra, WORKER_NETWORK_POLICIES)
    return (*REQUIRED, *extra)


WATCH_NEEDED = frozenset(
    f"{verb} {kind}.{API_GROUP}"
    for kind in ("durableagents", "agentruns", "temporalconnections", "toolapprovals")
    for verb in ("list", "watch")
)
"""Without these kopf cannot watch a namespace (and stops altogether when it tries)."""


class AccessReviewer(Protocol):
    """Answers "may the operator do this?" (`KubeClient.can_i`)."""

    async def can_i(self, verb: str, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
        """Whether the verb is allowed, and the API server's reason."""
        ...


@dataclass(frozen=True)
class Permissions:
    """What the operator may not do, by scope (a namespace, or None for the whole cluster)."""

    missing: dict[str | None, list[str]]

    def watchable(self, scopes: tuple[str | None, ...]) -> tuple[str | None, ...]:
        """The scopes where kopf can list and watch all four kinds; kopf stops on a forbidden watch."""
        return tuple(s for s in scopes if not WATCH_NEEDED & set(self.missing.get(s, ())))


async def check_permissions(kube: AccessReviewer, settings: OperatorSettings) -> Permissions:
    """Ask the API server about every permission the operator needs; log one line per scope lacking some."""
    scopes: tuple[str | None, ...] = settings.watch_namespaces or (None,)
    checks = [
        (verb, group, resource, namespace)
        for namespace in scopes
        for group, resource, verbs in required(settings)
        for verb in verbs
    ]
    try:
        answers = await asyncio.gather(*(kube.can_i(*check) for check in checks))
    except OperatorError as exc:
        logger.warning("could not check the operator's permissions (assuming it has them): %s", exc)
        return Permissions({})
    missing: dict[str | None, list[str]] = {}
    for (verb, group, resource, namespace), (allowed, _) in zip(checks, answers, strict=True):
        if not allowed:
            missing.setdefault(namespace, []).append(
                f"{verb} {resource}.{group}" if group else f"{verb} {resource}"
            )
    for namespace, denied in missing.items():
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        logger.error(
            "RBAC: %s the operator may not %s. Grant it (the Helm chart's RBAC does)%s.",
            where,
            ", ".join(denied),
            " or remove the namespace from DURABLE_AGENTS_WATCH_NAMESPACES" if namespace else "",
        )
    return Permissions(missing)
