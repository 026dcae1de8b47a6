"""Worker Deployment Versioning: which version a worker is, making a version current, and its open runs.

A versioned worker registers as version `<deployment name>:<build id>` of a Temporal Worker Deployment.
The deployment name defaults to the task queue (one deployment per agent; `.` written as `/`); the build id
is derived from everything that decides what the workflow does (the agent, activity and worker settings,
the model provider, the versioning behaviour, the image and the runtime release), so any such change is a
new version, and an unchanged config on a restarted worker is the same version. With the default `Pinned`
behaviour a run finishes on the version it started on: a change never reaches runs in flight, the old
version drains them and a new run starts on whatever version is current.

Who makes a version current: the operator (its rollout strategy), `durable-agents dev` (at once), or
whoever runs workers by hand (`promote`, or `temporal worker deployment set-current-version`). Until
some version is current, new runs of a versioned-only task queue wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from temporalio.api.deployment.v1 import WorkerDeploymentVersion as ProtoVersion
from temporalio.api.workflowservice.v1 import (
    DeleteWorkerDeploymentVersionRequest,
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
    UpdateWorkerDeploymentVersionMetadataRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.converter import PayloadConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime.errors import VersioningError

__all__ = [
    "GATE_METADATA_KEY",
    "IDENTITY",
    "DeploymentState",
    "GateVerdict",
    "VersionInfo",
    "VersionState",
    "VersioningError",
    "build_id",
    "delete_version",
    "deployment_config",
    "deployment_name",
    "describe_deployment",
    "describe_version",
    "pinned_open_runs",
    "promote",
    "record_gate",
    "set_ramping",
    "stop_ramping",
    "worker_version",
]

IDENTITY = "durable-agents"
"""The identity recorded on routing changes made by this project (the operator, `dev`)."""
BUILD_ID_LENGTH = 16
"""Hex digits of the config hash kept in a build id: short enough for Kubernetes object names."""

_BEHAVIORS = {"Pinned": VersioningBehavior.PINNED, "AutoUpgrade": VersioningBehavior.AUTO_UPGRADE}


def _release() -> str:
    try:
        return version("durable-agents")
    except PackageNotFoundError:
        return "unknown"


def deployment_name(config: RuntimeConfig) -> str:
    """The Worker Deployment a worker for `config` belongs to: `versioning.deploymentName`, else the task
    queue with each `.` written as `/` (the server reads a dot as the name/build id separator)."""
    spec = config.versioning
    return (spec.deployment_name if spec is not None else None) or config.temporal.task_queue.replace(
        ".", "/"
    )


def build_id(config: RuntimeConfig, image: str | None = None) -> str:
    """The build id of `config` (served from `image`): `versioning.buildId`, else a hash of what decides
    the workflow's behaviour. The Temporal connection and observability settings are left out: moving a
    worker or changing its tracing is not a new version."""
    if config.versioning is not None and config.versioning.build_id:
        return config.versioning.build_id
    behavior = config.versioning.behavior if config.versioning is not None else "Pinned"
    material = {
        "agent": config.agent.to_api(),
        "activities": config.activities.to_api(),
        "worker": config.worker.to_api(),
        "model": config.model.to_api(),
        "behavior": behavior,
        "image": image or config.agent.image,
        "release": _release(),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest[:BUILD_ID_LENGTH]


def worker_version(config: RuntimeConfig, image: str | None = None) -> WorkerDeploymentVersion | None:
    """The version a worker for `config` registers as; None for an unversioned config."""
    if config.versioning is None:
        return None
    return WorkerDeploymentVersion(deployment_name(config), build_id(config, image))


def deployment_config(config: RuntimeConfig, image: str | None = None) -> WorkerDeploymentConfig | None:
    """The `Worker(deployment_config=...)` for `config`; None for an unversioned config."""
    worker_ver = worker_version(config, image)
    if worker_ver is None or config.versioning is None:
        return None
    return WorkerDeploymentConfig(
        version=worker_ver,
        use_worker_versioning=True,
        default_versioning_behavior=_BEHAVIORS[config.versioning.behavior],
    )


@dataclass(frozen=True)
class VersionState:
    """One version of a Worker Deployment as the server reports it."""

    build_id: str
    status: str
    """`current`, `ramping`, `draining`, `drained`, `inactive` or `created` (the server's word)."""


@dataclass(frozen=True)
class DeploymentState:
    """A Worker Deployment's routing: the current and ramping build ids and every version it knows."""

    current: str | None
    ramping: str | None
    ramp_percentage: float
    versions: tuple[VersionState, ...]
    propagating: bool = False
    """The last routing change has not reached every task queue yet: for a moment, a new run may
    still start on the version that was current before."""


def _status_word(status: int) -> str:
    from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus

    name = WorkerDeploymentVersionStatus.Name(status)  # pyright: ignore[reportArgumentType]
    return name.removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_").lower()


async def describe_deployment(client: Client, name: str) -> DeploymentState | None:
    """The routing and versions of the Worker Deployment `name`; None if no worker registered it yet."""
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise VersioningError(f"cannot read Worker Deployment {name!r}: {exc.message}") from None
    info = response.worker_deployment_info
    routing = info.routing_config
    current = routing.current_deployment_version.build_id or None
    ramping = routing.ramping_deployment_version.build_id or None
    versions = tuple(
        VersionState(summary.deployment_version.build_id, _status_word(summary.status))
        for summary in info.version_summaries
    )
    propagating = info.routing_config_update_state == 1  # ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS
    return DeploymentState(current, ramping, routing.ramping_version_percentage, versions, propagating)


def _version_not_registered(exc: RPCError) -> bool:
    # Until the version's first worker polls, the server answers NotFound ("build ID ... not found in
    # Worker Deployment") or FailedPrecondition (no pollers on the version yet).
    return exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


async def _until_registered(what: str, target: WorkerDeploymentVersion, call: Any, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            await call()
            return
        except RPCError as exc:
            if not _version_not_registered(exc):
                raise VersioningError(
                    f"cannot make build {target.build_id} of Worker Deployment {target.deployment_name!r} "
                    f"{what}: {exc.message}"
                ) from None
            if time.monotonic() + delay > deadline:
                raise VersioningError(
                    f"build {target.build_id} of Worker Deployment {target.deployment_name!r} did not "
                    f"register within {timeout:g}s ({exc.message}): start a worker for it, or check it "
                    "connects to the same Temporal namespace"
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def promote(
    client: Client, target: WorkerDeploymentVersion, *, identity: str = IDENTITY, timeout: float = 30.0
) -> None:
    """Make `target` the current version of its deployment, waiting up to `timeout` seconds for its first
    worker to register it. New runs start on it; pinned runs stay where they are."""

    async def call() -> None:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace,
                deployment_name=target.deployment_name,
                build_id=target.build_id,
                identity=identity,
            )
        )

    await _until_registered("current", target, call, timeout=timeout)


async def set_ramping(
    client: Client,
    target: WorkerDeploymentVersion,
    percentage: float,
    *,
    identity: str = IDENTITY,
    timeout: float = 30.0,
) -> None:
    """Send `percentage` (0-100) of new runs to `target` while the current version takes the rest."""

    async def call() -> None:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace,
                deployment_name=target.deployment_name,
                build_id=target.build_id,
                percentage=percentage,
                identity=identity,
            )
        )

    await _until_registered("ramping", target, call, timeout=timeout)


