"""`durable-agents operator`: read the settings once, build the clients, run kopf with our handlers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import kopf
from aiohttp import web

from durable_agents_api.errors import ConfigError
from durable_agents_operator.deployment_cache import DeploymentCache
from durable_agents_operator.event_budget import EventBudget
from durable_agents_operator.handlers import register
from durable_agents_operator.health_batching import HealthBatcher, runtime_reader
from durable_agents_operator.http_endpoint import serving
from durable_agents_operator.kube import KubeClient, load_kube_configuration
from durable_agents_operator.metrics import metrics_server
from durable_agents_operator.operator_state import Operator
from durable_agents_operator.preflight import check_permissions
from durable_agents_operator.settings import OperatorSettings, settings_from_environment
from durable_agents_operator.temporal_clients import TemporalPool, default_params

__all__ = ["kopf_settings", "quiet_logs", "run", "serve"]

logger = logging.getLogger("durable_agents_operator")

ANNOTATION_PREFIX = "durable-agents.dev"
FINALIZER = "durable-agents.dev/finalizer"
PERMISSION_RECHECK = 300.0
"""Seconds between checks of the operator's RBAC (a namespace granted later is picked up then)."""


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point of `durable-agents operator [--verbose]`. Settings come from `DURABLE_AGENTS_*` env."""
    parser = argparse.ArgumentParser(
        prog="durable-agents operator",
        description="Run the Kubernetes operator for DurableAgent, AgentRun and TemporalConnection. "
        "Configured by DURABLE_AGENTS_* environment variables (see the Helm chart's values).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_environment()
    except ConfigError as exc:
        sys.exit(str(exc))
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        quiet_logs()
    try:
        configuration = load_kube_configuration()
    except ConfigError as exc:
        sys.exit(str(exc))
    asyncio.run(serve(settings, configuration))
    return 0


class _DropTimerSuccess(logging.Filter):
    """kopf logs every successful timer run; with a timer per agent that drowns everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer ") and message.endswith(" succeeded."))


class _PostWithinBudget(logging.Filter):
    """kopf posts every ERROR it logs about an object as an Event; over the operator's Event budget the
    line is still logged but not posted (kopf's documented `k8s_skip`)."""

    def __init__(self, budget: EventBudget, monotonic: Callable[[], float]) -> None:
        super().__init__()
        self.budget, self.monotonic = budget, monotonic

    def filter(self, record: logging.LogRecord) -> bool:
        ref = getattr(record, "k8s_ref", None)
        if record.levelno < logging.ERROR or not isinstance(ref, Mapping):
            return True  # kopf posts neither
        if not self.budget.admit(str(ref.get("uid") or ref.get("name")), "Logging", self.monotonic()):
            record.k8s_skip = True
        return True


def quiet_logs() -> None:
    """Keep the log about decisions and failures: no per-request or per-timer lines."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_DropTimerSuccess())


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for this operator."""
    result = kopf.OperatorSettings()
    # Handler failures become Events on the object; explicit condition events are posted by handlers.
    result.posting.enabled = True
    result.posting.loggers = True
    result.posting.level = logging.ERROR
    # kopf's bookkeeping lives in annotations: status is our API and its schema prunes unknown fields.
    result.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    result.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    result.persistence.finalizer = FINALIZER
    # Bounded requests and watches: a stuck connection is replaced instead of silencing the operator.
    result.networking.request_timeout = 30
    result.networking.connect_timeout = 10
    result.watching.server_timeout = 300
    result.watching.client_timeout = 330
    result.watching.connect_timeout = 10
    result.peering.standalone = True
    # Watching for new CRDs and namespaces needs cluster-wide list/watch; a namespaced operator has neither
    # (kopf would retry those calls for a minute at start-up). Its CRDs are installed before it starts.
    result.scanning.disabled = not settings.clusterwide
    return result


