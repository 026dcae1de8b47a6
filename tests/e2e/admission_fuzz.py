"""Hypothesis strategies for admission fuzzing: manifests generated from the CRD schemas, then broken.

`manifests(kind)` draws a `Fuzzed` manifest: a base object generated from the kind's openAPIV3Schema in
`crds/` (types, enums, patterns, bounds and required fields respected; the agent's CEL rules satisfied),
then zero to three mutations at random paths, each recorded with the path it touched:

- `wrong-type`: a value of another JSON type;
- `huge-string`: 70 kB to 1.1 MB of text;
- `unicode`: arbitrary code points (NUL, right-to-left, emoji, lone surrogates);
- `deep-nesting`: an object or list nested up to 120 levels;
- `unknown-field`: a key the schema does not know;
- `boundary-duration`: zero, sub-millisecond, overflowing, negative, unit-less and other edge durations;
- `boundary-int`: around 0, 2^31, 2^53 and 2^63, floats and numeric strings;
- `null` and `empty`: null, "", [] or {};
- `cel-edge`: the kind's CEL rules just broken or just kept (mTLS and API key together, model and
  entrypoint, json output without a schema, autoscaling bounds against the defaults, start-to-close
  against schedule-to-close in other units).

No network here: the test sends what these strategies draw.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = {
    "DurableAgent": "durableagents.yaml",
    "AgentRun": "agentruns.yaml",
    "TemporalConnection": "temporalconnections.yaml",
}
PLURALS = {
    "DurableAgent": "durableagents",
    "AgentRun": "agentruns",
    "TemporalConnection": "temporalconnections",
}
API_VERSION = "durable-agents.dev/v1alpha1"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

Json = Any
Path_ = tuple[str | int, ...]


@cache
def schema(kind: str) -> dict[str, Any]:
    """The kind's openAPIV3Schema from crds/ (the generated CRDs the chart installs)."""
    document = yaml.safe_load((REPO_ROOT / "crds" / CRD_FILES[kind]).read_text())
    return document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@dataclass
class Mutation:
    kind: str
    path: Path_


@dataclass
class Fuzzed:
    kind: str
    manifest: dict[str, Any]
    mutations: list[Mutation] = field(default_factory=list)


