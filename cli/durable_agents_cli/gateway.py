"""`durable-agents gateway`: the HTTP API and web console for the agents of some manifests, on their own;
and the same gateway `durable-agents dev` starts next to its workers (`--gateway-port`, `--no-gateway`).

Locally the gateway takes one bearer token: `$DURABLE_AGENTS_GATEWAY_TOKEN`, or a new one printed at
start (with the console's URL, which carries it in the fragment, never sent to a server).

`durable-agents gateway --in-cluster` (the chart's gateway Deployment) serves the DurableAgents the
apiserver lists instead of manifests, on the operator's default Temporal connection (its
`DURABLE_AGENTS_*` settings), and lets Kubernetes decide who may do what (TokenReview and
SubjectAccessReview: `durable_agents_operator.gateway_auth`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from durable_agents_cli.targeting import connection_flags

if TYPE_CHECKING:
    from durable_agents_cli.render import Renderer
    from durable_agents_runtime.client import AgentsClient
    from durable_agents_runtime.gateway import GatewayServer

__all__ = ["ENV_TOKEN", "add_parser", "gateway_flags", "start_gateway"]

ENV_TOKEN = "DURABLE_AGENTS_GATEWAY_TOKEN"
"""A bearer token to use instead of a generated one (so it survives a restart)."""


def _local_token() -> str:
    from durable_agents_runtime.gateway.auth import new_token

    return os.environ.get(ENV_TOKEN) or new_token()


async def start_gateway(
    connect: Callable[[], Awaitable[AgentsClient]],
    manifests: list[Any],
    *,
    host: str,
    port: int,
    out: Renderer,
) -> tuple[GatewayServer, asyncio.Task[None]]:
    """Serve the gateway for `manifests` in this event loop; say where and with which token."""
    from durable_agents_cli.decisions import decider
    from durable_agents_runtime.gateway import AgentEntry, Gateway, GatewayServer, LocalTokens, StaticCatalog
    from durable_agents_runtime.gateway.app import build_app

    token = _local_token()
    gateway = Gateway(
        connect,
        StaticCatalog(AgentEntry.of_manifest(m) for m in manifests),
        LocalTokens({token: "admin"}, principal=decider()),
    )
    server = GatewayServer(build_app(gateway), host=host, port=port)
    task = asyncio.ensure_future(server.serve())
    await server.wait_started(task)
    out.line(f"Gateway: {server.url} (OpenAPI: {server.url}/openapi.json)", style="bold")
    out.line(f"Console: {server.url}/console/#token={token}")
    out.line(f"Token: {token} (send `Authorization: Bearer TOKEN`; ${ENV_TOKEN} sets it)", style="dim")
    return server, task


async def stop_gateway(server: GatewayServer, task: asyncio.Task[None]) -> None:
    """Stop serving; open event streams get the server's grace period, then the task is cancelled."""
    from durable_agents_runtime.gateway.server import SHUTDOWN_GRACE_SECONDS

    server.stop()
    # Past the bound, wait_for cancels the task: the process never waits on a stream in silence.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, SHUTDOWN_GRACE_SECONDS + 3)


