"""The worker: a Temporal `Worker` serving one durable agent, with probes, metrics and a graceful drain.

`serve(config)` is what `durable-agents worker` (and so every worker pod) runs: build the agent, connect,
poll the agent's task queue until SIGTERM, then stop polling and give in-flight activities
`worker.gracefulShutdownTimeout` to finish before they are cancelled. `/readyz` answers 200 only while the
worker polls; `/livez` answers 200 while the process is up. `create_worker` is the shared part, also used by
`durable-agents dev` to run several agents in one process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.durable_exec.temporal import AgentPlugin
from temporalio.client import Client, Plugin
from temporalio.runtime import Runtime
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from durable_agents_api.config import RuntimeConfig, format_duration
from durable_agents_api.contract import ENV_BIND_HOST, ENV_HEALTH_PORT, ENV_METRICS_PORT
from durable_agents_api.errors import ConfigError
from durable_agents_runtime import run_spans, served_agents, versioning, worker_gate
from durable_agents_runtime.agents import build_agent, event_topic, model_streams
from durable_agents_runtime.connect import connect
from durable_agents_runtime.errors import TemporalConnectError
from durable_agents_runtime.heartbeats import ProcessHeartbeats
from durable_agents_runtime.observability import logfire_plugins, prometheus_runtime
from durable_agents_runtime.payload_limits import PayloadLimits
from durable_agents_runtime.probe_server import ProbeServer
from durable_agents_runtime.session_history import summarize_turns
from durable_agents_runtime.session_workflow import AgentSessionWorkflow
from durable_agents_runtime.sub_agents import existing_child_result
from durable_agents_runtime.workflow import AgentRunWorkflow

__all__ = ["create_worker", "endpoint_settings", "serve", "workflow_runner"]

log = logging.getLogger("durable_agents.worker")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def workflow_runner(config: RuntimeConfig) -> WorkflowRunner:
    """The sandboxed runner with the config's pass-through modules, or none when `worker.sandbox` is off."""
    if not config.worker.sandbox:
        return UnsandboxedWorkflowRunner()
    modules = config.worker.passthrough_modules
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*modules)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def create_worker(
    client: Client, config: RuntimeConfig, agent: AbstractAgent[Any, Any] | None = None
) -> Worker:
    """A worker for `config`'s agent (built here unless given) on its task queue; not yet running."""
    agent = agent if agent is not None else build_agent(config)
    task_queue = config.temporal.task_queue
    served_version = versioning.worker_version(config)
    served_agents.register(
        task_queue,
        served_agents.ServedAgent.of(
            agent, config, event_topic=event_topic(agent), model_streams=model_streams(agent.model)
        ),
        served_version.build_id if served_version is not None else None,
    )
    worker_spec = config.worker
    heartbeats = ProcessHeartbeats()
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentRunWorkflow, AgentSessionWorkflow],
        activities=[summarize_turns, existing_child_result],
        plugins=[AgentPlugin(agent)],
        interceptors=[PayloadLimits(), heartbeats, *run_spans.interceptors(config)],
        workflow_runner=workflow_runner(config),
        max_concurrent_activities=worker_spec.max_concurrent_activities,
        max_concurrent_workflow_tasks=worker_spec.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=worker_spec.graceful_shutdown_timeout,
        sticky_queue_schedule_to_start_timeout=worker_spec.sticky_schedule_to_start_timeout,
        **_version_options(config),
    )
    heartbeats.attach(worker)
    return worker


def _version_options(config: RuntimeConfig) -> dict[str, Any]:
    deployment = versioning.deployment_config(config)
    if deployment is not None:
        return {"deployment_config": deployment}
    # Without a build id the SDK hashes the bytecode of every loaded module (0.3-0.6 s of start-up,
    # measured) for an id that only matters with worker versioning, which this worker does not use.
    return {"build_id": _build_id(config)}


def _build_id(config: RuntimeConfig) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("durable-agents")
    except PackageNotFoundError:
        release = "unknown"
    return f"durable-agents-{release}-{config.agent.name}"


def _port_from_env(name: str, configured: int | None) -> int:
    value = os.environ.get(name)
    if value is None:
        return configured or 0
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not a port number: set it to 0-65535 (0 turns it off)"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={value!r} is not a port number: set it to 0-65535 (0 turns it off)")
    return port


