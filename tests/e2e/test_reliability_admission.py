"""Admission fuzzing: generated DurableAgent, AgentRun and TemporalConnection manifests on the real apiserver.

Manifests come from `admission_fuzz.py` (hypothesis; the CRD schemas and beyond them). Each is sent as a
server-side dry-run create (`fieldValidation=Strict`, as kubectl sends) straight to the session's
apiserver. Each must be either rejected with a message that names a field (and, for a single mutation,
the field that was broken), or admitted. What the apiserver admits, the operator's own models then judge
(the same parse and build the operator runs: a spec they refuse must come out as InvalidSpec naming the
field, never as an unexpected exception). A sample of the admitted manifests is created for real and
watched: each gets status from the operator (InvalidSpec with the field named where the models refuse it),
while the operator process stays up and does not spin.

CI variant: 1,000 manifests (500 DurableAgents, 250 AgentRuns, 250 TemporalConnections), 18 created for
real. `DA_RELIABILITY_LONG=1`: 3,000 and 36. Counts are recorded with the suite's figures.
"""

from __future__ import annotations

import copy
import json
import os
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from pydantic import ValidationError

from durable_agents_api.resources import AgentRun, DurableAgent, TemporalConnection
from durable_agents_operator.builders.agent_objects import build_agent_objects
from durable_agents_operator.builders.temporal import resolve_temporal
from durable_agents_operator.connection_params import ConnectionParams
from durable_agents_operator.errors import InvalidSpec

from .admission_fuzz import FIELD_IN_MESSAGE, PLURALS, Fuzzed, dotted, manifests, names_field
from .cluster import ControlPlane
from .conftest import Kubectl, Release
from .reliability_figures import record
from .support import API_VERSION, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

LONG = os.environ.get("DA_RELIABILITY_LONG", "") not in ("", "0")
SCALE = 3 if LONG else 1
EXAMPLES = {"DurableAgent": 500 * SCALE, "AgentRun": 250 * SCALE, "TemporalConnection": 250 * SCALE}
SAMPLE_PER_KIND = 6 * SCALE
SEED = int(os.environ.get("DA_RELIABILITY_SEED", "1303"))


class Outcome:
    """What happened to one manifest."""

    def __init__(self, fuzzed: Fuzzed, status: int, body: dict[str, Any]) -> None:
        self.fuzzed = fuzzed
        self.status = status
        self.body = body
        self.local_error: str | None = None  # the operator models' message when they refuse it

    @property
    def admitted(self) -> bool:
        return self.status == 201

    @property
    def message(self) -> str:
        causes = (self.body.get("details") or {}).get("causes") or []
        return " ".join([str(self.body.get("message", "")), *(str(c.get("field", "")) for c in causes)])


def _local_verdict(kind: str, obj: dict[str, Any]) -> str | None:
    """The operator models' judgement of an admitted object: None when they accept it, else their message.

    Anything but a validation error or InvalidSpec escapes: that would be an operator crash.
    """
    try:
        if kind == "DurableAgent":
            body = copy.deepcopy(obj)
            (body["spec"].get("temporal") or {}).pop(
                "connectionRef", None
            )  # judged on the default connection
            agent = DurableAgent.model_validate(body)
            default = ConnectionParams(address="127.0.0.1:7233", namespace="default")
            temporal = resolve_temporal(agent, connection=None, default=default)
            build_agent_objects(agent, temporal=temporal, default_image="durable-agents:test")
        elif kind == "AgentRun":
            AgentRun.model_validate(obj)
        else:
            TemporalConnection.model_validate(obj)
    except (ValidationError, InvalidSpec) as exc:
        return str(exc)
    return None


