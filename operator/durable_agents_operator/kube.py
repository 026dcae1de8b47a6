"""A thin async layer over the Kubernetes API: get, list, server-side apply, delete, status, events.

No decisions are made here; the planner decides, this module performs (`observe`, `execute`).
Credentials come from the `kubernetes` package's loaders (in-cluster service account or KUBECONFIG),
including their token refresh, and requests go out through one `httpx.AsyncClient` created in the
entrypoint.

Only the kinds the operator touches are known (`RESOURCES`), so no discovery requests are made.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from durable_agents_api.resources import API_GROUP, VERSION
from durable_agents_operator.errors import (
    KubeApiError,
    KubeForbidden,
    KubeInvalid,
    KubeUnavailable,
    NamespaceTerminating,
)
from durable_agents_operator.object_identity import ObjectKey, key_of
from durable_agents_operator.planner import Apply, Plan

__all__ = [
    "RESOURCES",
    "Kube",
    "KubeClient",
    "Live",
    "Resource",
    "execute",
    "execute_new",
    "load_kube_configuration",
    "observe",
    "resource_for",
]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection, or of one object (and its subresource)."""
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        parts = [base]
        if namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


_CRD_VERSION = f"{API_GROUP}/{VERSION}"
RESOURCES: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "ConfigMap", "configmaps"),
        Resource("v1", "Service", "services"),
        Resource("v1", "Secret", "secrets"),
        Resource("v1", "Event", "events"),
        Resource("apps/v1", "Deployment", "deployments"),
        Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Resource(_CRD_VERSION, "DurableAgent", "durableagents"),
        Resource(_CRD_VERSION, "AgentRun", "agentruns"),
        Resource(_CRD_VERSION, "TemporalConnection", "temporalconnections"),
        Resource(_CRD_VERSION, "ToolApproval", "toolapprovals"),
    )
}


def resource_for(api_version: str, kind: str) -> Resource:
    """The resource of a kind the operator manages."""
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"kube.py does not know {kind} ({api_version}): add it to RESOURCES") from None


