"""Activity settings: the manifest's layers merged over the runtime defaults, in pydantic-ai's form.

Settings are resolved in layers, each overriding the one before: the runtime defaults (`DEFAULT_ACTIVITY`),
`activities.default`, then `activities.model` for model requests, `activities.toolsets[id]` for a toolset or
MCP server, and `activities.tools[id][tool]` for one tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

from durable_agents_api.config import DEFAULT_MAXIMUM_ATTEMPTS, ActivitySpec, RuntimeConfig

__all__ = ["DEFAULT_ACTIVITY", "ActivityConfigs", "activity_configs"]


# With a short heartbeat timeout a killed worker's in-flight activity is retried on another worker within
# seconds instead of after the start-to-close timeout (measured: 66 s with library defaults, 11 s with 2 s
# heartbeats and a 2 s sticky schedule-to-start timeout). The worker process heartbeats every running
# activity from a thread of its own (`durable_agents_runtime.heartbeats`), so a tool that blocks the event
# loop is not mistaken for a dead worker. A 1 s first retry keeps a retry prompt; 30 s caps the backoff.
# Temporal's default is to retry forever, which turns a tool with a bug into a run that never ends: five
# attempts (four retries, 1 + 2 + 4 + 8 = 15 s of backoff) end it with the last attempt's error.
DEFAULT_ACTIVITY = ActivitySpec.model_validate(
    {
        "startToCloseTimeout": "60s",
        "heartbeatTimeout": "2s",
        "retry": {
            "initialInterval": "1s",
            "backoffCoefficient": 2.0,
            "maximumInterval": "30s",
            "maximumAttempts": DEFAULT_MAXIMUM_ATTEMPTS,
        },
    }
)
"""Runtime defaults for every activity; any value in the manifest overrides the matching one here."""

_TIMEOUT_FIELDS = ("start_to_close_timeout", "schedule_to_close_timeout", "heartbeat_timeout")
_RETRY_FIELDS = (
    "initial_interval",
    "backoff_coefficient",
    "maximum_interval",
    "maximum_attempts",
    "non_retryable_error_types",
)


def _layer(spec: ActivitySpec | None) -> dict[str, Any]:
    """The fields `spec` sets, retry fields nested under `retry`."""
    if spec is None:
        return {}
    layer: dict[str, Any] = {f: v for f in _TIMEOUT_FIELDS if (v := getattr(spec, f)) is not None}
    if spec.retry is not None:
        layer["retry"] = {f: v for f in _RETRY_FIELDS if (v := getattr(spec.retry, f)) is not None}
    return layer


def _merge(*specs: ActivitySpec | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for spec in specs:
        layer = _layer(spec)
        retry = {**merged.get("retry", {}), **layer.pop("retry", {})}
        merged.update(layer)
        merged["retry"] = retry
    return merged


def _activity_config(merged: Mapping[str, Any]) -> ActivityConfig:
    config = ActivityConfig()
    start = merged.get("start_to_close_timeout")
    schedule = merged.get("schedule_to_close_timeout")
    if start is not None and schedule is not None and start > schedule:
        # The default start-to-close timeout must not outlive a shorter schedule-to-close the manifest set.
        start = schedule
    if start is not None:
        config["start_to_close_timeout"] = start
    if schedule is not None:
        config["schedule_to_close_timeout"] = schedule
    if (heartbeat := merged.get("heartbeat_timeout")) is not None:
        config["heartbeat_timeout"] = heartbeat
    retry = dict(merged.get("retry", {}))
    if retry:
        config["retry_policy"] = RetryPolicy(**retry)
    return config


class ActivityConfigs(NamedTuple):
    """Resolved activity settings, in the form pydantic-ai's `TemporalDurability` takes them."""

    default: ActivityConfig
    model: ActivityConfig
    toolsets: dict[str, ActivityConfig]
    """By toolset (or MCP server) id."""
    tools: dict[str, dict[str, ActivityConfig | Literal[False]]]
    """By toolset id, then tool name; False runs the tool in the workflow."""


def activity_configs(config: RuntimeConfig) -> ActivityConfigs:
    """The activity settings of `config`, each level merged over the runtime defaults and the levels above."""
    activities = config.activities
    base = (DEFAULT_ACTIVITY, activities.default)
    toolset_ids = set(activities.toolsets) | set(activities.tools)
    toolsets = {ts: _activity_config(_merge(*base, activities.toolsets.get(ts))) for ts in toolset_ids}
    tools: dict[str, dict[str, ActivityConfig | Literal[False]]] = {
        ts: {
            name: False
            if spec is False
            else _activity_config(_merge(*base, activities.toolsets.get(ts), spec))
            for name, spec in by_tool.items()
        }
        for ts, by_tool in activities.tools.items()
    }
    return ActivityConfigs(
        default=_activity_config(_merge(*base)),
        model=_activity_config(_merge(*base, activities.model)),
        toolsets=toolsets,
        tools=tools,
    )
