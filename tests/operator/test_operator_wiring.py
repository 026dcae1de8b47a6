"""How the operator is put together: settings from the environment, kopf settings, the handlers kopf
sees (resources, intervals, ids) and the memo that carries the shared state into them."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from operator_support import Clock, FakeKube, agent_key, agent_manifest, make_operator, settings

from durable_agents_operator.event_budget import EventBudget
from durable_agents_operator.handlers import register
from durable_agents_operator.main import _DropTimerSuccess, _PostWithinBudget, kopf_settings, run
from durable_agents_operator.preflight import check_permissions
from durable_agents_operator.settings import OperatorSettings

pytestmark = pytest.mark.anyio


def registered(registry: kopf.OperatorRegistry) -> dict[tuple[str, str], Any]:
    handlers: dict[tuple[str, str], Any] = {}
    for handler in [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]:
        reason = getattr(handler, "reason", None) or ("timer" if hasattr(handler, "interval") else "resume")
        handlers[(handler.selector.any_name, f"{reason}:{handler.id}")] = handler
    return handlers


def test_settings_come_from_durable_agents_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_AGENTS_TEMPORAL_ADDRESS", "temporal.prod:7233")
    monkeypatch.setenv("DURABLE_AGENTS_WATCH_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("DURABLE_AGENTS_TEMPORAL_API_KEY", "secret-key")
    monkeypatch.setenv("DURABLE_AGENTS_HEALTH_INTERVAL", "15")
    loaded = OperatorSettings()  # pyright: ignore[reportCallIssue]
    assert loaded.temporal_address == "temporal.prod:7233"
    assert loaded.watch_namespaces == ("team-a", "team-b")
    assert not loaded.clusterwide
    assert loaded.health_interval == 15
    assert "secret-key" not in repr(loaded)
    assert loaded.worker_image == "ghcr.io/durable-agents/runtime:0.1.0"
    assert (loaded.liveness_port, loaded.bind_host, loaded.field_manager) == (
        8080,
        "0.0.0.0",
        "durable-agents",
    )


def test_bad_settings_exit_naming_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_AGENTS_HEALTH_INTERVAL", "often")
    with pytest.raises(SystemExit, match="DURABLE_AGENTS_HEALTH_INTERVAL"):
        run([])


def test_kopf_keeps_its_bookkeeping_in_annotations_and_does_not_peer() -> None:
    configured = kopf_settings(settings())
    assert isinstance(configured.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(configured.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert configured.persistence.finalizer == "durable-agents.dev/finalizer"
    assert configured.peering.standalone is True
    assert configured.networking.request_timeout == 30


def test_every_handler_is_registered_for_its_resource_with_intervals_from_settings() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, settings(health_interval=7, run_poll_interval=3))
    handlers = registered(registry)
    assert set(handlers) == {
        ("durableagents", "create:reconcile"),
        ("durableagents", "update:reconcile/spec"),
        ("durableagents", "resume:reconcile"),
        ("durableagents", "timer:health"),
        ("durableagents", "resume:rollback/metadata.annotations.durable-agents.dev/rollback"),  # on.field
        ("durableagents", "create:schedules"),
        ("durableagents", "update:schedules/spec"),
        ("durableagents", "resume:schedules"),
        ("durableagents", "timer:schedules"),
        ("durableagents", "delete:schedules"),
        ("agentruns", "create:start"),
        ("agentruns", "resume:start"),
        ("agentruns", "timer:poll"),
        ("agentruns", "delete:cancel"),
        ("temporalconnections", "update:reconcile-agents/spec"),
        ("temporalconnections", "timer:check"),
        ("toolapprovals", "create:decide"),
        ("toolapprovals", "resume:decide"),
    }
    assert handlers[("durableagents", "timer:health")].interval == 7
    assert handlers[("agentruns", "timer:poll")].interval == 3
    assert handlers[("durableagents", "timer:schedules")].interval == 7
    assert handlers[("temporalconnections", "timer:check")].interval == 7


async def test_registered_handlers_reach_the_operator_through_kopfs_memo(
    kube: FakeKube, clock: Clock
) -> None:
    ops = make_operator(kube, clock=clock)
    registry = kopf.OperatorRegistry()
    register(registry, ops.settings)
    handler = registered(registry)[("durableagents", "create:reconcile")]
    body = kube.put(agent_manifest())
    await handler.fn(body=kopf.Body(body), memo=kopf.Memo(operator=ops), logger=logging.getLogger("test"))
    assert kube.kinds("apply") == ["ConfigMap", "Deployment", "Service"]
    assert kube.objects[agent_key()]["status"]["observedGeneration"] == 1


async def test_a_memo_without_the_operator_is_a_clear_error() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, settings())
    handler = registered(registry)[("durableagents", "timer:health")]
    with pytest.raises(RuntimeError, match=r"start the operator through main\.run"):
        await handler.fn(body=kopf.Body(agent_manifest()), memo=kopf.Memo())


def test_per_timer_success_lines_are_dropped_but_failures_kept() -> None:
    drop = _DropTimerSuccess()

    def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)

    assert not drop.filter(record("Timer 'health' succeeded."))
    assert drop.filter(record("Timer 'health' failed with an exception. Will retry.", logging.ERROR))
    assert drop.filter(record("Handler 'reconcile' succeeded."))


def test_kopf_posts_error_lines_as_events_only_within_the_operators_event_budget() -> None:
    from kopf._core.engines.posting import K8sPoster  # the handler that turns log lines into Events

    budget = EventBudget(per_object_burst=2)
    ours = _PostWithinBudget(budget, lambda: 0.0)
    poster = K8sPoster()
    kopf_settings_ = kopf_settings(settings())

    def posted(level: int, uid: str = "agent-1") -> bool:
        record = logging.LogRecord("kopf.objects", level, __file__, 1, "Handler failed", None, None)
        record.k8s_ref = {"uid": uid, "name": "hello", "namespace": "ns"}
        record.settings = kopf_settings_
        assert ours.filter(record)  # the line itself is always logged
        return bool(poster.filter(record))

    assert [posted(logging.ERROR) for _ in range(3)] == [True, True, False]
    assert posted(logging.ERROR, uid="agent-2")  # another object has its own budget
    assert not posted(logging.INFO)  # below kopf's posting level: never posted, nothing spent
    assert budget.dropped == {"Logging": 1}


class Reviews:
    """Answers SelfSubjectAccessReviews: everything allowed except `denied`."""

    def __init__(self, denied: set[tuple[str, str, str | None]]) -> None:
        self.denied = denied
        self.asked: list[tuple[str, str, str, str | None]] = []

    async def can_i(self, verb: str, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
        self.asked.append((verb, group, resource, namespace))
        return (verb, resource, namespace) not in self.denied, ""


async def test_start_up_reports_the_missing_permissions_once_per_namespace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reviews = Reviews({("patch", "deployments", "team-b"), ("get", "secrets", "team-b")})
    with caplog.at_level(logging.ERROR):
        permissions = await check_permissions(reviews, settings(watch_namespaces=("team-a", "team-b")))
    assert permissions.missing == {"team-b": ["patch deployments.apps", "get secrets"]}
    assert {namespace for *_, namespace in reviews.asked} == {"team-a", "team-b"}
    (record,) = caplog.records
    assert (
        "in namespace team-b the operator may not patch deployments.apps, get secrets" in record.getMessage()
    )
    assert "DURABLE_AGENTS_WATCH_NAMESPACES" in record.getMessage()


async def test_namespaces_that_cannot_be_watched_are_left_out_instead_of_stopping_the_operator() -> None:
    # kopf stops altogether when one of its watches is forbidden: in a pod, a crash loop.
    reviews = Reviews({("watch", "agentruns", "team-b"), ("get", "secrets", "team-c")})
    namespaces = ("team-a", "team-b", "team-c")
    permissions = await check_permissions(reviews, settings(watch_namespaces=namespaces))
    assert permissions.watchable(namespaces) == ("team-a", "team-c")


async def test_cluster_wide_permissions_are_checked_once_for_all_namespaces() -> None:
    reviews = Reviews(set())
    permissions = await check_permissions(reviews, settings())
    assert permissions.missing == {}
    assert permissions.watchable((None,)) == (None,)
    assert {namespace for *_, namespace in reviews.asked} == {None}


def test_a_namespaced_operator_does_not_scan_the_cluster_for_crds_and_namespaces() -> None:
    assert kopf_settings(settings(watch_namespaces=("team-a",))).scanning.disabled is True
    assert kopf_settings(settings()).scanning.disabled is False


def test_only_agents_with_schedules_get_the_schedule_handlers_and_their_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, settings())
    handlers = registered(registry)
    for key in ("create:schedules", "timer:schedules", "delete:schedules"):
        when = handlers[("durableagents", key)].when
        assert when(spec={"agent": {"name": "a"}}, status={}) is False
        assert when(spec={"schedules": [{"name": "n"}]}, status=None) is True
        # Removed from the spec but still listed in status: still theirs, until deleted in Temporal.
        assert when(spec={}, status={"schedules": [{"name": "n"}]}) is True
    assert handlers[("durableagents", "create:schedules")].retries == 5
