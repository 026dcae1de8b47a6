"""A long conversation: 1,000 turns of one session, one after another, against our worker.

The agent is the benchmark agent (`bench/_agents.py`), so each turn is a model request, a tool call and a
model request, with the whole conversation so far sent to the model. The session continues as new with
the default settings (after 2,000 history events, or when Temporal suggests it); its history is bounded
by `keepLast` at `maxBytes: 40000`, `keepLast: 40` (the last 10 turns), about the size of the history at
turn 10. A turn costs in proportion to the history it carries (every model request's activity input is
the whole history), so this compares an old session with a young one carrying as much.

Measured: the p50 latency (update sent -> reply) of the last 20 turns against turns 1-20 of a young
session (the baseline), the two alternating turn by turn so both see the same load on a shared machine
(the old session's own turns 1-20 are in the note), how many times the session continued as new, and
the largest payload it carried across a continue-as-new (read from each run's history), with the history
size at the end.

Run: `.venv/bin/python -m bench.session_length [--quick]` (`--quick`: 300 turns).
"""

from __future__ import annotations

import time
import uuid

from temporalio.client import Client

from bench._cli import run_cli
from bench._harness import connect, dev_server, wait_for_poller, within, workdir
from bench._stats import Row, ratio, summarize
from bench._targets import ours_available, ours_target

__all__ = ["GOAL_RATIO", "run"]

GOAL_RATIO = 1.2
_WINDOW = 20
"""Turns per latency sample: turns 1-20 ("turn 10") and the last 20 ("turn 1,000")."""


async def _carried_payloads(client: Client, workflow_id: str) -> list[int]:
    """Bytes of the input each run of the session handed to the next one (continue-as-new)."""
    sizes: list[int] = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        for event in history.events:
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                payloads = event.workflow_execution_continued_as_new_event_attributes.input.payloads
                sizes.append(sum(p.ByteSize() for p in payloads))
    return sizes


async def run(quick: bool = False) -> list[Row]:
    """One session of 1,000 turns (300 with `quick`); returns the table rows."""
    from durable_agents_api.contract import SessionMessage, session_workflow_id
    from durable_agents_runtime.session_client import read_info, send_message

    turns = 300 if quick else 1000
    unavailable = ours_available()
    if unavailable is not None:
        return [Row("session: turn latency", "not measured", "", None, "", None, unavailable)]
    target = ours_target(overrides={"sessions": {"history": {"maxBytes": 40_000, "keepLast": 40}}})
    latencies: list[float] = []
    fresh: list[float] = []
    with workdir("bench-session-") as work, dev_server(work) as server:
        client = await connect(server.address)
        queue = f"bench-session-{uuid.uuid4().hex[:8]}"
        worker = target.worker(server.address, queue, work).start()
        try:
            await wait_for_poller(client, queue, worker.pid, timeout=120, worker=worker)
            session = "bench"
            common = {"agent": "bench_ours", "task_queue": queue, "session_id": session}
            young = {**common, "session_id": "young"}

            async def timed(where: dict[str, str], turn: int) -> float:
                began = time.monotonic()
                reply = await within(
                    send_message(client, message=SessionMessage(prompt=f"turn {turn}"), **where),
                    120,
                    worker,
                    f"turn {turn} of session {where['session_id']}",
                )
                assert reply.turn == turn, f"turn {turn} answered as turn {reply.turn}"
                return time.monotonic() - began

            for turn in range(1, turns - _WINDOW + 1):
                latencies.append(await timed(common, turn))
            # The last turns of the old session alternate with the first turns of a young one, so both
            # samples see the same load on this shared machine.
            for index in range(1, _WINDOW + 1):
                latencies.append(await timed(common, turns - _WINDOW + index))
                fresh.append(await timed(young, index))
            info = await read_info(client, **common)
            carried = await _carried_payloads(client, session_workflow_id(queue, session))
        finally:
            worker.stop()
    first = summarize(latencies[:_WINDOW])
    young = summarize(fresh)
    old = summarize(latencies[-_WINDOW:])
    largest = max(carried, default=0)
    return [
        Row(
            benchmark=f"session: p50 turn latency at turn {turns} vs turn 10",
            ours=old.format("ms", digits=0, scale=1000),
            baseline=young.format("ms", digits=0, scale=1000),
            ratio=ratio(old.median, young.median),
            goal=f"<= {GOAL_RATIO:g}x",
            met=old.median <= GOAL_RATIO * young.median,
            note=f"turns {turns - _WINDOW + 1}-{turns} of the old session alternating with turns 1-{_WINDOW} "
            f"of a young one; the old session's own turns 1-{_WINDOW}: "
            f"{first.format('ms', digits=0, scale=1000)}; all {turns}: "
            f"{summarize(latencies).format('ms', digits=0, scale=1000)}",
        ),
        Row(
            benchmark=f"session: continue-as-news in {turns} turns",
            ours=str(info.continued_as_new),
            baseline="",
            ratio=None,
            goal="> 0 (history stays bounded)",
            met=info.continued_as_new > 0,
            note=f"{len(carried)} read from the histories",
        ),
        Row(
            benchmark="session: largest payload carried across continue-as-new",
            ours=f"{largest / 1000:.0f} kB",
            baseline="",
            ratio=None,
            goal="< 2000 kB (Temporal's payload limit)",
            met=largest < 2_000_000,
            note=f"history at the end: {info.history_messages} messages, {info.history_bytes / 1000:.0f} kB, "
            f"{info.trimmed_turns} turns trimmed",
        ),
    ]


def main() -> None:
    """Command line: print the Markdown table and the machine's load."""
    run_cli(__doc__, run, quick_help="300 turns instead of 1,000")


if __name__ == "__main__":
    main()
