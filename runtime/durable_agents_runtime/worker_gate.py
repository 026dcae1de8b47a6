"""The replay gate inside a new version's workers, before they poll (the operator's rollouts).

The operator renders `versioning.replayHistories` into a version's config when its runs would move to new
code (`AutoUpgrade`). Each worker of that version then replays the most recent runs of its task queue
with its own code (`replay_gate.check`) before it starts polling, so nothing it serves can interfere, and
records the verdict on its version in Temporal (`versioning.record_gate`) once the version registered.
The operator reads the verdict (`versioning.describe_version`) and never makes a refused version
current. A worker whose version already carries a verdict (a restarted pod) does not replay again.

Why in the workers and not a Job: the replay needs the new version's image and code, which its workers
have; the verdict travels through Temporal, which the operator reads anyway, so the gate needs no extra
pods, RBAC or log reading.
"""

from __future__ import annotations

import logging

from temporalio.client import Client

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime import versioning
from durable_agents_runtime.errors import ReplayGateError

__all__ = ["record", "replay_before_polling"]

log = logging.getLogger("durable_agents.worker")


async def replay_before_polling(client: Client, config: RuntimeConfig) -> versioning.GateVerdict | None:
    """The verdict to record for this worker's version; None when it has no gate or already has one.

    Raises `ReplayGateError` when the recent runs cannot be read (the check did not run)."""
    spec = config.versioning
    served = versioning.worker_version(config)
    if spec is None or served is None or spec.replay_histories == 0:
        return None
    try:
        known = await versioning.describe_version(client, served)
    except versioning.VersioningError:
        known = None  # unreadable: replaying again costs seconds, skipping the gate could cost runs
    if known is not None and known.gate is not None:
        return None
    from durable_agents_runtime.replay_gate import check

    try:
        report = await check(client, config, histories=spec.replay_histories)
    except ReplayGateError as exc:
        # The check could not run, which is neither a pass nor a refusal: the worker exits and its pod
        # restarts (with back-off) to try again; the version never becomes ready meanwhile.
        raise ReplayGateError(
            f"the replay gate of version {served.build_id} could not run, so this worker does not start: "
            f"{exc}"
        ) from None
    log.info("%s", report.summary())
    if report.ok:
        return versioning.GateVerdict(passed=True, summary=report.summary())
    first = report.mismatches[0]
    return versioning.GateVerdict(
        passed=False, summary=report.summary(), workflow_id=first.workflow_id, command=first.command
    )


async def record(client: Client, config: RuntimeConfig, verdict: versioning.GateVerdict) -> None:
    """Record `verdict` on this worker's version (logged, never raised: the operator then keeps waiting
    with the version's gate `Pending`, and says so)."""
    served = versioning.worker_version(config)
    if served is None:
        return
    try:
        await versioning.record_gate(client, served, verdict)
    except versioning.VersioningError as exc:
        log.warning("could not record the replay gate's verdict: %s", exc)
