"""Observations → status conditions, and which conditions changed (for Events). Pure: `now` is passed in.

DurableAgent conditions follow kstatus: `Ready` is the summary a user waits on; `Progressing` and
`Degraded` are "abnormal-true" (True means attention: work under way, or something is wrong), so a
healthy, settled agent reads Ready=True, Progressing=False, Degraded=False.

- `Ready`: True when the workers that should poll are polling, or none should (AllWorkersPolling,
  SomeWorkersPolling, Paused, ScaledToZero). False/Unknown while not serving runs (RollingOut,
  NoActivePollers, TemporalUnreachable, InvalidSpec, HealthNotChecked, or a blocked reason such as
  TemporalConnectionNotFound, SecretNotFound, ObjectConflict).
- `Progressing` (abnormal-true): True while the worker Deployment rolls out or scales (RollingOut);
  False once settled (RolloutComplete, Paused, Autoscaling: settled at the count the backlog set) or
  when it cannot start (InvalidSpec, blocked reasons).
- `Degraded` (abnormal-true): True when a human is needed (InvalidSpec, TemporalUnreachable,
  NoActivePollers, RolloutStalled, blocked reasons); False otherwise (AsExpected).
- `TemporalReachable`: True when the operator's last read of the task queue worked (Connected), False
  when it failed (TemporalUnreachable), Unknown before the first read (NotChecked).

`lastTransitionTime` changes only when a condition's status changes; a new reason or message under the
same status keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from durable_agents_api.resources import Condition

__all__ = [
    "DEGRADED",
    "PROGRESSING",
    "REACHABLE",
    "READY",
    "TEMPORAL_REACHABLE",
    "AgentObservation",
    "ConditionsUpdate",
    "DeploymentObservation",
    "HealthObservation",
    "Reason",
    "Transition",
    "agent_conditions",
    "connection_conditions",
    "merge_conditions",
]

READY = "Ready"
"""Summary condition: True when the agent serves runs as its spec asks (kstatus "Current")."""
PROGRESSING = "Progressing"
"""Abnormal-true: the worker Deployment is rolling out or scaling."""
DEGRADED = "Degraded"
"""Abnormal-true: the agent cannot do its work without a human (bad spec, no Temporal, no pollers)."""
TEMPORAL_REACHABLE = "TemporalReachable"
"""Whether the operator's last read of the agent's Temporal task queue succeeded."""
REACHABLE = "Reachable"
"""TemporalConnection: whether the operator could reach that Temporal namespace."""


class Reason:
    """Condition reasons (one CamelCase word each). Part of the API: tools match on them."""

    ALL_WORKERS_POLLING = "AllWorkersPolling"
    """Every desired worker polled the task queue recently."""
    SOME_WORKERS_POLLING = "SomeWorkersPolling"
    """Fewer workers polled recently than are desired, but at least one: runs progress."""
    PAUSED = "Paused"
    """`spec.paused`: workers scaled to zero on purpose; runs wait in the backlog."""
    SCALED_TO_ZERO = "ScaledToZero"
    """`spec.replicas` is 0."""
    ROLLING_OUT = "RollingOut"
    """The worker Deployment does not yet have the desired number of updated, ready pods."""
    ROLLOUT_COMPLETE = "RolloutComplete"
    """The worker Deployment matches the spec."""
    AUTOSCALING = "Autoscaling"
    """The worker Deployment is settled at the count `spec.autoscaling` set; `spec.replicas` is ignored."""
    ROLLOUT_STALLED = "RolloutStalled"
    """The Deployment exceeded its progress deadline (image pull errors, crash loops, no capacity)."""
    NO_ACTIVE_POLLERS = "NoActivePollers"
    """Worker pods are ready but none polled the task queue recently (wrong address or namespace?)."""
    TEMPORAL_UNREACHABLE = "TemporalUnreachable"
    """The operator could not read the task queue from Temporal."""
    CONNECTED = "Connected"
    """The operator read the task queue (or namespace) from Temporal."""
    NOT_CHECKED = "NotChecked"
    """Temporal has not been read yet."""
    HEALTH_NOT_CHECKED = "HealthNotChecked"
    """The workers are rolled out but Temporal has not been read yet."""
    INVALID_SPEC = "InvalidSpec"
    """The spec cannot work as written; the message names the field to change."""
    AS_EXPECTED = "AsExpected"
    """Nothing is wrong."""
    TEMPORAL_CONNECTION_NOT_FOUND = "TemporalConnectionNotFound"
    """`spec.temporal.connectionRef` names a TemporalConnection that does not exist (yet)."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """A Secret the TemporalConnection refers to does not exist (yet)."""
    OBJECT_CONFLICT = "ObjectConflict"
    """An object the agent needs exists and belongs to someone else."""


# Reasons under which a condition's status is bad news (a Warning event), by condition type.
_BAD = {
    (READY, "False"),
    (READY, "Unknown"),
    (DEGRADED, "True"),
    (TEMPORAL_REACHABLE, "False"),
    (REACHABLE, "False"),
}
# Unsurprising states: no Event when a condition first appears in them.
_EXPECTED_ON_CREATE = {Reason.ROLLING_OUT, Reason.NOT_CHECKED, Reason.HEALTH_NOT_CHECKED}


class HealthObservation(Protocol):
    """What the operator needs from one health read of a task queue (`durable_agents_runtime.health`)."""

    @property
    def reachable(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def kept_over(self) -> str | None:
        """Set when this is an earlier reading kept over a failed read: what that read said."""
        ...

    @property
    def workers(self) -> int: ...


@dataclass(frozen=True)
class DeploymentObservation:
    """The worker Deployment's rollout state, read from its status."""

    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    stalled_message: str | None = None

    @classmethod
    def from_manifest(cls, deployment: Mapping[str, Any]) -> DeploymentObservation:
        """Read a live Deployment object."""
        status = deployment.get("status") or {}
        stalled = next(
            (
                c.get("message") or "progress deadline exceeded"
                for c in status.get("conditions") or []
                if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
            ),
            None,
        )
        return cls(
            generation=deployment.get("metadata", {}).get("generation") or 0,
            observed_generation=status.get("observedGeneration") or 0,
            replicas=status.get("replicas") or 0,
            updated_replicas=status.get("updatedReplicas") or 0,
            ready_replicas=status.get("readyReplicas") or 0,
            available_replicas=status.get("availableReplicas") or 0,
            stalled_message=stalled,
        )

    def rolled_out(self, desired: int) -> bool:
        """Whether exactly `desired` updated pods run and are available (old ones gone)."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == desired
            and self.available_replicas == desired
            and self.replicas == desired
        )


@dataclass(frozen=True)
class AgentObservation:
    """Everything the DurableAgent's conditions depend on."""

    generation: int | None
    desired_replicas: int
    paused: bool = False
    autoscaling: bool = False
    """`spec.autoscaling.enabled`: `desired_replicas` comes from the backlog, not `spec.replicas`."""
    task_queue: str = ""
    spec_error: str | None = None
    blocked: tuple[str, str] | None = None
    """(reason, message) when a dependency is missing or an object conflicts."""
    deployment: DeploymentObservation | None = None
    health: HealthObservation | None = None
    live_within: float = 75.0