def test_fuzzed_manifests_are_rejected_naming_the_field_or_handled_by_the_operator(
    control_plane: ControlPlane, operator_release: Release, kubectl: Kubectl, namespace: str
) -> None:
    started = time.monotonic()
    outcomes: list[Outcome] = []
    crashes: list[str] = []
    with httpx.Client(
        base_url=control_plane.server_url,
        verify=ssl.create_default_context(cafile=str(control_plane.ca_path)),
        headers={"Authorization": f"Bearer {control_plane.admin_token}"},
        timeout=30,
    ) as api:
        for kind, count in EXAMPLES.items():

            @settings(
                max_examples=count,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @seed(SEED)
            @given(manifests(kind))
            def send(fuzzed: Fuzzed) -> None:
                content = json.dumps(fuzzed.manifest, ensure_ascii=False).encode()
                for _ in range(20):  # 429 (e.g. "storage is (re)initializing" just after CRDs change)
                    response = api.post(
                        f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURALS[fuzzed.kind]}",
                        params={"dryRun": "All", "fieldValidation": "Strict"},
                        content=content,
                        headers={"Content-Type": "application/json"},
                    )
                    if response.status_code != 429:
                        break
                    time.sleep(1)
                try:
                    body = response.json()
                except ValueError:
                    body = {"message": response.text[:500]}
                outcomes.append(Outcome(fuzzed, response.status_code, body))

            send()
    send_seconds = time.monotonic() - started

    rejected = [o for o in outcomes if not o.admitted]
    admitted = [o for o in outcomes if o.admitted]
    server_errors = [o for o in rejected if o.status >= 500 or o.status < 400]
    unnamed = [o for o in rejected if not FIELD_IN_MESSAGE.search(o.message)]
    single = [o for o in rejected if len(o.fuzzed.mutations) == 1]
    wrong_field = [o for o in single if not names_field(o.message, o.fuzzed.mutations[0].path)]
    for outcome in admitted:
        try:
            outcome.local_error = _local_verdict(outcome.fuzzed.kind, outcome.body)
        except Exception as exc:
            crashes.append(f"{outcome.fuzzed.kind} {json.dumps(outcome.body)[:300]}: {exc!r}")
    locally_invalid = [o for o in admitted if o.local_error is not None]
    invalid_unnamed = [o for o in locally_invalid if not FIELD_IN_MESSAGE.search(o.local_error or "")]

    sample = _sample(admitted)
    operator_problems, cpu_share, operator_seconds = _create_and_watch(
        sample, operator_release, kubectl, namespace
    )

    by_kind = Counter((o.fuzzed.kind, "admitted" if o.admitted else "rejected") for o in outcomes)
    mutations = Counter(m.kind for o in outcomes for m in o.fuzzed.mutations)
    figures = {
        "manifests sent (dry-run)": len(outcomes),
        "rejected by the apiserver": len(rejected),
        "  naming a field": len(rejected) - len(unnamed),
        "  single mutation, naming the mutated field": f"{len(single) - len(wrong_field)} of {len(single)}",
        "admitted": len(admitted),
        "  refused by the operator models (InvalidSpec)": len(locally_invalid),
        "  accepted by the operator models": len(admitted) - len(locally_invalid),
        "per kind (admitted/rejected)": ", ".join(
            f"{k} {by_kind[(k, 'admitted')]}/{by_kind[(k, 'rejected')]}" for k in EXAMPLES
        ),
        "mutations": ", ".join(f"{k} {n}" for k, n in mutations.most_common()),
        "created for real / operator problems": f"{len(sample)} / {len(operator_problems)}",
        "operator CPU share while they settled": f"{cpu_share:.2f} core",
        "seconds: send / operator sample": f"{send_seconds:.0f} / {operator_seconds:.0f}",
    }
    record("admission-fuzzing" + ("-long" if LONG else ""), figures)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))

    def show(items: list[Outcome]) -> str:
        return "\n".join(
            f"- {o.fuzzed.kind} {[(m.kind, dotted(m.path)) for m in o.fuzzed.mutations]}: {o.status} "
            f"{o.message[:300]!r}\n  manifest: {json.dumps(o.fuzzed.manifest, ensure_ascii=False)[:1500]}"
            for o in items[:8]
        )

    assert len(outcomes) == sum(EXAMPLES.values()), "hypothesis drew fewer manifests than asked"
    assert not server_errors, f"the apiserver failed instead of judging:\n{show(server_errors)}"
    assert not unnamed, f"rejections that name no field:\n{show(unnamed)}"
    assert not wrong_field, f"rejections that do not name the mutated field:\n{show(wrong_field)}"
    assert not crashes, "admitted manifests the operator's code cannot handle:\n" + "\n".join(crashes[:8])
    assert not invalid_unnamed, "InvalidSpec messages that name no field:\n" + "\n".join(
        f"- {o.local_error}" for o in invalid_unnamed[:8]
    )
    assert not operator_problems, "\n".join(operator_problems)
    assert cpu_share < 0.5, f"the operator spun at {cpu_share:.2f} of a core on a settled set of objects"


