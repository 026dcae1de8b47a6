"""The temporalio internals `temporal_internals` relies on are where it expects them in the installed SDK.

If this fails after a temporalio upgrade, `durable_agents_runtime.temporal_internals` needs the new spelling:
the worker's own heartbeats (`durable_agents_runtime.heartbeats`) and the replay gate
(`durable_agents_runtime.replay_gate`) depend on it.
"""

from __future__ import annotations

import inspect

import temporalio.bridge.proto
import temporalio.bridge.worker
from temporalio.worker import Replayer, Worker

from durable_agents_runtime.temporal_internals import replayer_task_queue


def test_the_worker_keeps_its_core_worker_where_heartbeats_are_sent_through() -> None:
    source = inspect.getsource(Worker)

    assert "self._bridge_worker = temporalio.bridge.worker.Worker.create(" in source


def test_the_core_worker_records_heartbeats_from_an_activity_heartbeat_message() -> None:
    record = temporalio.bridge.worker.Worker.record_activity_heartbeat
    heartbeat = temporalio.bridge.proto.ActivityHeartbeat(task_token=b"token")  # type: ignore[attr-defined]

    assert list(inspect.signature(record).parameters) == ["self", "comp"]
    assert heartbeat.task_token == b"token"
    assert heartbeat.SerializeToString()


def test_the_replayer_runs_histories_on_a_task_queue_named_after_its_build_id() -> None:
    source = inspect.getsource(Replayer)

    assert "task_queue = f\"replay-{self._config.get('build_id')}\"" in source
    assert replayer_task_queue("gate") == "replay-gate"


def test_a_workflow_stream_reports_its_next_offset_from_its_offset_query_handler() -> None:
    from temporalio.contrib.workflow_streams import WorkflowStream

    source = inspect.getsource(WorkflowStream._on_offset)  # pyright: ignore[reportPrivateUsage]

    assert "return self._base_offset + len(self._log)" in source