async def serve(
    settings: OperatorSettings,
    configuration: Any,
    *,
    stop_flag: asyncio.Future[Any] | None = None,
    ready_flag: asyncio.Future[Any] | asyncio.Event | None = None,
    liveness: bool = True,
    recheck: float = PERMISSION_RECHECK,
) -> None:
    """Run the operator until stopped: one Kubernetes client and one Temporal pool for every handler.

    kopf watches only the namespaces the operator may watch; every `recheck` seconds the permissions
    are checked again and the watches restarted if that set changed.
    """
    kube = KubeClient.from_configuration(configuration, field_manager=settings.field_manager)
    pool = TemporalPool(timeout=settings.temporal_timeout)
    health = HealthBatcher(
        pool=pool,
        reader=runtime_reader(live_within=settings.live_within, rpc_timeout=settings.temporal_timeout),
        interval=settings.health_interval,
        # Bounds each wave of a batched read's calls (about 3 per task queue, 8 at a time; see
        # HealthBatcher.deadline), so a large batch on a healthy server is not cut off.
        timeout=max(settings.health_interval, settings.temporal_timeout),
    )
    try:
        defaults = default_params(settings)
    except OSError as exc:
        raise SystemExit(
            f"cannot read {exc.filename} ({exc.strerror}): check DURABLE_AGENTS_TEMPORAL_TLS_CA_FILE, "
            "DURABLE_AGENTS_TEMPORAL_TLS_CERT_FILE and DURABLE_AGENTS_TEMPORAL_TLS_KEY_FILE"
        ) from None
    operator = Operator(settings=settings, kube=kube, temporal=pool, health=health, default_params=defaults)
    registry = kopf.OperatorRegistry()
    register(registry, settings)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection_info(configuration)

    logger.info(
        "durable-agents operator for %s; default Temporal %s (namespace %s)",
        "all namespaces" if settings.clusterwide else "namespaces " + ", ".join(settings.watch_namespaces),
        settings.temporal_address,
        settings.temporal_namespace,
    )
    stopped: asyncio.Future[Any] = stop_flag or asyncio.get_running_loop().create_future()
    posting = _PostWithinBudget(operator.events, operator.monotonic)
    logging.getLogger("kopf.objects").addFilter(posting)
    try:
        async with metrics_server(lambda: operator.waits, settings.bind_host, settings.metrics_port):
            await _watch_until_stopped(
                settings, kube, registry, operator, stopped, ready_flag, liveness, recheck
            )
    finally:
        logging.getLogger("kopf.objects").removeFilter(posting)
        await pool.close()
        await kube.aclose()


async def _watch_until_stopped(
    settings: OperatorSettings,
    kube: KubeClient,
    registry: kopf.OperatorRegistry,
    operator: Operator,
    stopped: asyncio.Future[Any],
    ready_flag: asyncio.Future[Any] | asyncio.Event | None,
    liveness: bool,
    recheck: float,
) -> None:
    """Run kopf on the namespaces the operator may watch, restarting it when that set changes."""
    while not stopped.done():
        scopes = (await check_permissions(kube, settings)).watchable(settings.watch_namespaces or (None,))
        if not scopes:
            logger.error("nothing may be watched yet; checking the permissions again in %gs", recheck)
            async with _waiting(settings if liveness else None, stopped):
                await asyncio.wait([stopped], timeout=recheck)
            continue
        restart: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        checker = asyncio.create_task(_watch_permissions(kube, settings, scopes, restart, recheck))
        deployments = DeploymentCache(kube, scopes)
        operator.deployments = deployments
        following = asyncio.create_task(deployments.run())
        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings(settings),
                standalone=True,
                clusterwide=settings.clusterwide,
                namespaces=[s for s in scopes if s is not None],
                liveness_endpoint=_liveness_url(settings) if liveness else None,
                memo=kopf.Memo(operator=operator),
                stop_flag=_either(stopped, restart),
                ready_flag=ready_flag,
            )
        finally:
            checker.cancel()
            following.cancel()
            operator.deployments = None
        if not restart.done():
            return  # stopped by a signal or the caller
        logger.info("the operator's permissions changed: restarting the watches")


async def _watch_permissions(
    kube: KubeClient,
    settings: OperatorSettings,
    scopes: tuple[str | None, ...],
    restart: asyncio.Future[None],
    every: float,
) -> None:
    """Set `restart` when the set of watchable namespaces changes (a grant added or revoked)."""
    while True:
        await asyncio.sleep(every)
        now = (await check_permissions(kube, settings)).watchable(settings.watch_namespaces or (None,))
        if now != scopes:
            restart.set_result(None)
            return


def _either(*flags: asyncio.Future[Any]) -> asyncio.Future[None]:
    """A future done as soon as any of `flags` is (kopf takes one stop flag)."""
    combined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish(_: asyncio.Future[Any]) -> None:
        if not combined.done():
            combined.set_result(None)

    for flag in flags:
        flag.add_done_callback(finish)
    return combined


@contextlib.asynccontextmanager
async def _waiting(settings: OperatorSettings | None, stopped: asyncio.Future[Any]) -> AsyncIterator[None]:
    """While kopf is not running (waiting for RBAC): answer /healthz, so the pod is not restarted for it,
    and stop on SIGTERM/SIGINT (kopf handles them only while it runs)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopped.done() or stopped.set_result(None))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"waiting": "for RBAC permissions"})

    try:
        if settings is None:
            yield
        else:
            async with serving({"/healthz": healthz}, settings.bind_host, settings.liveness_port):
                yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _liveness_url(settings: OperatorSettings) -> str:
    return f"http://{settings.bind_host}:{settings.liveness_port}/healthz"


def _connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the same configuration the operator's own client uses."""
    header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    scheme, _, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