async def stop_ramping(client: Client, deployment: str, *, identity: str = IDENTITY) -> None:
    """Send no new runs to a ramping version any more (the current version takes them all)."""
    try:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace, deployment_name=deployment, percentage=0, identity=identity
            )
        )
    except RPCError as exc:
        raise VersioningError(
            f"cannot stop the ramp of Worker Deployment {deployment!r}: {exc.message}"
        ) from None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def pinned_open_runs(client: Client, target: WorkerDeploymentVersion) -> int:
    """Runs still open on `target` (including runs waiting days for an approval).

    Read from visibility (`TemporalWorkerDeploymentVersion`), which sees a new or closed run within about a
    second; the server's own drainage status is refreshed only every few minutes.
    """
    version_value = f"{target.deployment_name}:{target.build_id}"
    query = f"TemporalWorkerDeploymentVersion='{_quote(version_value)}' AND ExecutionStatus='Running'"
    return (await client.count_workflows(query)).count


GATE_METADATA_KEY = "durable-agents.replay-gate"
"""The version metadata entry where a version's workers record their replay gate's verdict."""


@dataclass(frozen=True)
class GateVerdict:
    """What a version's replay gate found, as its workers record it on the version in Temporal."""

    passed: bool
    summary: str
    workflow_id: str | None = None
    """The first run that did not replay (refused only)."""
    command: str | None = None
    """Its first mismatching command (refused only)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary,
            "workflowId": self.workflow_id,
            "command": self.command,
        }

    @classmethod
    def from_json(cls, data: Any) -> GateVerdict | None:
        if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
            return None
        return cls(
            passed=data["passed"],
            summary=str(data.get("summary") or ""),
            workflow_id=data.get("workflowId"),
            command=data.get("command"),
        )


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as the server describes it."""

    build_id: str
    gate: GateVerdict | None
    """Its replay gate's verdict; None when none was recorded (no gate, or it has not finished)."""
    last_current_time: datetime | None
    """When it last stopped being current (None: never was, or it still is)."""
    current_since: datetime | None
    ramping_since: datetime | None
    was_current: bool
    """It took new runs before (current or ramping) and no longer does: the server tracks its drainage
    (the dev server 1.32 sets no `last_current_time`, but does track drainage)."""


