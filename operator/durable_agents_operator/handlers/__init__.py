"""kopf handlers. `register` wires them into a registry; the logic lives in one module per kind.

Handlers receive the shared `Operator` through kopf's memo (`memo.operator`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from durable_agents_api.resources import API_GROUP, VERSION
from durable_agents_operator.naming import ANNOTATION_ROLLBACK
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.settings import OperatorSettings

from . import agentrun, durableagent, schedules, temporalconnection, toolapproval

__all__ = ["operator_of", "plain", "register"]

AGENTS = (API_GROUP, VERSION, "durableagents")
RUNS = (API_GROUP, VERSION, "agentruns")
ROLLBACK_FIELD = ("metadata", "annotations", ANNOTATION_ROLLBACK)
CONNECTIONS = (API_GROUP, VERSION, "temporalconnections")
APPROVALS = (API_GROUP, VERSION, "toolapprovals")


def operator_of(memo: Any) -> Operator:
    """The shared `Operator` from kopf's memo."""
    operator = getattr(memo, "operator", None)
    if not isinstance(operator, Operator):
        raise RuntimeError("kopf's memo carries no Operator: start the operator through main.run")
    return operator


def plain(value: Any) -> Any:
    """A deep plain-dict copy of a kopf body (whose nested values are read-only mapping views)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _running(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") in agentrun.ACTIVE


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Register every handler in `registry`, with intervals from `settings`."""

    @kopf.on.resume(*AGENTS, id="reconcile", registry=registry)
    @kopf.on.create(*AGENTS, id="reconcile", registry=registry)
    @kopf.on.update(*AGENTS, field="spec", id="reconcile", registry=registry)
    async def durableagent_reconcile(body: kopf.Body, memo: Any, **_: Any) -> None:
        await durableagent.reconcile(operator_of(memo), plain(body))

    # A rollback annotation is acted on at once, not at the next health tick (the operator removes it).
    @kopf.on.field(*AGENTS, field=ROLLBACK_FIELD, new=kopf.PRESENT, id="rollback", registry=registry)
    async def durableagent_rollback(body: kopf.Body, memo: Any, **_: Any) -> None:
        await durableagent.reconcile(operator_of(memo), plain(body))

    @kopf.timer(*AGENTS, interval=settings.health_interval, id="health", registry=registry)
    async def durableagent_health(body: kopf.Body, memo: Any, **_: Any) -> None:
        await durableagent.check_health(operator_of(memo), plain(body))

    _register_schedules(registry, settings)

    @kopf.on.resume(*RUNS, id="start", registry=registry)
    @kopf.on.create(*RUNS, id="start", registry=registry)
    async def agentrun_start(body: kopf.Body, memo: Any, **_: Any) -> None:
        await agentrun.start(operator_of(memo), plain(body))

    @kopf.timer(*RUNS, interval=settings.run_poll_interval, when=_running, id="poll", registry=registry)
    async def agentrun_poll(body: kopf.Body, memo: Any, **_: Any) -> None:
        await agentrun.poll(operator_of(memo), plain(body))

    @kopf.on.delete(*RUNS, id="cancel", registry=registry)
    async def agentrun_cancel(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
        await agentrun.cancel(operator_of(memo), plain(body), retry=retry)

    @kopf.on.resume(*APPROVALS, id="decide", registry=registry)
    @kopf.on.create(*APPROVALS, id="decide", registry=registry)
    async def toolapproval_decide(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
        await toolapproval.decide(operator_of(memo), plain(body), retry=retry)

    @kopf.timer(*CONNECTIONS, interval=settings.health_interval, id="check", registry=registry)
    async def temporalconnection_check(body: kopf.Body, memo: Any, **_: Any) -> None:
        await temporalconnection.check(operator_of(memo), plain(body))

    @kopf.on.update(*CONNECTIONS, field="spec", id="reconcile-agents", registry=registry)
    async def temporalconnection_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
        await temporalconnection.spec_changed(operator_of(memo), plain(body))


def _has_schedules(spec: Any, status: Any, **_: Any) -> bool:
    return schedules.wanted(spec, status)


def _register_schedules(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """The DurableAgent's schedule handlers (`handlers/schedules.py`), only for agents with schedules."""
    retries = schedules.RECONCILE_RETRIES

    @kopf.on.resume(*AGENTS, id="schedules", when=_has_schedules, retries=retries, registry=registry)
    @kopf.on.create(*AGENTS, id="schedules", when=_has_schedules, retries=retries, registry=registry)
    @kopf.on.update(
        *AGENTS, field="spec", id="schedules", when=_has_schedules, retries=retries, registry=registry
    )
    async def durableagent_schedules(body: kopf.Body, memo: Any, **_: Any) -> None:
        await schedules.reconcile(operator_of(memo), plain(body))

    @kopf.timer(
        *AGENTS, interval=settings.health_interval, id="schedules", when=_has_schedules, registry=registry
    )
    async def durableagent_schedules_refresh(body: kopf.Body, memo: Any, **_: Any) -> None:
        await schedules.refresh(operator_of(memo), plain(body))

    @kopf.on.delete(*AGENTS, id="schedules", when=_has_schedules, registry=registry)
    async def durableagent_schedules_delete(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
        await schedules.delete(operator_of(memo), plain(body), retry=retry)
