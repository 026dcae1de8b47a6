"""Tracing (Logfire, OTLP) and metrics (Prometheus) for a worker, from `ObservabilitySpec`.

Nothing leaves the process unless configured: Logfire sends only when `logfire.send` is true and a token
(`LOGFIRE_TOKEN`) is present; spans go to an OTLP collector only when `otlpEndpoint` (or the standard
`OTEL_EXPORTER_OTLP_*` variables) says where. Temporal SDK metrics and the worker's own run counters are
served for Prometheus on `prometheusPort`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime.import_gate import spans_may_leave

if TYPE_CHECKING:
    from temporalio.client import Plugin
    from temporalio.runtime import Runtime

__all__ = ["logfire_plugins", "prometheus_runtime"]


def prometheus_runtime(host: str, port: int | None) -> Runtime:
    """The worker's Temporal runtime: SDK worker heartbeats every `WORKER_HEARTBEAT_INTERVAL`, and SDK
    metrics served for Prometheus on `host:port` unless the port is 0 (off).

    The runtime is built even without Prometheus: the heartbeats are how `read_health` sees a dead worker
    within seconds (see `durable_agents_runtime.health`).
    """
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    from durable_agents_runtime.health_signals import WORKER_HEARTBEAT_INTERVAL

    metrics = PrometheusConfig(bind_address=f"{host}:{port}") if port else None
    return Runtime(
        telemetry=TelemetryConfig(metrics=metrics), worker_heartbeat_interval=WORKER_HEARTBEAT_INTERVAL
    )


def spans_have_a_destination(config: RuntimeConfig, environ: Mapping[str, str]) -> bool:
    """Whether any span would leave the process: to Logfire (send + token) or to an OTLP endpoint (the
    rule `import_gate` applies before the config is validated)."""
    return spans_may_leave(config.observability.model_dump(mode="json", by_alias=True), environ)


def logfire_plugins(config: RuntimeConfig, environ: Mapping[str, str] = os.environ) -> Sequence[Plugin]:
    """Configure Logfire as `observability` asks and return the Temporal client plugins that trace runs.

    Tracing is skipped when no span could go anywhere: building and dropping them cost about a fifth of a
    worker's CPU per run (bench/README.md, "logfire off").
    """
    spec = config.observability.logfire
    if not spans_have_a_destination(config, environ):
        return []
    import logfire
    from pydantic_ai.durable_exec.temporal import LogfirePlugin

    def setup() -> logfire.Logfire:
        processors = []
        if config.observability.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            endpoint = config.observability.otlp_endpoint.rstrip("/") + "/v1/traces"
            processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        instance = logfire.configure(
            send_to_logfire="if-token-present" if spec.send else False,
            console=False,
            service_name=spec.service_name or config.agent.name,
            environment=spec.environment,
            additional_span_processors=processors,
            # The plugin exports Temporal SDK metrics only when Logfire's metrics are not turned off.
            metrics=None if spec.metrics else False,
        )
        # Without includeContent, spans keep names, ids, timings and token counts, not prompts or tool data.
        instance.instrument_pydantic_ai(include_content=config.observability.include_content)
        return instance

    return [LogfirePlugin(setup, metrics=spec.metrics)]
