"""The HTTP the Kubernetes layer sends (server-side apply, status subresource, events) and how it maps
the API server's answers to the operator's errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from durable_agents_operator.errors import KubeApiError, KubeForbidden, KubeUnavailable, NamespaceTerminating
from durable_agents_operator.kube import MAX_IN_FLIGHT, KubeClient, KubeInvalid
from durable_agents_operator.object_identity import ObjectKey

pytestmark = pytest.mark.anyio

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "hello-worker", "namespace": "team-a"},
    "spec": {"replicas": 2},
}


def client(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]) -> KubeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    http = httpx.AsyncClient(base_url="https://kube.test:6443", transport=httpx.MockTransport(handler))
    return KubeClient(http, field_manager="durable-agents", auth=lambda: {"Authorization": "Bearer t0ken"})


def ok(body: dict[str, Any] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=body or {})


def status(code: int, message: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json={"kind": "Status", "message": message, "code": code})


async def test_apply_is_a_forced_server_side_apply_with_one_field_manager() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok({"metadata": {"uid": "u"}}), seen)
    live = await kube.apply(DEPLOYMENT)
    (request,) = seen
    assert request.method == "PATCH"
    assert request.url.path == "/apis/apps/v1/namespaces/team-a/deployments/hello-worker"
    assert dict(request.url.params) == {"fieldManager": "durable-agents", "force": "true"}
    assert request.headers["content-type"] == "application/apply-patch+yaml"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert json.loads(request.content) == DEPLOYMENT
    assert live == {"metadata": {"uid": "u"}}


async def test_core_and_custom_resources_have_their_own_paths() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok(), seen)
    await kube.get(ObjectKey("v1", "ConfigMap", "ns", "a-runtime"))
    await kube.get(ObjectKey("durable-agents.dev/v1alpha1", "DurableAgent", "ns", "a"))
    assert [r.url.path for r in seen] == [
        "/api/v1/namespaces/ns/configmaps/a-runtime",
        "/apis/durable-agents.dev/v1alpha1/namespaces/ns/durableagents/a",
    ]


async def test_status_is_merge_patched_on_the_status_subresource() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok({"status": {}}), seen)
    await kube.patch_status(
        ObjectKey("durable-agents.dev/v1alpha1", "AgentRun", "ns", "r"), {"phase": "Running"}
    )
    (request,) = seen
    assert request.url.path == "/apis/durable-agents.dev/v1alpha1/namespaces/ns/agentruns/r/status"
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(request.content) == {"status": {"phase": "Running"}}


async def test_scale_merge_patches_only_the_replicas_of_an_older_versions_deployment() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok({"spec": {"replicas": 0}}), seen)
    live = await kube.scale(ObjectKey("apps/v1", "Deployment", "ns", "a-worker-b1"), 0)
    (request,) = seen
    assert request.method == "PATCH"
    assert request.url.path == "/apis/apps/v1/namespaces/ns/deployments/a-worker-b1"
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(request.content) == {"spec": {"replicas": 0}}
    assert live == {"spec": {"replicas": 0}}
    assert (
        await client(status(404, "gone"), []).scale(ObjectKey("apps/v1", "Deployment", "ns", "x"), 1) is None
    )


async def test_delete_runs_in_the_background_and_only_for_the_observed_uid() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok(), seen)
    await kube.delete(ObjectKey("policy/v1", "PodDisruptionBudget", "ns", "a-worker"), uid="u-1")
    body = json.loads(seen[0].content)
    assert body["propagationPolicy"] == "Background"
    assert body["preconditions"] == {"uid": "u-1"}


async def test_a_missing_object_reads_as_none_and_deletes_as_done() -> None:
    kube = client(status(404, "not found"), [])
    assert await kube.get(ObjectKey("v1", "Service", "ns", "x")) is None
    await kube.delete(ObjectKey("v1", "Service", "ns", "x"))
    assert await kube.patch_status(ObjectKey("v1", "Service", "ns", "x"), {}) is None


async def test_list_fills_in_kind_and_api_version_of_each_item() -> None:
    kube = client(ok({"items": [{"metadata": {"name": "a"}}]}), [])
    (item,) = await kube.list("durable-agents.dev/v1alpha1", "DurableAgent", "ns")
    assert item["kind"] == "DurableAgent" and item["apiVersion"] == "durable-agents.dev/v1alpha1"


async def test_listing_without_a_namespace_lists_across_all_namespaces() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok({"items": [{"metadata": {"name": "a", "namespace": "x"}}]}), seen)
    (item,) = await kube.list("durable-agents.dev/v1alpha1", "DurableAgent", None)
    assert item["metadata"]["namespace"] == "x"
    assert [r.url.path for r in seen] == ["/apis/durable-agents.dev/v1alpha1/durableagents"]
    await kube.list("durable-agents.dev/v1alpha1", "DurableAgent", "ns")
    assert seen[-1].url.path == "/apis/durable-agents.dev/v1alpha1/namespaces/ns/durableagents"


async def test_a_list_gives_its_resource_version_and_a_watch_streams_events_after_it() -> None:
    seen: list[httpx.Request] = []
    lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "13"}}},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") == "1":
            return httpx.Response(200, content="".join(json.dumps(e) + "\n" for e in lines).encode())
        return httpx.Response(200, json={"metadata": {"resourceVersion": "10"}, "items": []})

    kube = client(answer, seen)
    items, version = await kube.list_at("apps/v1", "Deployment", "ns", label_selector="a=b")
    stream = kube.watch("apps/v1", "Deployment", "ns", resource_version=version, label_selector="a=b")
    events = [e["type"] async for e in stream]
    assert (items, version) == ([], "10")
    assert events == ["ADDED", "BOOKMARK", "DELETED"]
    params = seen[-1].url.params
    assert seen[-1].url.path == "/apis/apps/v1/namespaces/ns/deployments"
    assert (params["watch"], params["resourceVersion"], params["labelSelector"]) == ("1", "10", "a=b")
    assert params["allowWatchBookmarks"] == "true" and int(params["timeoutSeconds"]) > 0
    assert seen[-1].headers["Authorization"] == "Bearer t0ken"


async def test_an_expired_watch_raises_gone_and_a_refused_one_names_the_grant() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    kube = client(lambda request: httpx.Response(200, content=(json.dumps(gone) + "\n").encode()), [])
    with pytest.raises(KubeApiError) as expired:
        async for _ in kube.watch("apps/v1", "Deployment", None, resource_version="1"):
            pass
    assert expired.value.status == 410 and "too old resource version" in str(expired.value)
    kube = client(status(403, "deployments is forbidden"), [])
    with pytest.raises(KubeForbidden, match="watch deployments in all namespaces"):
        async for _ in kube.watch("apps/v1", "Deployment", None, resource_version="1"):
            pass


async def test_forbidden_names_the_call_and_how_to_grant_it() -> None:
    kube = client(
        status(403, 'deployments.apps "hello-worker" is forbidden: User "system:sa" cannot patch'), []
    )
    with pytest.raises(KubeForbidden) as raised:
        await kube.apply(DEPLOYMENT)
    message = str(raised.value)
    assert "could not apply Deployment team-a/hello-worker" in message
    assert "cannot patch" in message
    assert "DURABLE_AGENTS_WATCH_NAMESPACES" in message
    assert raised.value.retry_after == 120


async def test_a_namespace_being_deleted_is_not_an_rbac_problem_and_not_retried() -> None:
    refusal = {
        "kind": "Status",
        "code": 403,
        "reason": "Forbidden",
        "message": "unable to create new content in namespace team-a because it is being terminated",
        "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
    }
    kube = client(lambda request: httpx.Response(403, json=refusal), [])
    with pytest.raises(NamespaceTerminating) as raised:
        await kube.apply(DEPLOYMENT)
    assert "its namespace is being deleted" in str(raised.value)
    assert "RBAC" not in str(raised.value)
    assert raised.value.retry_after is None


async def test_an_invalid_object_is_not_retried_and_carries_the_servers_reason() -> None:
    kube = client(
        status(422, 'Deployment.apps "x" is invalid: spec.template.spec.containers[0].resources'), []
    )
    with pytest.raises(KubeInvalid, match=r"containers\[0\]\.resources") as raised:
        await kube.apply(DEPLOYMENT)
    assert raised.value.retry_after is None


async def test_server_errors_and_network_failures_are_retryable() -> None:
    with pytest.raises(KubeApiError) as raised:
        await client(status(500, "etcdserver: request timed out"), []).apply(DEPLOYMENT)
    assert raised.value.retry_after is not None

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(KubeUnavailable, match="did not answer"):
        await client(refuse, []).get(ObjectKey("v1", "ConfigMap", "ns", "x"))


async def test_events_are_posted_to_the_namespace_of_the_object() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok(), seen)
    await kube.create_event({"metadata": {"generateName": "a.", "namespace": "ns"}, "reason": "Started"})
    assert (seen[0].method, seen[0].url.path) == ("POST", "/api/v1/namespaces/ns/events")


async def test_permission_checks_ask_the_api_server_about_the_subresource() -> None:
    seen: list[httpx.Request] = []
    kube = client(ok({"status": {"allowed": False, "reason": "no RBAC rule"}}), seen)
    allowed, reason = await kube.can_i("patch", "durable-agents.dev", "durableagents/status", "team-a")
    attributes = json.loads(seen[0].content)["spec"]["resourceAttributes"]
    assert attributes == {
        "verb": "patch",
        "group": "durable-agents.dev",
        "resource": "durableagents",
        "subresource": "status",
        "namespace": "team-a",
    }
    assert (allowed, reason) == (False, "no RBAC rule")


async def test_requests_beyond_the_in_flight_limit_wait_in_the_operator_not_in_the_pool() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(base_url="https://kube.test:6443", transport=httpx.MockTransport(handler))
    kube = KubeClient(http, field_manager="durable-agents")
    keys = [ObjectKey("apps/v1", "Deployment", "team-a", f"d{i}") for i in range(3 * MAX_IN_FLIGHT)]

    answers = await asyncio.gather(*(kube.get(key) for key in keys))

    assert answers == [{}] * len(keys)
    assert peak == MAX_IN_FLIGHT