@dataclass(frozen=True)
class Transition:
    """A condition whose status or reason changed; becomes a Kubernetes Event."""

    type: str
    status: str
    reason: str
    message: str
    previous_status: str | None

    @property
    def warning(self) -> bool:
        """Whether the new state is bad news (Warning event) rather than good or neutral (Normal)."""
        return (self.type, self.status) in _BAD

    @property
    def event_message(self) -> str:
        """The Event text: which condition, its new status, and why."""
        text = f"{self.type} is now {self.status}"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class ConditionsUpdate:
    """The conditions to write and the transitions to announce."""

    conditions: list[Condition]
    transitions: list[Transition]

    def to_api(self) -> list[dict[str, Any]]:
        """The conditions as they go into `status.conditions`."""
        return [c.to_api() for c in self.conditions]


def _cond(type_: str, status: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=None,
        observed_generation=None,
    )


def agent_conditions(
    obs: AgentObservation, previous: Iterable[Condition | Mapping[str, Any]], now: datetime
) -> ConditionsUpdate:
    """The DurableAgent's four conditions for this observation, merged over the previous ones."""
    return merge_conditions(previous, _agent_conditions(obs), now=now, generation=obs.generation)


def _agent_conditions(obs: AgentObservation) -> list[Condition]:
    reachable = _reachable(
        obs.health, subject=f"task queue {obs.task_queue}" if obs.task_queue else "Temporal"
    )
    if obs.spec_error is not None:
        message = obs.spec_error
        return [
            _cond(READY, "False", Reason.INVALID_SPEC, message),
            _cond(PROGRESSING, "False", Reason.INVALID_SPEC, "waiting for a valid spec"),
            _cond(DEGRADED, "True", Reason.INVALID_SPEC, message),
            reachable,
        ]
    if obs.blocked is not None:
        reason, message = obs.blocked
        return [
            _cond(READY, "False", reason, message),
            _cond(PROGRESSING, "False", reason, message),
            _cond(DEGRADED, "True", reason, message),
            reachable,
        ]

    desired = obs.desired_replicas
    deployment = obs.deployment
    rolled_out = deployment is not None and deployment.rolled_out(desired)
    if rolled_out:
        message = f"{desired} worker(s) up to date"
        if obs.paused:
            settled = Reason.PAUSED
        elif obs.autoscaling:
            settled = Reason.AUTOSCALING
            message += "; the backlog sets the count (spec.autoscaling), spec.replicas is ignored"
        else:
            settled = Reason.ROLLOUT_COMPLETE
        progressing = _cond(PROGRESSING, "False", settled, message)
    else:
        ready = deployment.available_replicas if deployment else 0
        updated = deployment.updated_replicas if deployment else 0
        progressing = _cond(
            PROGRESSING,
            "True",
            Reason.ROLLING_OUT,
            f"{updated} of {desired} worker(s) updated, {ready} available",
        )

    unreachable = obs.health is not None and not obs.health.reachable
    if unreachable:
        degraded = _cond(DEGRADED, "True", Reason.TEMPORAL_UNREACHABLE, reachable.message)
    elif deployment is not None and deployment.stalled_message and not rolled_out:
        degraded = _cond(
            DEGRADED,
            "True",
            Reason.ROLLOUT_STALLED,
            f"worker rollout stalled: {deployment.stalled_message}; check the worker pods' events and logs",
        )
    else:
        degraded = _cond(DEGRADED, "False", Reason.AS_EXPECTED, "")

    ready = _ready(obs, rolled_out=rolled_out, progressing=progressing, reachable=reachable)
    if ready.reason == Reason.NO_ACTIVE_POLLERS and not unreachable:
        degraded = _cond(DEGRADED, "True", Reason.NO_ACTIVE_POLLERS, ready.message)
    return [ready, progressing, degraded, reachable]