class Kube(Protocol):
    """What handlers need from the Kubernetes API (a recording fake implements it in tests)."""

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        ...

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace (None: in every namespace)."""
        ...

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager (force); returns the live object."""
        ...

    async def apply_new(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply taking no field from anyone; None when the object is in the way (it exists
        with fields or a controller of someone else)."""
        ...

    async def delete(self, key: ObjectKey, *, uid: str | None = None) -> None:
        """Delete (in the background); a missing object is not an error. `uid` guards against a newcomer."""
        ...

    async def patch_status(self, key: ObjectKey, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the `/status` subresource; None if the object is gone."""
        ...

    async def scale(self, key: ObjectKey, replicas: int) -> dict[str, Any] | None:
        """Set `spec.replicas` of a Deployment and nothing else; None if it is gone."""
        ...

    async def create_event(self, event: dict[str, Any]) -> None:
        """Record a core/v1 Event."""
        ...

    async def annotate(self, key: ObjectKey, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch `metadata.annotations` (None removes one); a missing object is not an error."""
        ...


Live = dict[ObjectKey, dict[str, Any] | None]
"""Objects by key as the API server holds them; None where an object does not exist."""


async def observe(kube: Kube, keys: Iterable[ObjectKey]) -> Live:
    """Read the objects at `keys`, concurrently."""
    keys = tuple(keys)
    return dict(zip(keys, await asyncio.gather(*(kube.get(k) for k in keys)), strict=True))


async def execute(kube: Kube, plan: Plan) -> Live:
    """Perform `plan`'s actions in order; the objects as they are afterwards."""
    live = dict(plan.observed)
    for action in plan.actions:
        if isinstance(action, Apply):
            live[action.key] = await kube.apply(action.manifest)
        else:
            await kube.delete(action.key, uid=action.uid)
            live[action.key] = None
    return live


async def execute_new(kube: Kube, plan: Plan) -> Live | None:
    """Perform a plan made against nothing observed (an owner seen for the first time): its applies, in
    order, without reading first. None when an object is in the way, with what this call made removed
    again; then the caller observes and plans as usual (which names the conflict)."""
    live = dict(plan.observed)
    made: list[tuple[ObjectKey, str | None]] = []
    for action in plan.actions:
        assert isinstance(action, Apply), "a plan against nothing observed only applies"
        obj = await kube.apply_new(action.manifest)
        if obj is None:
            for key, uid in reversed(made):
                await kube.delete(key, uid=uid)
            return None
        made.append((action.key, obj.get("metadata", {}).get("uid")))
        live[action.key] = obj
    return live


AuthHeaders = Callable[[], dict[str, str]]

MAX_IN_FLIGHT = 32
"""Kubernetes API requests the operator keeps in flight at once (and connections it keeps open)."""


def load_kube_configuration() -> Any:
    """In-cluster service-account credentials, else the current KUBECONFIG context; a `ConfigError`
    saying what to set when there are neither."""
    import kubernetes

    from durable_agents_api.errors import ConfigError

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(client_configuration=configuration)
        except Exception as exc:  # the kubernetes package raises its own ConfigException or OSError
            raise ConfigError(
                f"cannot reach Kubernetes: {exc}. Run in a pod with a service account, or set KUBECONFIG."
            ) from None
    return configuration


class KubeClient:
    """`Kube` over HTTP. One instance per operator process, created in the entrypoint."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        field_manager: str,
        auth: AuthHeaders | None = None,
        watch_http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http
        # Watches hold a connection each for minutes: on a pool of their own, outside MAX_IN_FLIGHT.
        self._watch_http = watch_http or http
        self._field_manager = field_manager
        self._auth = auth or dict
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    def from_configuration(
        cls, configuration: Any, *, field_manager: str, timeout: float = 30.0
    ) -> KubeClient:
        """Build from a loaded `kubernetes.client.Configuration` (host, TLS files, token with refresh)."""
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file and configuration.key_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

        def auth() -> dict[str, str]:
            # Asked per request: the in-cluster loader's hook re-reads the rotated service-account token.
            token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
            if token:
                return {"Authorization": token}
            if configuration.username is not None:
                return {"Authorization": configuration.get_basic_auth_token()}
            return {}

        http = httpx.AsyncClient(
            base_url=configuration.host,
            verify=context,
            timeout=timeout,
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
        )
        watch_http = httpx.AsyncClient(base_url=configuration.host, verify=context, timeout=timeout)
        return cls(http, field_manager=field_manager, auth=auth, watch_http=watch_http)

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        if self._watch_http is not self._http:
            await self._watch_http.aclose()

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        resource = resource_for(key.api_version, key.kind)
        response = await self._request("GET", resource.path(key.namespace, key.name), what=f"get {key}")
        return None if response is None else response.json()

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace, or in every namespace for None (each with apiVersion and kind
        filled in)."""
        items, _ = await self.list_at(api_version, kind, namespace, label_selector=label_selector)
        return items

    async def list_at(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """`list`, and the resourceVersion of the list (where a `watch` of it starts)."""
        resource = resource_for(api_version, kind)
        params = {"labelSelector": label_selector} if label_selector else None
        response = await self._request(
            "GET", resource.path(namespace), params=params, what=f"list {resource.plural} {_where(namespace)}"
        )
        body = {} if response is None else response.json()
        items = [{"apiVersion": api_version, "kind": kind, **item} for item in body.get("items", [])]
        return items, (body.get("metadata") or {}).get("resourceVersion", "")

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[dict[str, Any]]:
        """The changes ({"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object"}) after `resource_version`,
        until the server ends the watch (after about `timeout_seconds`: watch again from the last
        resourceVersion). An expired version raises `KubeApiError` with status 410: list again."""
        resource = resource_for(api_version, kind)
        what = f"watch {resource.plural} {_where(namespace)}"
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        try:
            async with self._watch_http.stream(
                "GET", resource.path(namespace), params=params, headers=self._auth(), timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise _error(response, what)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise KubeApiError(
                            f"could not {what}: {status.get('message') or status}", status=status.get("code")
                        )
                    yield event
        except httpx.TransportError as exc:
            raise KubeUnavailable(
                f"could not {what}: the Kubernetes API did not answer ({type(exc).__name__}: {exc})"
            ) from None

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager, forcing ownership of the fields it sets."""
        return await self._apply(manifest, force=True)

    async def apply_new(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply without force: a field someone else set (409) or a second controller
        reference (422) means the object is in the way, and nothing is changed."""
        try:
            return await self._apply(manifest, force=False)
        except KubeApiError as exc:
            if exc.status in (409, 422) and not isinstance(exc, NamespaceTerminating):
                return None
            raise

    async def _apply(self, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
        key = key_of(manifest)
        resource = resource_for(key.api_version, key.kind)
        response = await self._request(
            "PATCH",
            resource.path(key.namespace, key.name),
            params={"fieldManager": self._field_manager, "force": "true" if force else "false"},
            content=json.dumps(manifest),  # JSON is YAML: the apply content type accepts it
            headers={"Content-Type": "application/apply-patch+yaml"},
            what=f"apply {key}",
            missing_ok=False,
        )
        assert response is not None
        return response.json()

    async def delete(self, key: ObjectKey, *, uid: str | None = None) -> None:
        """Delete in the background; a missing object is fine. With `uid`, only that incarnation."""
        resource = resource_for(key.api_version, key.kind)
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        await self._request(
            "DELETE",
            resource.path(key.namespace, key.name),
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
            what=f"delete {key}",
        )

    async def patch_status(self, key: ObjectKey, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch `/status`: fields left out keep their values, lists are replaced whole."""
        resource = resource_for(key.api_version, key.kind)
        response = await self._request(
            "PATCH",
            resource.path(key.namespace, key.name, "status"),
            content=json.dumps({"status": dict(status)}),
            headers={"Content-Type": "application/merge-patch+json"},
            what=f"update the status of {key}",
        )
        return None if response is None else response.json()

    async def scale(self, key: ObjectKey, replicas: int) -> dict[str, Any] | None:
        """Merge-patch `spec.replicas` only: the rest of an older version's Deployment stays as applied
        (re-applying it would need the spec it was built from)."""
        resource = resource_for(key.api_version, key.kind)
        response = await self._request(
            "PATCH",
            resource.path(key.namespace, key.name),
            params={"fieldManager": self._field_manager},
            content=json.dumps({"spec": {"replicas": replicas}}),
            headers={"Content-Type": "application/merge-patch+json"},
            what=f"scale {key} to {replicas}",
        )
        return None if response is None else response.json()

    async def annotate(self, key: ObjectKey, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch `metadata.annotations` only (no field manager: these are the user's annotations)."""
        resource = resource_for(key.api_version, key.kind)
        await self._request(
            "PATCH",
            resource.path(key.namespace, key.name),
            content=json.dumps({"metadata": {"annotations": dict(annotations)}}),
            headers={"Content-Type": "application/merge-patch+json"},
            what=f"annotate {key}",
        )

    async def create_event(self, event: dict[str, Any]) -> None:
        """Record a core/v1 Event (named by `metadata.generateName`)."""
        namespace = event["metadata"]["namespace"]
        await self._request(
            "POST",
            resource_for("v1", "Event").path(namespace),
            content=json.dumps(event),
            headers={"Content-Type": "application/json"},
            what=f"create an event in {namespace}",
            missing_ok=False,
        )

    async def can_i(self, verb: str, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
        """Ask the API server whether the operator may `verb` `resource` (a SelfSubjectAccessReview)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource.split("/")[0],
                    **({"subresource": resource.split("/")[1]} if "/" in resource else {}),
                    **({"namespace": namespace} if namespace else {}),
                }
            },
        }
        response = await self._request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            content=json.dumps(review),
            headers={"Content-Type": "application/json"},
            what=f"check permission to {verb} {resource}",
            missing_ok=False,
        )
        assert response is not None
        status = response.json().get("status") or {}
        return bool(status.get("allowed")), status.get("reason") or ""

    async def create_review(self, path: str, review: Mapping[str, Any]) -> dict[str, Any]:
        """Create a review (TokenReview, SubjectAccessReview) at `path`; the review with its status."""
        response = await self._request(
            "POST",
            path,
            content=json.dumps(review),
            headers={"Content-Type": "application/json"},
            what=f"create a {review.get('kind', 'review')}",
            missing_ok=False,
        )
        assert response is not None
        return response.json()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        content: str | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = True,
    ) -> httpx.Response | None:
        try:
            # Queue here, not in httpx's pool: its request assignment costs O(connections x queued) per
            # event, and with hundreds of reconciles at once the operator spent 90% of its CPU there and
            # requests hit PoolTimeout (bench/README.md, operator scale).
            async with self._in_flight:
                response = await self._http.request(
                    method, path, params=params, content=content, headers={**self._auth(), **(headers or {})}
                )
        except httpx.TransportError as exc:
            raise KubeUnavailable(
                f"could not {what}: the Kubernetes API did not answer ({type(exc).__name__}: {exc})"
            ) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.is_success:
            return response
        raise _error(response, what)


def _where(namespace: str | None) -> str:
    return f"in {namespace}" if namespace is not None else "in all namespaces"


def _error(response: httpx.Response, what: str) -> KubeApiError:
    status = response.status_code
    try:
        body = response.json()
        detail = body.get("message") or response.text
        causes = (body.get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        detail, causes = response.text, []
    if status == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes):
        return NamespaceTerminating(
            f"could not {what}: its namespace is being deleted ({detail})", status=status
        )
    if status == 403:
        return KubeForbidden(
            f"could not {what}: the operator's service account is not allowed to ({detail}). Grant it in "
            "the operator's RBAC, or, when the operator watches only some namespaces, make sure this "
            "namespace is one of them (DURABLE_AGENTS_WATCH_NAMESPACES / the chart's watchNamespaces)",
            status=status,
        )
    if status == 422:
        return KubeInvalid(
            f"could not {what}: the API server rejected it: {detail}; change the field it names in the "
            "resource's spec",
            status=status,
        )
    if status == 404:
        return KubeApiError(
            f"could not {what}: not found ({detail}); if this is a durable-agents kind, install the CRDs "
            "(`durable-agents crds | kubectl apply -f -`)",
            status=status,
        )
    return KubeApiError(f"could not {what}: HTTP {status}: {detail}", status=status)
