"""The replay gate on the real dev server: recent runs replayed against a changed config.

Runs are made by a real worker; the gate replays their histories (one completed, one still inside the
slow tool) with temporalio's `Replayer`, in this process and through `durable-agents replay`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from slow_tools import ENV_LOG, ENV_SECONDS, wait_for_entry
from temporalio.client import Client
from test_dev import cli
from versioned_agents import MODEL, versioned_config

from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.replay_gate import check
from durable_agents_runtime.versioning import promote, worker_version

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HERE = Path(__file__).resolve().parent

MANIFEST = """\
apiVersion: durable-agents.dev/v1alpha1
kind: DurableAgent
metadata:
  name: gated
spec:
  agent:
    name: gated
    model: "{model}"
    instructions: "{instructions}"
{toolsets}  temporal:
    taskQueue: {task_queue}
"""
TOOLSETS = "    toolsets:\n      - id: slow\n        entrypoint: slow_tools:toolset\n"


def _manifest(tmp_path: Path, name: str, task_queue: str, instructions: str, *, toolsets: bool) -> Path:
    path = tmp_path / name
    path.write_text(
        MANIFEST.format(
            model=MODEL,
            instructions=instructions,
            toolsets=TOOLSETS if toolsets else "",
            task_queue=task_queue,
        )
    )
    return path


async def test_removing_a_tool_old_runs_used_is_refused_naming_the_workflow_and_the_command(
    temporal_dev_server: Any, temporal_client: Client, start_worker: Any, tmp_path: Path
) -> None:
    v1 = versioned_config(temporal_dev_server, name="gated", task_queue=None, instructions="Be v1.")
    queue = v1.temporal.task_queue
    env = {
        ENV_LOG: str(tmp_path / "tools.log"),
        ENV_SECONDS: "0.2",
        "VERSIONED_MODEL_LOG": str(tmp_path / "model.log"),
        "PYTHONPATH": str(HERE),
    }
    worker = start_worker(v1, **env)
    version = worker_version(v1)
    assert version is not None
    await promote(temporal_client, version)
    done = await temporal_client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="done"),
        id=f"gated-done-{uuid.uuid4()}",
        task_queue=queue,
        result_type=RunOutput,
    )
    assert (await done.result()).output == "done: slow:x"
    # A run still inside its tool: its history ends at the scheduled tool call.
    worker.stop()
    env[ENV_SECONDS] = "120"
    worker = start_worker(v1, **env)
    running = await temporal_client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="running"),
        id=f"gated-running-{uuid.uuid4()}",
        task_queue=queue,
        result_type=RunOutput,
    )
    await wait_for_entry(tmp_path / "tools.log", ("start", "slow_step", worker.pid), timeout=30)

    try:
        same = await check(temporal_client, v1)
        reworded = await check(
            temporal_client,
            versioned_config(temporal_dev_server, name="gated", task_queue=queue, instructions="Be v2."),
        )
        without_tool = versioned_config(
            temporal_dev_server, name="gated", task_queue=queue, instructions="Be v1.", toolsets=False
        )
        refused = await check(temporal_client, without_tool)

        assert same.ok and set(same.replayed) == {done.id, running.id}, same.summary()
        # Instructions are model input, not a workflow command: old runs replay unchanged.
        assert reworded.ok, reworded.summary()
        assert not refused.ok
        assert {m.workflow_id for m in refused.mismatches} == {done.id, running.id}
        for mismatch in refused.mismatches:
            # The history scheduled the tool; without the toolset the agent asks the model again instead.
            assert mismatch.command == (
                "Activity type of scheduled event 'agent__gated__toolset__slow__call_tool' does not match "
                "activity type of activity command 'agent__gated__model_request'"
            ), mismatch.error
        assert f"First: workflow {refused.mismatches[0].workflow_id}" in refused.summary()

        v1_manifest = _manifest(tmp_path, "v1.yaml", queue, "Be v1.", toolsets=True)
        v2_manifest = _manifest(tmp_path, "v2.yaml", queue, "Be v1.", toolsets=False)
        cli_env = {"PYTHONPATH": str(HERE), **{k: v for k, v in env.items() if k != "PYTHONPATH"}}
        address = ["--address", temporal_dev_server.address]
        passed = cli("replay", str(v1_manifest), *address, env=cli_env)
        blocked = cli("replay", str(v1_manifest), "--manifest", str(v2_manifest), *address, env=cli_env)
        one = cli(
            "replay",
            str(v1_manifest),
            "--manifest",
            str(v2_manifest),
            "--histories",
            "1",
            *address,
            env=cli_env,
        )

        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "replay gate passed: 2 recent run(s)" in passed.stdout
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        assert "replay gate refused the change: 2 of 2" in blocked.stdout
        for mismatch in refused.mismatches:
            assert mismatch.describe() in blocked.stdout, blocked.stdout
        assert "refused the change: 1 of 1" in one.stdout, one.stdout
        assert "Traceback" not in blocked.stderr
        assert "WARN" not in blocked.stdout + blocked.stderr, "the SDK's per-task warnings stay out"
    finally:
        await running.terminate("test over")
