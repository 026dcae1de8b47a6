"""The `durable-agents` verbs around a run, as a user types them: naming the agent, deps, `result`, and the
messages for manifests and agent modules that cannot work.

Every command runs as a real CLI subprocess; runs go to real workers on the session's dev server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from test_dev import cli

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput
from durable_agents_api.manifest import load_manifests, runtime_config
from durable_agents_runtime.devserver import ENV_STATE_DIR, free_port

HERE = Path(__file__).resolve().parent
PYTHONPATH = {"PYTHONPATH": str(HERE)}

CODE_MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: {name}
spec:
  agent:
    name: {agent}
    entrypoint: {entrypoint}
"""


def code_manifest(tmp_path: Path, entrypoint: str, *, name: str = "coded", agent: str = "coded") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CODE_MANIFEST.format(name=name, agent=agent, entrypoint=entrypoint))
    return path


def address(temporal: Any) -> list[str]:
    return ["--address", temporal.address]


# --- an agent whose metadata.name is not its spec.agent.name --------------------------------------------


@pytest.fixture(scope="module")
def renamed(
    temporal_dev_server: Any, start_module_worker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """A worker for a manifest whose metadata.name (`greeter-…`) is not its spec.agent.name (`greeter_…`)."""
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path_factory.mktemp("renamed") / "greeter.yaml"
    path.write_text(
        "apiVersion: durable-agents.dev/v1alpha1\nkind: DurableAgent\n"
        f"metadata:\n  name: greeter-{suffix}\nspec:\n  agent:\n    name: greeter_{suffix}\n    model: test\n"
    )
    [manifest] = load_manifests([path])
    config = runtime_config(
        manifest, address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
    )
    start_module_worker(config)
    return path, manifest


@pytest.mark.runtime
def test_run_by_an_agent_name_no_worker_serves_says_which_queue_and_how_to_fix_it(
    renamed: Any, temporal_dev_server: Any
) -> None:
    path, manifest = renamed
    agent = manifest.name

    by_name = cli("run", agent, "Hi", "--worker-timeout", "1", *address(temporal_dev_server), timeout=60)
    status = cli("status", agent, *address(temporal_dev_server))
    by_manifest = cli("run", "-f", str(path), agent, "Hi", *address(temporal_dev_server))

    assert by_name.returncode == 3, by_name.stdout + by_name.stderr
    assert f"no worker polls task queue 'default.{agent}' (waited 1s)" in by_name.stderr
    assert "metadata.name" in by_name.stderr and "-f MANIFEST" in by_name.stderr
    assert "durable-agents result run-" in by_name.stderr, "the message says how to follow the queued run"
    assert f"note: no worker polls task queue 'default.{agent}'" in status.stderr
    assert by_manifest.returncode == 0, by_manifest.stdout + by_manifest.stderr
    assert f"on task queue {manifest.task_queue}" in by_manifest.stdout and "Output:" in by_manifest.stdout


# --- deps of any JSON type, and `result` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def whoami(temporal_dev_server: Any, start_module_worker: Any) -> list[str]:
    """A worker for `cli_agents:whoami_agent` (deps type `str`); returns the CLI flags that reach it."""
    config = RuntimeConfig.model_validate(
        {
            "agent": {"name": "whoami", "entrypoint": "cli_agents:whoami_agent"},
            "temporal": {
                "address": temporal_dev_server.address,
                "namespace": temporal_dev_server.namespace,
                "taskQueue": f"whoami-{uuid.uuid4().hex[:8]}",
            },
        }
    )
    start_module_worker(config, **PYTHONPATH)
    return ["--address", temporal_dev_server.address, "--task-queue", config.temporal.task_queue]


@pytest.mark.runtime
def test_run_passes_deps_that_are_a_json_string(whoami: list[str]) -> None:
    done = cli("run", "whoami", "Who am I?", "--deps", '"ada"', *whoami)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "deps=ada" in done.stdout


@pytest.mark.runtime
def test_deps_that_are_not_json_are_refused_with_what_to_write(whoami: list[str]) -> None:
    done = cli("run", "whoami", "Who am I?", "--deps", "{user: ada}", *whoami)

    assert done.returncode == 2
    assert "error: --deps is not valid JSON" in done.stderr
    assert "pass a JSON value" in done.stderr and """'"ada"' for a string""" in done.stderr


@pytest.mark.runtime
def test_dev_prompt_passes_deps(tmp_path: Path) -> None:
    manifest = code_manifest(tmp_path, "cli_agents:whoami_agent", name="whoami", agent="whoami")

    done = cli(
        "dev",
        str(manifest),
        "--prompt",
        "Who am I?",
        "--deps",
        '"grace"',
        env={**PYTHONPATH, ENV_STATE_DIR: str(tmp_path / "state")},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "deps=grace" in done.stdout


@pytest.mark.runtime
def test_result_prints_the_outcome_of_a_run_started_with_no_wait(whoami: list[str]) -> None:
    started = cli("run", "whoami", "Who am I?", "--deps", '"lin"', "--no-wait", *whoami)
    run_id = started.stdout.strip()
    connection = whoami[:2]

    text = cli("result", run_id, *connection)
    as_json = cli("result", run_id, "--json", *connection)

    assert started.returncode == 0, started.stderr
    assert text.returncode == 0, text.stdout + text.stderr
    assert "Output:" in text.stdout and "deps=lin" in text.stdout and "Usage: 2 requests" in text.stdout
    data = json.loads(as_json.stdout)
    assert data["id"] == run_id and data["status"] == "completed" and data["error"] is None
    assert "deps=lin" in data["output"]
    assert data["usage"]["requests"] == 2
    assert [call["toolName"] for call in data["toolCalls"]] == ["whoami"]


@pytest.mark.runtime
def test_result_of_a_failed_run_prints_the_cause(whoami: list[str]) -> None:
    bad_model = ["--model", "nosuchprovider:model-x", "--deps", '"ada"']
    started = cli("run", "whoami", "Hi", *bad_model, "--no-wait", *whoami)
    run_id = started.stdout.strip()

    text = cli("result", run_id, *whoami[:2])
    as_json = cli("result", run_id, "--json", *whoami[:2])

    assert text.returncode == 1, text.stdout + text.stderr
    assert f"Run {run_id} failed: cannot use model 'nosuchprovider:model-x'" in text.stdout
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1
    assert data["status"] == "failed" and "cannot use model" in data["error"]


@pytest.mark.runtime
def test_result_of_an_unknown_run_id_says_so(temporal_dev_server: Any) -> None:
    run_id = f"run-{uuid.uuid4()}"

    done = cli("result", run_id, *address(temporal_dev_server))

    assert done.returncode == 2
    assert f"error: no run '{run_id}' in namespace 'default'" in done.stderr
    assert "run --no-wait" in done.stderr


@pytest.mark.runtime
@pytest.mark.anyio
async def test_result_of_a_run_no_worker_takes_says_so_instead_of_waiting(
    temporal_dev_server: Any, temporal_client: Client
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    handle = await temporal_client.start_workflow(
        WORKFLOW_NAME, RunInput(prompt="Hi"), id=f"queued-{uuid.uuid4()}", task_queue=queue
    )
    try:
        at_once = cli("result", handle.id, "--no-wait", *address(temporal_dev_server))
        as_json = cli("result", handle.id, "--no-wait", "--json", *address(temporal_dev_server))
        waiting = cli("result", handle.id, "--worker-timeout", "1", *address(temporal_dev_server), timeout=60)
    finally:
        await handle.terminate("test over")

    assert at_once.returncode == 3
    assert f"run {handle.id} is still running (task queue '{queue}'" in at_once.stderr
    assert json.loads(as_json.stdout)["status"] == "running"
    assert waiting.returncode == 3
    assert f"no worker polls task queue '{queue}' (waited 1s)" in waiting.stderr


# --- manifests and agent modules that cannot work: a message, at once, before any server starts ---------


def test_an_entrypoint_of_the_wrong_shape_is_refused_with_the_shape_and_an_example(tmp_path: Path) -> None:
    manifest = code_manifest(tmp_path, "cli_agents/whoami.py")

    done = cli("dev", str(manifest), "--prompt", "Hi", env={ENV_STATE_DIR: str(tmp_path / "state")})

    assert done.returncode == 2
    expected = "spec.agent.entrypoint: 'cli_agents/whoami.py' is not an import path: write `package.module:"
    assert expected + "attribute`" in done.stderr
    assert "e.g. 'my_agents.support:agent'" in done.stderr
    assert "should match pattern" not in done.stderr


def test_an_agent_module_that_raises_on_import_names_the_error_and_line_before_any_server_starts(
    tmp_path: Path,
) -> None:
    manifest = code_manifest(tmp_path, "raises_on_import:agent")
    state = tmp_path / "state"
    source = HERE / "raises_on_import.py"
    line = (
        source.read_text().splitlines().index('API_URL = os.environ["SUPPORT_API_URL_THAT_IS_NOT_SET"]') + 1
    )

    done = cli("dev", str(manifest), "--prompt", "Hi", env={**PYTHONPATH, ENV_STATE_DIR: str(state)})

    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "importing module 'raises_on_import' raised KeyError: 'SUPPORT_API_URL_THAT_IS_NOT_SET' "
        f"(at {source}:{line})"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert not (state / "temporal.log").exists(), "a dev server was started for an agent that cannot load"


def test_an_entrypoint_that_cannot_be_imported_fails_before_any_server_starts(tmp_path: Path) -> None:
    manifest = code_manifest(tmp_path, "no_such_module_for_dev:agent")
    state = tmp_path / "state"

    ports = ["--port", str(free_port()), "--ui-port", str(free_port())]

    done = cli("dev", str(manifest), *ports, env={ENV_STATE_DIR: str(state)}, timeout=60)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot import module 'no_such_module_for_dev'" in done.stderr
    assert not (state / "temporal.log").exists(), "a dev server was started for an agent that cannot load"
