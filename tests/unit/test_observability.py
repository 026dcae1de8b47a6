"""Tracing is set up only when spans can leave the process; otherwise the worker skips its cost.

What the spans contain, and that they reach a real backend, is proven in tests/runtime/test_traces.py."""

from __future__ import annotations

from typing import Any

import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime import run_spans
from durable_agents_runtime.observability import logfire_plugins


def config(**observability: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": {"name": "hello", "model": "test"},
            "temporal": {"taskQueue": "q"},
            "observability": observability,
        }
    )


@pytest.mark.parametrize(
    ("observability", "environ", "traced"),
    [
        ({}, {}, False),
        ({}, {"LOGFIRE_TOKEN": "secret-token"}, True),
        ({"logfire": {"send": False}}, {"LOGFIRE_TOKEN": "secret-token"}, False),
        ({"otlpEndpoint": "http://127.0.0.1:4318"}, {}, True),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"logfire": {"enabled": False}, "otlpEndpoint": "http://127.0.0.1:4318"}, {}, False),
    ],
)
def test_runs_are_traced_only_when_spans_have_somewhere_to_go(
    observability: dict[str, Any], environ: dict[str, str], traced: bool
) -> None:
    plugins = logfire_plugins(config(**observability), environ)
    assert (len(plugins) == 1) is traced
    # The run span interceptor follows the same rule: no root spans built for nowhere.
    assert (len(run_spans.interceptors(config(**observability), environ)) == 1) is traced


def test_run_spans_carry_the_agent_and_where_it_runs_and_nothing_from_the_rest_of_the_environment() -> None:
    environ = {"POD_NAMESPACE": "team-a", "POD_NAME": "hello-7d9f", "OPENAI_API_KEY": "sk-secret"}
    assert run_spans.worker_attributes(config(), environ) == {
        "durable_agents.agent": "hello",
        "temporal.namespace": "default",
        "k8s.namespace.name": "team-a",
        "k8s.pod.name": "hello-7d9f",
    }
    # Outside Kubernetes the pod attributes are left out rather than empty.
    assert set(run_spans.worker_attributes(config(), {})) == {"durable_agents.agent", "temporal.namespace"}
    assert run_spans.run_span_name("DurableAgentRun", "hello") == "DurableAgentRun hello"
