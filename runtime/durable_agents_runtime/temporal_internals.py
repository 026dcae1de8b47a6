"""The temporalio internals the runtime relies on, in one place, each with the public API it stands in for.

tests/unit/testtemporal_internals.py pins them to the installed temporalio, so an upgrade that moves one fails
there, loudly, instead of in a worker.
"""

from __future__ import annotations

from collections.abc import Callable

import temporalio.bridge.proto
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.worker import Worker

__all__ = ["heartbeat_sender", "replayer_task_queue", "stream_offset"]


def heartbeat_sender(worker: Worker) -> Callable[[bytes], None]:
    """A function recording a detail-less heartbeat for the activity with a task token, callable from any
    thread.

    Public API: `temporalio.activity.heartbeat()`, which must be called on the worker's event loop and so
    cannot be sent while that loop is blocked — the case `ProcessHeartbeats` exists for. The call goes
    straight to the worker's core (thread-safe, as the SDK's own heartbeats reach it from loop tasks).
    """
    bridge = worker._bridge_worker  # pyright: ignore[reportPrivateUsage]

    def send(task_token: bytes) -> None:
        bridge.record_activity_heartbeat(
            temporalio.bridge.proto.ActivityHeartbeat(task_token=task_token)  # type: ignore[attr-defined]
        )

    return send


def replayer_task_queue(build_id: str) -> str:
    """The task queue a workflow replayed by `Replayer(build_id=build_id)` sees in `workflow.info()`.

    Public API: none; the replayer runs histories on a queue of its own, and the workflow finds its agent by
    task queue, so the replay gate registers the agent under this name.
    """
    return f"replay-{build_id}"


def stream_offset(stream: WorkflowStream) -> int:
    """The global offset the next item published on `stream` gets (base offset + log length), from
    workflow code.

    Public API: none from workflow code; the stream answers the same number to clients as its offset
    query handler, which is this method.
    """
    return stream._on_offset()  # pyright: ignore[reportPrivateUsage]