def dotted(path: Path_) -> str:
    """`('spec', 'agent', 'mcpServers', 0, 'url')` → `spec.agent.mcpServers[0].url` (Kubernetes' spelling)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# -- base objects from the schema ------------------------------------------------------------------------

_SAFE_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
_DURATIONS = st.sampled_from(["1s", "30s", "90s", "1m", "2m30s", "500ms", "1h", "1.5s", "10m"])
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _SAFE_TEXT)
_SMALL_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), inner, max_size=3),
    ),
    max_leaves=6,
)
_DNS_NAME = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    pattern = node.get("pattern")
    if pattern == DURATION_PATTERN:
        return _DURATIONS
    max_length = node.get("maxLength")
    if pattern:
        strategy = st.from_regex(pattern, fullmatch=True).filter(lambda s: "\n" not in s)
        if max_length is not None:
            strategy = strategy.filter(lambda s: len(s) <= max_length)
        return strategy
    return st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        min_size=node.get("minLength", 0),
        max_size=min(max_length or 24, 24),
    )


@st.composite
def value_of(draw: st.DrawFn, node: dict[str, Any], depth: int = 0) -> Json:
    """A value that satisfies `node` (CEL rules aside)."""
    if "enum" in node:
        return draw(st.sampled_from(node["enum"]))
    if node.get("x-kubernetes-int-or-string"):
        return draw(st.one_of(st.integers(0, 100), st.sampled_from(["50%", "1"])))
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        result: dict[str, Any] = {}
        required = set(node.get("required", []))
        for name, child in (node.get("properties") or {}).items():
            if name in required or (depth < 6 and draw(st.booleans())):
                result[name] = draw(value_of(child, depth + 1))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and depth < 6:
            for key in draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), max_size=2)):
                result[key] = draw(value_of(extra, depth + 1))
        if not node.get("properties") and node.get("x-kubernetes-preserve-unknown-fields"):
            result.update(
                draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), _SMALL_JSON, max_size=3))
            )
        return result
    if kind == "array":
        low = node.get("minItems", 0)
        items = value_of(node["items"], depth + 1)
        if node.get("x-kubernetes-list-type") == "map":  # a valid base has each key once
            keys = node.get("x-kubernetes-list-map-keys") or []
            return draw(
                st.lists(
                    items,
                    min_size=low,
                    max_size=max(low, 2),
                    unique_by=lambda item: tuple(repr(item.get(k)) for k in keys),
                )
            )
        return draw(st.lists(items, min_size=low, max_size=max(low, 2)))
    if kind == "string":
        return draw(_string(node))
    if kind == "integer":
        low = node.get("minimum", -5)
        return draw(st.integers(low, node.get("maximum", low + 100)))
    if kind == "number":
        low = node.get("minimum", 0)
        return draw(st.floats(low, node.get("maximum", low + 100), allow_nan=False))
    if kind == "boolean":
        return draw(st.booleans())
    return draw(_SMALL_JSON)


def _satisfy_cel(kind: str, spec: dict[str, Any]) -> None:
    """Fix a generated spec up so that the kind's CEL rules hold (mutations break them on purpose)."""
    if kind == "DurableAgent":
        agent = spec.setdefault("agent", {})
        agent.setdefault("name", "fuzz_agent")
        if "entrypoint" in agent:
            for key in ("model", "instructions", "modelSettings", "output", "mcpServers", "toolsets"):
                agent.pop(key, None)
        else:
            agent.pop("image", None)
            agent.setdefault("model", "test")
        output = agent.get("output")
        if isinstance(output, dict):
            if output.get("type") == "json":
                output.setdefault("schema", {"type": "object"})
            else:
                output.pop("schema", None)
        activities = spec.get("activities") or {}
        levels = [
            activities.get("default"),
            activities.get("model"),
            *(activities.get("toolsets") or {}).values(),
        ]
        for level in levels:
            if isinstance(level, dict) and "startToCloseTimeout" in level:
                level.pop("scheduleToCloseTimeout", None)
        scaling = spec.get("autoscaling")
        if isinstance(scaling, dict):
            low, high = scaling.get("minReplicas", 1), scaling.get("maxReplicas", 10)
            if low > high:
                scaling["minReplicas"], scaling["maxReplicas"] = high, low
            if "maxReplicas" not in scaling and scaling.get("minReplicas", 1) > 10:
                scaling["maxReplicas"] = scaling["minReplicas"]
        if isinstance(spec.get("schedules"), list):
            spec["schedules"] = _schedules_kept(spec["schedules"])
    elif kind == "TemporalConnection":
        tls = spec.get("tls")
        if "apiKeySecretRef" in spec and isinstance(tls, dict):
            tls.pop("clientCertSecretRef", None)


def _schedules_kept(schedules: list[Any]) -> list[Any]:
    """Schedules that keep the CEL rules: names unique (a map list), `cron` or `intervals`, no catch-up
    window under Temporal's minimum, no offset as long as its interval."""
    kept, names = [], set()
    for schedule in schedules:
        if not isinstance(schedule, dict) or schedule.get("name") in names:
            continue
        names.add(schedule.get("name"))
        if not schedule.get("cron") and not schedule.get("intervals"):
            schedule["cron"] = ["0 9 * * 1"]
        schedule.pop("catchupWindow", None)
        for interval in schedule.get("intervals") or []:
            if isinstance(interval, dict):
                interval.pop("offset", None)
        kept.append(schedule)
    return kept