def _ready(
    obs: AgentObservation, *, rolled_out: bool, progressing: Condition, reachable: Condition
) -> Condition:
    desired = obs.desired_replicas
    if desired == 0 and rolled_out:
        if obs.paused:
            return _cond(READY, "True", Reason.PAUSED, "paused: no workers run; new runs wait in the backlog")
        if obs.autoscaling:
            return _cond(
                READY,
                "True",
                Reason.SCALED_TO_ZERO,
                "autoscaled to zero: a new run's backlog brings a worker up",
            )
        return _cond(READY, "True", Reason.SCALED_TO_ZERO, "spec.replicas is 0: new runs wait in the backlog")
    if not rolled_out:
        return _cond(READY, "False", Reason.ROLLING_OUT, progressing.message)
    health = obs.health
    if health is None:
        return _cond(READY, "Unknown", Reason.HEALTH_NOT_CHECKED, "workers are up; Temporal not read yet")
    if not health.reachable:
        return _cond(READY, "False", Reason.TEMPORAL_UNREACHABLE, reachable.message)
    workers = health.workers
    if workers == 0:
        return _cond(
            READY,
            "False",
            Reason.NO_ACTIVE_POLLERS,
            f"{desired} worker pod(s) are ready but none polled task queue {obs.task_queue} in the last "
            f"{obs.live_within:g}s: check the worker logs and that the pods use the same Temporal address "
            "and namespace as the operator",
        )
    if workers < desired:
        return _cond(
            READY, "True", Reason.SOME_WORKERS_POLLING, f"{workers} of {desired} worker(s) polling recently"
        )
    return _cond(READY, "True", Reason.ALL_WORKERS_POLLING, f"{workers} worker(s) polling")


