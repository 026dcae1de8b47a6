"""Tracing is set up only when spans can leave the process; otherwise the worker skips its cost."""

from __future__ import annotations

from typing import Any

import pytest

from durable_agents_api.config import RuntimeConfig
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
