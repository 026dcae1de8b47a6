"""The runtime contract and the API models reject bad input with one line per field, naming its API path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from durable_agents_api.config import (
    ActivitySpec,
    RuntimeConfig,
    TemporalSpec,
    format_duration,
    parse_duration,
)
from durable_agents_api.errors import ConfigError, format_validation
from durable_agents_api.resources import DurableAgent, TemporalConnection

AGENT = {"name": "hello", "model": "test"}
TEMPORAL = {"taskQueue": "default.hello"}


def runtime_config(**overrides: Any) -> dict[str, Any]:
    return {"agent": AGENT, "temporal": TEMPORAL, **overrides}


def durable_agent(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "hello", "namespace": "default"}, "spec": {"agent": AGENT, **spec}}


def error_lines(model: type[BaseModel], data: dict[str, Any], *, prefix: str = "") -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return format_validation(info.value, prefix=prefix).splitlines()


def single_error(model: type[BaseModel], data: dict[str, Any], *, prefix: str = "") -> tuple[str, str]:
    """The one `path: message` line a bad document produces, split at the first `: `."""
    lines = error_lines(model, data, prefix=prefix)
    assert len(lines) == 1, lines
    path, _, message = lines[0].strip().partition(": ")
    return path, message


# --- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["30s", "5m", "1h", "1h30m", "250ms", "2h5m7s", "1m30s"])
def test_duration_in_shortest_form_survives_a_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("90s", "1m30s"), ("60m", "1h"), ("1.5s", "1500ms"), ("0.5m", "30s"), ("1000ms", "1s"), ("1m60s", "2m")],
)
def test_duration_is_formatted_in_its_shortest_exact_spelling(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
    assert parse_duration(canonical) == parse_duration(text)


def test_duration_accepts_timedeltas_and_seconds_as_numbers() -> None:
    assert parse_duration(timedelta(minutes=2)) == timedelta(minutes=2)
    assert parse_duration(45) == timedelta(seconds=45)
    assert parse_duration(0.25) == timedelta(milliseconds=250)


def test_zero_duration_is_formatted_as_zero_seconds() -> None:
    assert format_duration(timedelta(0)) == "0s"


@pytest.mark.parametrize(
    "bad", ["", "5", "5 seconds", "-1s", "1d", "s", "1s ", "1.s", "PT5S", True, None, [1]]
)
def test_duration_without_a_unit_or_with_an_unknown_one_is_rejected_with_examples(bad: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*write a number with a unit, e\.g\. '500ms'"):
        parse_duration(bad)


def test_bad_duration_in_a_manifest_names_the_field_path() -> None:
    path, message = single_error(
        DurableAgent, durable_agent(activities={"default": {"heartbeatTimeout": "5 seconds"}})
    )
    assert path == "spec.activities.default.heartbeatTimeout"
    assert message.startswith("invalid duration '5 seconds'")


@pytest.mark.parametrize("huge", ["99999999999h", "9223372036854775807ms", "9" * 400 + "h", "2562048h"])
def test_duration_beyond_what_go_and_temporal_represent_is_a_validation_error_naming_the_field(
    huge: str,
) -> None:
    # The CRD's pattern admits any number of digits; an overflow must still come out as a validation error
    # (InvalidSpec naming the field), not as an OverflowError that fails the operator's handler.
    path, message = single_error(
        DurableAgent, durable_agent(activities={"default": {"heartbeatTimeout": huge}})
    )
    assert path == "spec.activities.default.heartbeatTimeout"
    assert "too long" in message and "2562047h" in message
    with pytest.raises(ValueError, match="too long"):
        parse_duration(1e20)


def test_zero_duration_is_rejected_where_a_timeout_is_expected() -> None:
    path, message = single_error(RuntimeConfig, runtime_config(worker={"gracefulShutdownTimeout": "0s"}))
    assert path == "worker.gracefulShutdownTimeout"
    assert message == "duration must be greater than zero"


def test_durations_are_written_back_as_strings() -> None:
    spec = ActivitySpec.model_validate({"startToCloseTimeout": "90s", "heartbeatTimeout": 2})
    assert spec.to_api() == {"startToCloseTimeout": "1m30s", "heartbeatTimeout": "2s"}


# --- activities -----------------------------------------------------------------------------------------


def test_start_to_close_longer_than_schedule_to_close_is_rejected_at_the_start_to_close_field() -> None:
    path, message = single_error(
        DurableAgent,
        durable_agent(activities={"model": {"startToCloseTimeout": "2m", "scheduleToCloseTimeout": "1m"}}),
    )
    assert path == "spec.activities.model.startToCloseTimeout"
    assert "must not exceed scheduleToCloseTimeout" in message


def test_start_to_close_equal_to_schedule_to_close_is_accepted() -> None:
    spec = ActivitySpec.model_validate({"startToCloseTimeout": "1m", "scheduleToCloseTimeout": "60s"})
    assert spec.start_to_close_timeout == spec.schedule_to_close_timeout


@pytest.mark.parametrize("section", ["toolsets", "tools"])
def test_activity_settings_for_an_unknown_toolset_id_are_rejected(section: str) -> None:
    settings: dict[str, Any] = {"toolsets": {"wether": {}}, "tools": {"wether": {"forecast": False}}}
    agent = {**AGENT, "toolsets": [{"id": "weather", "entrypoint": "pkg.tools:toolset"}]}
    path, message = single_error(
        RuntimeConfig, runtime_config(agent=agent, activities={section: settings[section]})
    )
    assert path == f"activities.{section}"
    assert "['wether']" in message
    assert "known ids: ['weather']" in message


def test_activity_settings_for_a_code_agents_toolsets_are_left_to_the_agent_loader() -> None:
    config = RuntimeConfig.model_validate(
        runtime_config(
            agent={"name": "coded", "entrypoint": "pkg.agent:agent"},
            activities={"tools": {"search": {"web": {"startToCloseTimeout": "10s"}}}},
        )
    )
    assert config.activities.tools["search"]["web"] != False  # noqa: E712 (the literal False means "not an activity")


def test_manifest_with_activity_settings_for_an_unknown_toolset_is_rejected_by_the_api_model() -> None:
    path, _ = single_error(DurableAgent, durable_agent(activities={"tools": {"nope": {"x": False}}}))
    assert path == "spec.activities.tools"


def test_negative_retry_attempts_and_a_backoff_below_one_are_rejected() -> None:
    lines = error_lines(
        DurableAgent,
        durable_agent(activities={"default": {"retry": {"maximumAttempts": -1, "backoffCoefficient": 0.5}}}),
    )
    paths = sorted(line.strip().split(": ", 1)[0] for line in lines)
    assert paths == [
        "spec.activities.default.retry.backoffCoefficient",
        "spec.activities.default.retry.maximumAttempts",
    ]


# --- agent ----------------------------------------------------------------------------------------------


def test_agent_without_model_or_entrypoint_is_rejected() -> None:
    path, message = single_error(DurableAgent, durable_agent(agent={"name": "hello"}))
    assert path == "spec.agent.model"
    assert "either `model`" in message and "`entrypoint`" in message


def test_code_agent_with_declarative_fields_is_rejected_naming_them() -> None:
    agent = {"name": "hello", "entrypoint": "pkg.agent:agent", "instructions": "Be brief.", "mcpServers": []}
    path, message = single_error(DurableAgent, durable_agent(agent={**agent, "model": "test"}))
    assert path == "spec.agent.entrypoint"
    assert "model, instructions" in message


def test_image_without_entrypoint_is_rejected() -> None:
    path, message = single_error(DurableAgent, durable_agent(agent={**AGENT, "image": "registry/agent:1"}))
    assert path == "spec.agent.image"
    assert "add an entrypoint" in message


def test_json_output_without_a_schema_is_rejected() -> None:
    path, message = single_error(DurableAgent, durable_agent(agent={**AGENT, "output": {"type": "json"}}))
    assert path == "spec.agent.output.schema"
    assert "required when output.type is 'json'" in message


def test_text_output_with_a_schema_is_rejected() -> None:
    output = {"type": "text", "schema": {"type": "object"}}
    path, message = single_error(DurableAgent, durable_agent(agent={**AGENT, "output": output}))
    assert path == "spec.agent.output.schema"
    assert "set type: json" in message


def test_duplicate_toolset_ids_across_mcp_servers_and_toolsets_are_rejected_at_the_repeat() -> None:
    agent = {
        **AGENT,
        "mcpServers": [{"id": "calc", "url": "http://calc:8000/mcp"}],
        "toolsets": [{"id": "demo", "entrypoint": "pkg.a:t"}, {"id": "calc", "entrypoint": "pkg.b:t"}],
    }
    path, message = single_error(DurableAgent, durable_agent(agent=agent))
    assert path == "spec.agent.toolsets[1].id"
    assert "'calc' is already used" in message


def test_agent_name_that_cannot_be_part_of_an_activity_name_is_rejected() -> None:
    path, message = single_error(DurableAgent, durable_agent(agent={**AGENT, "name": "my-agent"}))
    assert path == "spec.agent.name"
    assert "pattern" in message


def test_mcp_server_header_from_an_invalid_env_var_name_is_rejected() -> None:
    server = {"id": "calc", "url": "http://calc/mcp", "headersFromEnv": {"Authorization": "MY-TOKEN"}}
    path, _ = single_error(DurableAgent, durable_agent(agent={**AGENT, "mcpServers": [server]}))
    assert path == "spec.agent.mcpServers[0].headersFromEnv.Authorization"


# --- temporal -------------------------------------------------------------------------------------------


def test_api_key_and_mtls_client_certificate_together_are_rejected_in_the_runtime_config() -> None:
    temporal = {
        **TEMPORAL,
        "apiKeyEnv": "TEMPORAL_API_KEY",
        "tls": {"clientCertFile": "c", "clientKeyFile": "k"},
    }
    path, message = single_error(RuntimeConfig, runtime_config(temporal=temporal))
    assert path == "temporal.apiKeyEnv"
    assert "not both" in message


def test_api_key_with_server_only_tls_is_accepted() -> None:
    spec = TemporalSpec.model_validate(
        {**TEMPORAL, "apiKeyEnv": "TEMPORAL_API_KEY", "tls": {"caFile": "/ca"}}
    )
    assert spec.api_key_env == "TEMPORAL_API_KEY"


@pytest.mark.parametrize(
    ("given", "missing"), [("clientCertFile", "clientKeyFile"), ("clientKeyFile", "clientCertFile")]
)
def test_client_certificate_and_key_must_be_set_together(given: str, missing: str) -> None:
    path, message = single_error(RuntimeConfig, runtime_config(temporal={**TEMPORAL, "tls": {given: "/f"}}))
    assert path == f"temporal.tls.{missing}"
    assert "must be set together" in message


def test_api_key_and_mtls_client_certificate_together_are_rejected_on_a_temporal_connection() -> None:
    secret = {"name": "temporal", "key": "k"}
    client_cert = {"clientCertSecretRef": {"name": "temporal"}}
    spec = {"address": "temporal:7233", "apiKeySecretRef": secret, "tls": client_cert}
    path, message = single_error(TemporalConnection, {"spec": spec})
    assert path == "spec"
    assert "apiKeySecretRef" in message and "tls.clientCertSecretRef" in message


def test_temporal_connection_without_address_reports_the_missing_field() -> None:
    path, message = single_error(TemporalConnection, {"spec": {"namespace": "prod"}})
    assert path == "spec.address"
    assert message == "required field is missing"


# --- autoscaling ----------------------------------------------------------------------------------------


def test_min_replicas_above_max_replicas_is_rejected() -> None:
    path, message = single_error(
        DurableAgent, durable_agent(autoscaling={"enabled": True, "minReplicas": 5, "maxReplicas": 2})
    )
    assert path == "spec.autoscaling"
    assert "minReplicas must be <= autoscaling.maxReplicas" in message


def test_scale_to_zero_is_allowed() -> None:
    agent = DurableAgent.model_validate(durable_agent(autoscaling={"minReplicas": 0, "maxReplicas": 3}))
    assert agent.spec.autoscaling is not None and agent.spec.autoscaling.min_replicas == 0


# --- unknown fields and the error text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"agent": {**AGENT, "instruction": "typo"}}, "spec.agent.instruction"),
        ({"agent": AGENT, "worker": {"gracefulShutdown": "10s"}}, "spec.worker.gracefulShutdown"),
        ({"agent": AGENT, "activities": {"default": {"timeout": "1s"}}}, "spec.activities.default.timeout"),
    ],
)
def test_unknown_field_is_named_with_a_spelling_hint(spec: dict[str, Any], path: str) -> None:
    assert single_error(DurableAgent, {"spec": spec}) == (
        path,
        "unknown field: remove it or check its spelling",
    )


def test_config_error_lists_every_bad_field_under_its_source() -> None:
    data = runtime_config(
        worker={"gracefulShutdownTimeout": "soon", "maxConcurrentActivities": 0}, extra={"x": 1}
    )
    with pytest.raises(ValidationError) as info:
        RuntimeConfig.model_validate(data)
    text = str(ConfigError.from_validation(info.value, source="config.json"))
    assert text.splitlines() == [
        "invalid config.json:",
        "  worker.maxConcurrentActivities: Input should be greater than or equal to 1",
        "  worker.gracefulShutdownTimeout: invalid duration 'soon': write a number with a unit, "
        "e.g. '500ms', '30s', '5m' or '1h30m'",
        "  extra: unknown field: remove it or check its spelling",
    ]


def test_prefix_places_runtime_errors_under_the_manifests_path() -> None:
    path, _ = single_error(
        RuntimeConfig, runtime_config(worker={"healthPort": 70000}), prefix="spec.template"
    )
    assert path == "spec.template.worker.healthPort"


def test_non_validation_errors_are_reported_at_the_prefix() -> None:
    assert format_validation(ValueError("not JSON"), prefix="spec") == "  spec: not JSON"