def _reachable(health: HealthObservation | None, *, subject: str) -> Condition:
    if health is None:
        return _cond(TEMPORAL_REACHABLE, "Unknown", Reason.NOT_CHECKED, "Temporal has not been read yet")
    if health.reachable and health.kept_over:
        # Same reason, so no Event; the message says the counts are from the read before.
        kept = f"read {subject}; the latest read failed and the one before is shown: {health.kept_over}"
        return _cond(TEMPORAL_REACHABLE, "True", Reason.CONNECTED, kept)
    if health.reachable:
        return _cond(TEMPORAL_REACHABLE, "True", Reason.CONNECTED, f"read {subject}")
    return _cond(
        TEMPORAL_REACHABLE,
        "False",
        Reason.TEMPORAL_UNREACHABLE,
        # The health reader's errors already say what to check.
        f"could not read {subject}: {health.error or 'no answer'}",
    )


def connection_conditions(
    *,
    reachable: bool,
    error: str | None,
    previous: Iterable[Condition | Mapping[str, Any]],
    now: datetime,
    reason: str = Reason.TEMPORAL_UNREACHABLE,
) -> ConditionsUpdate:
    """The TemporalConnection's `Reachable` condition; `reason` says why it is not (a missing Secret,
    or Temporal not answering). `error` is expected to say what to check."""
    if reachable:
        condition = _cond(REACHABLE, "True", Reason.CONNECTED, "the Temporal namespace answered")
    else:
        condition = _cond(REACHABLE, "False", reason, error or "no answer")
    return merge_conditions(previous, [condition], now=now, generation=None)


def merge_conditions(
    previous: Iterable[Condition | Mapping[str, Any]],
    current: Sequence[Condition],
    *,
    now: datetime,
    generation: int | None,
) -> ConditionsUpdate:
    """Stamp `current` with transition times (kept when the status is unchanged) and list what changed.

    Conditions of other types in `previous` are kept as they are.
    """
    before = {c.type: c for c in (_parse(p) for p in previous)}
    merged: list[Condition] = []
    transitions: list[Transition] = []
    for condition in current:
        old = before.pop(condition.type, None)
        same_status = old is not None and old.status == condition.status
        stamp = old.last_transition_time if same_status and old and old.last_transition_time else now
        merged.append(
            condition.model_copy(update={"last_transition_time": stamp, "observed_generation": generation})
        )
        changed = old is None or not same_status or old.reason != condition.reason
        appearing_quietly = old is None and (
            condition.reason in _EXPECTED_ON_CREATE or (condition.type, condition.status) not in _BAD
        )
        if changed and not appearing_quietly:
            transitions.append(
                Transition(
                    type=condition.type,
                    status=condition.status,
                    reason=condition.reason,
                    message=condition.message,
                    previous_status=old.status if old else None,
                )
            )
    merged.extend(before.values())
    return ConditionsUpdate(conditions=merged, transitions=transitions)


def _parse(condition: Condition | Mapping[str, Any]) -> Condition:
    return condition if isinstance(condition, Condition) else Condition.model_validate(condition)
