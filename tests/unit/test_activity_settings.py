"""Activity settings: each manifest level merged over the runtime defaults and the levels above it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable_agents_api.config import DEFAULT_MAXIMUM_ATTEMPTS, RuntimeConfig
from durable_agents_runtime.activity_settings import DEFAULT_ACTIVITY, activity_configs


def _config(activities: dict[str, Any]) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": "a",
                "model": "test",
                "toolsets": [{"id": "ts", "entrypoint": "pkg.mod:toolset"}],
            },
            "temporal": {"taskQueue": "q"},
            "activities": activities,
        }
    )


def test_without_settings_every_activity_gets_the_runtime_defaults_with_bounded_attempts() -> None:
    configs = activity_configs(_config({}))

    for config in (configs.default, configs.model):
        assert config["start_to_close_timeout"] == timedelta(seconds=60)
        assert config["heartbeat_timeout"] == timedelta(seconds=2)
        retry = config["retry_policy"]
        assert retry.maximum_attempts == DEFAULT_MAXIMUM_ATTEMPTS == 5
        assert (retry.initial_interval, retry.maximum_interval) == (
            timedelta(seconds=1),
            timedelta(seconds=30),
        )
    assert configs.toolsets == {} and configs.tools == {}
    assert DEFAULT_ACTIVITY.retry is not None and DEFAULT_ACTIVITY.retry.maximum_attempts == 5


def test_each_level_overrides_only_what_it_sets() -> None:
    configs = activity_configs(
        _config(
            {
                "default": {"startToCloseTimeout": "40s", "retry": {"maximumAttempts": 0}},
                "model": {"heartbeatTimeout": "5s"},
                "toolsets": {"ts": {"retry": {"initialInterval": "3s"}}},
                "tools": {"ts": {"slow": {"startToCloseTimeout": "10m", "scheduleToCloseTimeout": "20m"}}},
            }
        )
    )

    assert configs.default["start_to_close_timeout"] == timedelta(seconds=40)
    assert configs.default["retry_policy"].maximum_attempts == 0, (
        "0 (unlimited) is the user's explicit choice"
    )
    assert configs.model["heartbeat_timeout"] == timedelta(seconds=5)
    assert configs.model["start_to_close_timeout"] == timedelta(seconds=40)
    toolset = configs.toolsets["ts"]
    assert toolset["retry_policy"].initial_interval == timedelta(seconds=3)
    assert toolset["retry_policy"].maximum_interval == timedelta(seconds=30)
    slow = configs.tools["ts"]["slow"]
    assert slow is not False
    assert slow["start_to_close_timeout"] == timedelta(minutes=10)
    assert slow["schedule_to_close_timeout"] == timedelta(minutes=20)
    assert slow["retry_policy"].initial_interval == timedelta(seconds=3), "the toolset level applies beneath"


def test_a_schedule_to_close_shorter_than_the_default_start_to_close_caps_it() -> None:
    configs = activity_configs(_config({"model": {"scheduleToCloseTimeout": "20s"}}))

    assert configs.model["schedule_to_close_timeout"] == timedelta(seconds=20)
    assert configs.model["start_to_close_timeout"] == timedelta(seconds=20)


def test_false_runs_a_tool_in_the_workflow() -> None:
    configs = activity_configs(_config({"tools": {"ts": {"pure": False}}}))

    assert configs.tools == {"ts": {"pure": False}}