def _proto_version(target: WorkerDeploymentVersion) -> ProtoVersion:
    return ProtoVersion(deployment_name=target.deployment_name, build_id=target.build_id)


def _time(value: Any) -> datetime | None:
    if not value.seconds and not value.nanos:
        return None
    return value.ToDatetime(tzinfo=UTC)


async def describe_version(client: Client, target: WorkerDeploymentVersion) -> VersionInfo | None:
    """What the server knows of `target`; None until a worker of it has polled."""
    try:
        response = await client.workflow_service.describe_worker_deployment_version(
            DescribeWorkerDeploymentVersionRequest(
                namespace=client.namespace, deployment_version=_proto_version(target)
            )
        )
    except RPCError as exc:
        if _version_not_registered(exc):
            return None
        raise VersioningError(
            f"cannot read version {target.build_id} of Worker Deployment {target.deployment_name!r}: "
            f"{exc.message}"
        ) from None
    info = response.worker_deployment_version_info
    verdict = None
    entry = info.metadata.entries.get(GATE_METADATA_KEY)
    if entry is not None:
        try:
            verdict = GateVerdict.from_json(PayloadConverter.default.from_payloads([entry])[0])
        except Exception:  # someone else's value under our key: treat it as no verdict
            verdict = None
    return VersionInfo(
        build_id=target.build_id,
        gate=verdict,
        last_current_time=_time(info.last_current_time),
        current_since=_time(info.current_since_time),
        ramping_since=_time(info.ramping_since_time),
        was_current=info.last_current_time.seconds > 0 or info.drainage_info.status != 0,
    )


async def record_gate(
    client: Client,
    target: WorkerDeploymentVersion,
    verdict: GateVerdict,
    *,
    identity: str = IDENTITY,
    timeout: float = 60.0,
) -> None:
    """Record `verdict` on `target`'s metadata, waiting up to `timeout` seconds for it to register."""
    payload = PayloadConverter.default.to_payloads([verdict.to_json()])[0]

    async def call() -> None:
        await client.workflow_service.update_worker_deployment_version_metadata(
            UpdateWorkerDeploymentVersionMetadataRequest(
                namespace=client.namespace,
                deployment_version=_proto_version(target),
                upsert_entries={GATE_METADATA_KEY: payload},
                identity=identity,
            )
        )

    await _until_registered("record its replay gate", target, call, timeout=timeout)


async def delete_version(
    client: Client, target: WorkerDeploymentVersion, *, identity: str = IDENTITY
) -> None:
    """Delete `target` from its Worker Deployment (the server keeps a limited number of versions).

    The caller has checked that no open run is on it, so the server's own drainage status (refreshed only
    every few minutes) is not waited for; the server still refuses while it sees the version's pollers, or
    while the version is current or ramping. A version already gone counts as deleted."""
    try:
        await client.workflow_service.delete_worker_deployment_version(
            DeleteWorkerDeploymentVersionRequest(
                namespace=client.namespace,
                deployment_version=_proto_version(target),
                skip_drainage=True,
                identity=identity,
            )
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise VersioningError(
            f"cannot delete version {target.build_id} of Worker Deployment {target.deployment_name!r}: "
            f"{exc.message}"
        ) from None
