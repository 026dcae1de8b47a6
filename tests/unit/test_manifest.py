"""DurableAgent manifests → runtime configs: every invalid manifest names its file, document and bad field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.errors import ConfigError
from durable_agents_api.manifest import load_manifests, runtime_config

REPO = Path(__file__).resolve().parents[2]

HEADER = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: hello
spec:
"""


def manifest(tmp_path: Path, spec: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(spec), "  "))
    return path


INVALID = {
    "unknown field": (
        """
        agent: {name: hello, model: test, instruction: typo}
        """,
        "spec.agent.instruction: unknown field",
    ),
    "bad duration": (
        """
        agent: {name: hello, model: test}
        activities: {default: {startToCloseTimeout: ten seconds}}
        """,
        "spec.activities.default.startToCloseTimeout: invalid duration 'ten seconds'",
    ),
    "declarative and code": (
        """
        agent: {name: hello, model: test, entrypoint: "pkg.mod:agent"}
        """,
        "spec.agent.entrypoint: a code agent cannot also set model",
    ),
    "neither declarative nor code": (
        """
        agent: {name: hello}
        """,
        "spec.agent.model: agent needs either `model`",
    ),
    "bad agent name": (
        """
        agent: {name: my-agent, model: test}
        """,
        "spec.agent.name: String should match pattern",
    ),
    "json output without a schema": (
        """
        agent: {name: hello, model: test, output: {type: json}}
        """,
        "spec.agent.output.schema: required when output.type is 'json'",
    ),
    "tool settings for an unknown toolset": (
        """
        agent: {name: hello, model: test}
        activities: {tools: {nope: {lookup: {startToCloseTimeout: 5s}}}}
        """,
        "spec.activities.tools: names toolset ids ['nope']",
    ),
    "negative replicas": (
        """
        replicas: -1
        agent: {name: hello, model: test}
        """,
        "spec.replicas: Input should be greater than or equal to 0",
    ),
    "MCP server URL that is not http": (
        """
        agent:
          name: hello
          model: test
          mcpServers: [{id: files, url: "ftp://files.example"}]
        """,
        "spec.agent.mcpServers[0].url: String should match pattern",
    ),
    "startToClose longer than scheduleToClose": (
        """
        agent: {name: hello, model: test}
        activities: {model: {startToCloseTimeout: 1m, scheduleToCloseTimeout: 30s}}
        """,
        "spec.activities.model.startToCloseTimeout: must not exceed scheduleToCloseTimeout",
    ),
}


@pytest.mark.parametrize(("spec", "expected"), INVALID.values(), ids=INVALID.keys())
def test_an_invalid_manifest_names_the_file_and_the_bad_field(
    tmp_path: Path, spec: str, expected: str
) -> None:
    path = manifest(tmp_path, spec)

    with pytest.raises(ConfigError) as error:
        load_manifests([path])

    message = str(error.value)
    assert message.startswith(f"invalid {path}:"), message
    assert expected in message, message


def test_an_error_in_a_multi_document_file_names_the_document(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        HEADER
        + "  agent: {name: first, model: test}\n---\n"
        + HEADER
        + "  agent: {name: second, model: test, x: 1}\n"
    )

    with pytest.raises(
        ConfigError, match=r"invalid .*two\.yaml \(document 2\):\n  spec\.agent\.x: unknown field"
    ):
        load_manifests([path])


def test_a_file_without_a_durable_agent_says_what_to_add(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")

    with pytest.raises(ConfigError, match="no DurableAgent documents"):
        load_manifests([path])


def test_the_example_manifest_becomes_a_runtime_config_that_round_trips() -> None:
    [hello] = load_manifests([REPO / "examples" / "hello.yaml"])

    config = runtime_config(hello, address="127.0.0.1:7233")

    assert config.agent.name == "hello"
    assert config.temporal.task_queue == "default.hello"
    assert config.temporal.address == "127.0.0.1:7233"
    assert [t.id for t in config.agent.toolsets] == ["demo"]
    assert RuntimeConfig.model_validate_json(config.to_json()) == config


def test_several_agents_and_other_kinds_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keys}\n---\n"
        + HEADER
        + "  agent: {name: first, model: test}\n---\n"
        + HEADER.replace("name: hello", "name: second\n  namespace: team")
        + "  agent: {name: second, model: test}\n  temporal: {taskQueue: custom-queue}\n"
    )

    loaded = load_manifests([path])

    assert [(m.name, m.task_queue) for m in loaded] == [
        ("first", "default.hello"),
        ("second", "custom-queue"),
    ]
    assert runtime_config(loaded[1], address="temporal:7233", namespace="prod").temporal.namespace == "prod"