@st.composite
def base_manifest(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    spec_schema = schema(kind)["properties"]["spec"]
    spec = draw(value_of(spec_schema))
    _satisfy_cel(kind, spec)
    name = draw(_DNS_NAME)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": f"fz-{name}"}, "spec": spec}


# -- mutations -------------------------------------------------------------------------------------------


def _paths(value: Json, prefix: Path_) -> list[Path_]:
    """Every path inside `value` (dict keys and list indices), `prefix` first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(root: Json, path: Path_) -> Json:
    for part in path:
        root = root[part]
    return root


def _set(root: Json, path: Path_, value: Json) -> None:
    _get(root, path[:-1])[path[-1]] = value


def _schema_at(kind: str, path: Path_) -> dict[str, Any]:
    node: dict[str, Any] = schema(kind)
    for part in path:
        if isinstance(part, int):
            node = node.get("items") or {}
        elif part in (node.get("properties") or {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


_OTHER_TYPES: list[Json] = [123, -1, 1.5, True, "text", ["a", 1], {"k": "v"}]
DURATION_EDGES = [
    "0s", "0ms", "1ms", "0.001s", "0.5ms", "1.5h30m", "1h1h", "00001s", "99999999999h",
    "9223372036854775807ms", "1e3s", "-1s", "1d", "1", "", " 1s", "1s ", "1S", "1.s", ".5s", "1µs", "1ns",
]  # fmt: skip
INT_EDGES: list[Json] = [-1, 0, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 1.0, 1.5, "1", -(2**63)]


def _deep(levels: int, as_list: bool) -> Json:
    value: Json = "bottom"
    for _ in range(levels):
        value = [value] if as_list else {"n": value}
    return value


@st.composite
def _mutate(draw: st.DrawFn, kind: str, manifest: dict[str, Any]) -> Mutation:
    targets = [p for p in _paths(manifest["spec"], ("spec",))] + [("metadata", "name")]
    choice = draw(
        st.sampled_from(
            [
                "wrong-type", "huge-string", "unicode", "deep-nesting", "unknown-field", "boundary-duration",
                "boundary-int", "null", "empty", "cel-edge",
            ]
        )
    )  # fmt: skip
    if choice == "cel-edge":
        return draw(_cel_edge(kind, manifest))
    if choice == "boundary-duration":
        durations = [p for p in targets if _schema_at(kind, p).get("pattern") == DURATION_PATTERN]
        durations += _duration_slots(kind, manifest)
        path = draw(st.sampled_from(durations))
        _put(manifest, path, draw(st.sampled_from(DURATION_EDGES)))
        return Mutation(choice, path)
    if choice == "boundary-int":
        ints = [p for p in targets if _schema_at(kind, p).get("type") == "integer"]
        path = draw(st.sampled_from(ints or [("spec", "replicas")]))
        _put(manifest, path, draw(st.sampled_from(INT_EDGES)))
        return Mutation(choice, path)
    path = draw(st.sampled_from(targets))
    if choice == "unknown-field":
        objects = [p for p in targets if isinstance(_get(manifest, p), dict)]
        path = draw(st.sampled_from(objects))
        key = draw(st.sampled_from(["bogus", "Replicas", "spec", "x-extra", "ñandú", "", "a.b"]))
        _get(manifest, path)[key] = draw(_SMALL_JSON)
        return Mutation(choice, (*path, key))
    if path == ("spec",) and choice in ("wrong-type", "null", "empty", "deep-nesting"):
        path = ("spec", draw(st.sampled_from(sorted(manifest["spec"]) or ["replicas"])))
    if choice == "wrong-type":
        current = _get_or_none(manifest, path)
        value = draw(st.sampled_from([v for v in _OTHER_TYPES if type(v) is not type(current)]))
    elif choice == "huge-string":
        # Sized in UTF-8 bytes, below the apiserver's 3 MB request limit (a larger body is refused whole).
        char = draw(st.sampled_from(["x", "é", "🙂"]))
        value = char * (draw(st.sampled_from([70_000, 300_000, 1_100_000])) // len(char.encode()))
    elif choice == "unicode":
        value = draw(st.text(st.characters(codec=None), min_size=1, max_size=64))
    elif choice == "deep-nesting":
        value = _deep(draw(st.integers(20, 120)), draw(st.booleans()))
    elif choice == "null":
        value = None
    else:
        value = draw(st.sampled_from(["", [], {}]))
    _put(manifest, path, value)
    return Mutation(choice, path)


def _get_or_none(root: Json, path: Path_) -> Json:
    try:
        return _get(root, path)
    except (KeyError, IndexError, TypeError):
        return None


def _put(manifest: dict[str, Any], path: Path_, value: Json) -> None:
    """Set `path`, creating the objects on the way (lists become one-element lists)."""
    node: Json = manifest
    for part, following in itertools.pairwise(path):
        if isinstance(node, list):
            while len(node) <= int(part):
                node.append({} if not isinstance(following, int) else [])
            node = node[int(part)]
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = [] if isinstance(following, int) else {}
        node = node[part]
    if isinstance(node, list):
        while len(node) <= int(path[-1]):
            node.append(None)
    node[path[-1]] = value


def _duration_slots(kind: str, manifest: dict[str, Any]) -> list[Path_]:
    """Duration fields a mutation may create, beyond those the base object happens to have."""
    if kind == "DurableAgent":
        return [
            ("spec", "activities", "default", "startToCloseTimeout"),
            ("spec", "activities", "default", "heartbeatTimeout"),
            ("spec", "activities", "model", "retry", "initialInterval"),
            ("spec", "worker", "gracefulShutdownTimeout"),
            ("spec", "worker", "stickyScheduleToStartTimeout"),
            ("spec", "autoscaling", "scaleDownDelay"),
        ]
    if kind == "AgentRun":
        return [("spec", "timeout")]
    return [("spec", "address")]  # no durations: a duration where an address belongs


@st.composite
def _cel_edge(draw: st.DrawFn, kind: str, manifest: dict[str, Any]) -> Mutation:
    spec = manifest["spec"]
    if kind == "TemporalConnection":
        ref = {"name": "creds", "key": "k"}
        spec["apiKeySecretRef"] = ref
        spec.setdefault("tls", {})["clientCertSecretRef"] = {"name": ref["name"]}
        return Mutation("cel-edge", ("spec", "apiKeySecretRef"))
    if kind == "AgentRun":
        spec["deps"] = draw(st.sampled_from([{"a": _deep(60, False)}, {"": None}, {"k" * 300: 1}]))
        return Mutation("cel-edge", ("spec", "deps"))
    agent = spec["agent"]
    case = draw(st.integers(0, 6))
    if case == 0:
        agent["entrypoint"], agent["model"] = "pkg.mod:agent", "test"
        return Mutation("cel-edge", ("spec", "agent"))
    if case == 1:
        agent.pop("model", None)
        agent.pop("entrypoint", None)
        return Mutation("cel-edge", ("spec", "agent"))
    if case == 2:
        agent["image"] = "example/agent:1"
        agent.pop("entrypoint", None)
        return Mutation("cel-edge", ("spec", "agent", "image"))
    if case == 3:
        agent.pop("entrypoint", None)
        agent.setdefault("model", "test")
        agent["output"] = {"type": "json"}
        return Mutation("cel-edge", ("spec", "agent", "output", "schema"))
    if case == 4:
        spec["autoscaling"] = draw(
            st.sampled_from([{"minReplicas": 11}, {"maxReplicas": 0}, {"minReplicas": 3, "maxReplicas": 2}])
        )
        return Mutation("cel-edge", ("spec", "autoscaling", "minReplicas"))
    # 5, 6: start-to-close against schedule-to-close in other units (equal is fine, more is not).
    level = spec.setdefault("activities", {}).setdefault("default", {})
    level["startToCloseTimeout"], level["scheduleToCloseTimeout"] = draw(
        st.sampled_from(
            [("61s", "1m"), ("1m", "60s"), ("60000ms", "1m"), ("1h", "59m59s"), ("99999999999h", "1s")]
        )
    )
    return Mutation("cel-edge", ("spec", "activities", "default", "startToCloseTimeout"))


@st.composite
def manifests(draw: st.DrawFn, kind: str) -> Fuzzed:
    """A manifest of `kind`: a schema-generated base and 0-3 mutations (0 in about one draw in six)."""
    manifest = copy.deepcopy(draw(base_manifest(kind)))
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    mutations: list[Mutation] = []
    for _ in range(count):
        mutation = draw(_mutate(kind, manifest))
        mutations.append(mutation)
        if mutation.kind == "huge-string":
            break  # one huge value per manifest keeps the body under the request limit
        if not isinstance(manifest["spec"], dict):
            break  # the spec itself was replaced (e.g. by a unicode string): there is nothing left inside it
    return Fuzzed(kind, manifest, mutations)


# A field path as the apiserver spells it: `spec.agent.mcpServers[0].url`, or, when JSON decoding of
# metadata fails before validation, the Go field (`ObjectMeta.name`).
FIELD_IN_MESSAGE = re.compile(r"\b(spec|metadata|ObjectMeta)(\.[A-Za-z_$][\w$-]*|\[\d+\]|\[[^\]]*\])*")


def names_field(message: str, path: Path_) -> bool:
    """Does `message` name `path`, or an ancestor of it below the root together with the leaf's key?"""
    if dotted(path) in message:
        return True
    if path[0] == "metadata" and f"ObjectMeta.{path[1]}" in message:
        return True
    leaf = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
    for cut in range(len(path) - 1, 1, -1):
        if dotted(path[:cut]) in message and leaf and leaf in message:
            return True
    return False