def endpoint_settings(config: RuntimeConfig) -> tuple[str, int, int]:
    """(bind host, probe port, metrics port) from the config and `DURABLE_AGENTS_*` overrides; 0 is off."""
    host = os.environ.get(ENV_BIND_HOST) or "0.0.0.0"
    health_port = _port_from_env(ENV_HEALTH_PORT, config.worker.health_port)
    metrics_port = _port_from_env(ENV_METRICS_PORT, config.observability.prometheus_port)
    return host, health_port, metrics_port


def _port_in_use(host: str, port: int, what: str, setting: str, env: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"cannot listen on {host}:{port} for the {what} ({exc}): free the port, or set {setting} or {env} to "
        "another port (0 turns it off)"
    )


async def _connect_until_stopped(
    config: RuntimeConfig, plugins: Sequence[Plugin], runtime: Runtime | None, stopping: asyncio.Event
) -> Client | None:
    """Connect, retrying with backoff while Temporal is unreachable (e.g. still starting); None if stopped."""
    delay = 0.5
    while True:
        try:
            return await connect(config.temporal, plugins=plugins, runtime=runtime)
        except TemporalConnectError as exc:
            log.warning("%s (retrying in %.1fs)", exc, delay)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, 10.0)


async def serve(
    config: RuntimeConfig, *, plugins: Sequence[Plugin] = (), started: float | None = None
) -> None:
    """Run the worker for `config` until SIGTERM/SIGINT, then drain and return.

    Readiness stays 503 until the worker polls: while Temporal is unreachable the worker keeps retrying
    (and logs why) rather than exiting. `started` is the `time.monotonic()` the process started at, for the
    start-up time in the log.
    """
    started = started if started is not None else time.monotonic()
    host, health_port, metrics_port = endpoint_settings(config)
    worker: Worker | None = None
    stopping = asyncio.Event()

    def ready() -> bool:
        return worker is not None and worker.is_running and not stopping.is_set()

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info(
            "%s: stopping polling; in-flight activities get %s to finish",
            signal.Signals(signum).name,
            format_duration(config.worker.graceful_shutdown_timeout),
        )

    # A config that cannot work fails first, before anything listens.
    agent = build_agent(config)
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    probes = ProbeServer(host, health_port, ready)
    try:
        try:
            await probes.start()
        except OSError as exc:
            raise _port_in_use(
                host, health_port, "probes", "worker.healthPort", ENV_HEALTH_PORT, exc
            ) from None
        try:
            runtime = prometheus_runtime(host, metrics_port)
        except ValueError as exc:  # the SDK's "Failed starting Prometheus exporter: Address already in use"
            raise _port_in_use(
                host,
                metrics_port,
                "Prometheus metrics",
                "observability.prometheusPort",
                ENV_METRICS_PORT,
                exc,
            ) from None
        client = await _connect_until_stopped(config, [*logfire_plugins(config), *plugins], runtime, stopping)
        if client is None:
            return
        verdict = await worker_gate.replay_before_polling(client, config)
        worker = create_worker(client, config, agent)
        await _run_until_stopped(worker, config, stopping, started, verdict)
        log.info("worker stopped")
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await probes.stop()


async def _run_until_stopped(
    worker: Worker,
    config: RuntimeConfig,
    stopping: asyncio.Event,
    started: float,
    verdict: versioning.GateVerdict | None = None,
) -> None:
    async def stop_when_asked() -> None:
        await stopping.wait()
        await worker.shutdown()

    async def announce() -> None:
        while not worker.is_running:
            await asyncio.sleep(0.01)
        served = versioning.worker_version(config)
        log.info(
            "polling task queue %s at %s for agent %s%s (%.2fs after process start)",
            config.temporal.task_queue,
            config.temporal.address,
            config.agent.name,
            f" as version {served.deployment_name}:{served.build_id}" if served is not None else "",
            time.monotonic() - started,
        )
        if verdict is not None:
            await worker_gate.record(worker.client, config, verdict)

    stopper = asyncio.create_task(stop_when_asked())
    announcer = asyncio.create_task(announce())
    try:
        await worker.run()
    except RuntimeError as exc:
        # The worker's first call checks the namespace; a wrong one is a configuration error.
        raise TemporalConnectError(
            f"the worker could not start on namespace {config.temporal.namespace!r}: {exc}. Check "
            "temporal.namespace (or TEMPORAL_NAMESPACE)"
        ) from None
    finally:
        announcer.cancel()
        if stopping.is_set():
            await stopper
        else:
            stopper.cancel()