async def gateway_verb(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_api.errors import ConfigError
    from durable_agents_api.manifest import load_manifests
    from durable_agents_runtime.client import AgentsClient

    if args.in_cluster:
        if args.manifests or args.address or args.namespace:
            raise ConfigError(
                "--in-cluster serves the cluster's DurableAgents on the operator's Temporal settings "
                "(DURABLE_AGENTS_TEMPORAL_*): leave out MANIFEST, --address and --namespace"
            )
        return await _serve_in_cluster(args, out)
    if not args.manifests:
        raise ConfigError("name the MANIFEST files of the agents to serve (or --in-cluster in a cluster)")
    manifests = load_manifests(args.manifests)

    async def connect() -> AgentsClient:
        return await AgentsClient.connect(address=args.address, namespace=args.namespace)

    server, task = await start_gateway(connect, manifests, host=args.host, port=args.port, out=out)
    await _serve_until_stopped(server, task, out)
    return 0


async def _serve_in_cluster(args: argparse.Namespace, out: Renderer) -> int:
    from durable_agents_operator.connection_params import DEFAULT_CONNECTION_SETTINGS
    from durable_agents_operator.gateway_auth import KubeAuthorizer
    from durable_agents_operator.gateway_catalog import KubeCatalog, default_temporal_spec
    from durable_agents_operator.kube import KubeClient, load_kube_configuration
    from durable_agents_operator.settings import settings_from_environment
    from durable_agents_runtime.client import AgentsClient
    from durable_agents_runtime.gateway import Gateway, GatewayServer
    from durable_agents_runtime.gateway.app import build_app

    settings = settings_from_environment()
    spec = default_temporal_spec(settings)
    configuration = load_kube_configuration()  # a ConfigError names what to set
    kube = KubeClient.from_configuration(configuration, field_manager="durable-agents-gateway")

    async def connect() -> AgentsClient:
        return await AgentsClient.connect(spec, settings=DEFAULT_CONNECTION_SETTINGS)

    try:
        catalog = KubeCatalog(kube, settings.watch_namespaces)
        app = build_app(Gateway(connect, catalog, KubeAuthorizer(kube)))
        server = GatewayServer(app, host=args.host, port=args.port)
        task = asyncio.ensure_future(server.serve())
        await server.wait_started(task)
        where = ", ".join(settings.watch_namespaces) or "all namespaces"
        out.line(
            f"Gateway: {server.url} (OpenAPI: {server.url}/openapi.json; console: {server.url}/console/)"
        )
        out.line(f"Agents: the DurableAgents in {where}; Temporal: {spec.address} namespace {spec.namespace}")
        await _serve_until_stopped(server, task, out)
    finally:
        await kube.aclose()
    return 0


async def _serve_until_stopped(server: GatewayServer, task: asyncio.Task[None], out: Renderer) -> None:
    stopping = _stop_event()
    out.line("Press Ctrl-C to stop.", style="dim")
    await asyncio.wait([task, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    await stop_gateway(server, task)


def _stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    import signal

    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, event.set)
    return event


def gateway_flags(parser: argparse.ArgumentParser, *, dev: bool) -> None:
    """`--gateway-host`/`--gateway-port` (and for dev `--no-gateway`), or `--host`/`--port` for the verb."""
    from durable_agents_runtime.gateway.server import DEFAULT_GATEWAY_PORT

    prefix = "--gateway-" if dev else "--"
    parser.add_argument(
        f"{prefix}host", default="127.0.0.1", help="address the gateway listens on (127.0.0.1)"
    )
    parser.add_argument(
        f"{prefix}port",
        type=int,
        default=DEFAULT_GATEWAY_PORT,
        help=f"port of the HTTP API and console (default {DEFAULT_GATEWAY_PORT}; 0 picks a free one)",
    )
    if dev:
        parser.add_argument("--no-gateway", action="store_true", help="start no HTTP API and console")


def add_parser(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "gateway",
        help="serve the HTTP API (REST, SSE, OpenAI-compatible) and web console for some agents",
        description="Serve the HTTP API and the web console for the agents of MANIFEST files, on a Temporal "
        f"that runs their workers. The bearer token is ${ENV_TOKEN}, or a new one printed at start.",
    )
    parser.add_argument("manifests", nargs="*", metavar="MANIFEST")
    parser.add_argument(
        "--in-cluster",
        action="store_true",
        help="serve the cluster's DurableAgents (those of DURABLE_AGENTS_WATCH_NAMESPACES when set) "
        "on the operator's Temporal settings; tokens are checked by the apiserver (TokenReview) and every "
        "request by RBAC (SubjectAccessReview). Agents with a connectionRef are not served.",
    )
    gateway_flags(parser, dev=False)
    connection_flags(parser, agent=False)
    parser.set_defaults(handler=gateway_verb)