def _sample(admitted: list[Outcome]) -> list[Outcome]:
    """Per kind, admitted manifests the models refuse first, then ones they accept; small bodies only."""
    chosen = []
    for kind in EXAMPLES:
        small = [o for o in admitted if o.fuzzed.kind == kind and len(json.dumps(o.body)) < 50_000]
        invalid = [o for o in small if o.local_error is not None]
        valid = [o for o in small if o.local_error is None]
        half = SAMPLE_PER_KIND // 2
        picked = invalid[:half]
        chosen += picked + valid[: SAMPLE_PER_KIND - len(picked)]
    return chosen


def _for_real(outcome: Outcome, index: int) -> dict[str, Any]:
    """The admitted object as it will be created: a unique name; agents paused and on the default Temporal."""
    body = copy.deepcopy(outcome.fuzzed.manifest)
    body["metadata"] = {"name": f"fz-{index}"}
    if outcome.fuzzed.kind == "DurableAgent" and isinstance(body.get("spec"), dict):
        body["spec"]["paused"] = True  # no worker pods: the operator's handling is what is under test
        temporal = body["spec"].get("temporal")
        if isinstance(temporal, dict):
            temporal.pop("connectionRef", None)
    return body


def _operator_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _create_and_watch(
    sample: list[Outcome], release: Release, kubectl: Kubectl, namespace: str
) -> tuple[list[str], float, float]:
    started = time.monotonic()
    pid = release.operator_pid()
    problems: list[str] = []
    created: list[tuple[Outcome, str]] = []
    for index, outcome in enumerate(sample):
        body = _for_real(outcome, index)
        result = kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(body))
        if result.returncode != 0:
            # Created objects differ from the dry run only by name, pausing and the connection reference.
            problems.append(f"{outcome.fuzzed.kind} admitted in the dry run but not created: {result.stderr}")
            continue
        created.append((outcome, body["metadata"]["name"]))

    def handled(outcome: Outcome, name: str) -> str | None:
        """None while the operator has not written status yet; "" when fine; else the problem."""
        obj = kubectl.get(PLURALS[outcome.fuzzed.kind], name, namespace) or {}
        status = obj.get("status") or {}
        conditions = status.get("conditions") or []
        if outcome.fuzzed.kind == "AgentRun":
            if not status.get("phase"):
                return None
            if outcome.local_error is not None:
                message = status.get("message") or ""
                ok = status["phase"] == "Failed" and FIELD_IN_MESSAGE.search(message)
                return "" if ok else f"AgentRun {name}: {status} (models: {outcome.local_error[:200]})"
            return ""
        if not conditions:
            return None
        reasons = {c.get("reason") for c in conditions}
        if outcome.local_error is not None:
            messages = " ".join(
                c.get("message") or "" for c in conditions if c.get("reason") == "InvalidSpec"
            )
            if "InvalidSpec" in reasons and FIELD_IN_MESSAGE.search(messages):
                return ""
            return f"{outcome.fuzzed.kind} {name}: no InvalidSpec naming the field: {conditions}"
        if "InvalidSpec" in reasons:
            # Only the apiserver can judge some values (a resource quantity, say) when the Deployment is
            # applied: InvalidSpec is right then too, as long as it names the field.
            messages = " ".join(
                c.get("message") or "" for c in conditions if c.get("reason") == "InvalidSpec"
            )
            if FIELD_IN_MESSAGE.search(messages):
                return ""
            return f"{outcome.fuzzed.kind} {name}: InvalidSpec naming no field: {conditions}"
        return ""

    pending = dict.fromkeys(range(len(created)))
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        for i in list(pending):
            verdict = handled(*created[i])
            if verdict is not None:
                pending.pop(i)
                if verdict:
                    problems.append(verdict)
        time.sleep(0.5)
    problems += [
        f"{created[i][0].fuzzed.kind} {created[i][1]}: no status from the operator in 90 s" for i in pending
    ]

    # Settled: the operator must now sit nearly idle (health timers only), in the same process.
    before, window = _operator_cpu_seconds(pid), 10.0
    time.sleep(window)
    cpu_share = (_operator_cpu_seconds(pid) - before) / window
    if release.operator_pid() != pid:
        problems.append("the operator process restarted while it handled the fuzzed objects")
    for outcome, name in created:
        kubectl("delete", PLURALS[outcome.fuzzed.kind], name, "-n", namespace, "--wait=false", check=False)
    wait_for(
        "the fuzzed objects to be deleted",
        lambda: (
            not kubectl("get", "durableagents,agentruns,temporalconnections", "-n", namespace, "-o", "name")
        ),
        timeout=60,
    )
    return problems, cpu_share, time.monotonic() - started
