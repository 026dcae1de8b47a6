"""The CRDs generated from the API models: in sync with the repo, structural, documented, and enforcing
the same rules as the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from durable_agents_api.resources import AgentRun, DurableAgent, TemporalConnection, ToolApproval
from durable_agents_operator import crd

REPO = Path(__file__).resolve().parents[2]
CRDS = {kind.kind: crd.render_crd(kind) for kind in crd.KINDS}
MODELS = {"DurableAgent": DurableAgent, "AgentRun": AgentRun, "TemporalConnection": TemporalConnection}


def schema_of(kind: str) -> dict[str, Any]:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below (and including) `node`, with a readable path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def all_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in CRDS:
        yield from walk(schema_of(kind), kind)


def node_at(kind: str, *path: str) -> dict[str, Any]:
    node = schema_of(kind)
    for name in path:
        node = node["additionalProperties"] if name == "{}" else node["properties"][name]
    return node


# --- generated files ------------------------------------------------------------------------------------


def test_committed_crd_files_match_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    status = crd.main(["--check", "--root", str(REPO)])
    assert status == 0, (
        f"crds/ or charts/durable-agents/crds/ drifted from the API models; run `make crds`\n"
        f"{capsys.readouterr().err}"
    )


def test_check_lists_a_stale_file_and_write_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crd.main(["--write", "--root", str(tmp_path)]) == 0
    stale = tmp_path / "charts/durable-agents/crds/agentruns.yaml"
    stale.write_text(stale.read_text().replace("shortNames", "shortNamez"))
    capsys.readouterr()
    assert crd.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(stale) in err and "make crds" in err and "durableagents.yaml" not in err
    assert crd.main(["--write", "--root", str(tmp_path)]) == 0
    assert crd.main(["--check", "--root", str(tmp_path)]) == 0


def test_crds_verb_prints_the_four_crds_as_multi_document_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert crd.main([]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == [
        "durableagents.durable-agents.dev",
        "agentruns.durable-agents.dev",
        "temporalconnections.durable-agents.dev",
        "toolapprovals.durable-agents.dev",
    ]
    assert docs == list(CRDS.values())


# --- structure ------------------------------------------------------------------------------------------

_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_errors(path: str, node: dict[str, Any], *, root: bool) -> list[str]:
    """What the API server's structural-schema check would reject at this node."""
    errors = []
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "not", "title", "const", "uniqueItems", "$defs"):
        if forbidden in node:
            errors.append(f"{path}: has {forbidden}")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("type") not in _TYPES and not preserve:
        errors.append(f"{path}: no type (only x-kubernetes-preserve-unknown-fields nodes may omit it)")
    if "type" not in node and ("properties" in node or "items" in node):
        errors.append(f"{path}: properties/items without a type")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is not None and not isinstance(node["additionalProperties"], dict):
        errors.append(f"{path}: additionalProperties must be a schema")
    if node.get("type") == "array" and "items" not in node:
        errors.append(f"{path}: array without items")
    if node.get("nullable") and "default" in node and node["default"] is None:
        errors.append(f"{path}: default null")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            errors.append(f"{path}: requires unknown property {name}")
    for key in node.get("x-kubernetes-list-map-keys", []):
        item = node["items"]
        if key not in item.get("required", []) or item["properties"][key].get("type") not in _TYPES - {
            "object",
            "array",
        }:
            errors.append(f"{path}: list map key {key} must be a required scalar")
    if root:
        # The API server allows nothing on metadata but its type and restrictions of name/generateName.
        meta = node["properties"]["metadata"]
        allowed = {"type": "string", "maxLength": meta.get("properties", {}).get("name", {}).get("maxLength")}
        if meta["type"] != "object" or set(meta) - {"type", "properties"}:
            errors.append(f"{path}.metadata: must be just type: object, got {meta}")
        if (
            set(meta.get("properties", {})) - {"name"}
            or meta.get("properties", {}).get("name", allowed) != allowed
        ):
            errors.append(f"{path}.metadata: only a maxLength on name is expected, got {meta}")
    return errors


def test_schemas_are_structural() -> None:
    errors = []
    for kind in CRDS:
        for path, node in walk(schema_of(kind), kind):
            errors += structural_errors(path, node, root=path == kind)
    assert not errors, "\n".join(errors)


def test_every_field_and_every_object_kind_has_a_description() -> None:
    # Fields (properties) and objects in lists and maps are what `kubectl explain` documents. Scalar items
    # and map values carry none: explain would print it right after the field's own.
    missing = []
    for kind in CRDS:
        for path, node in walk(schema_of(kind), kind):
            documented = bool(node.get("description"))
            is_field = not path.endswith(("[]", "{}"))
            is_object = "properties" in node or ("type" not in node and not path.endswith(".metadata"))
            if not documented and (is_object or is_field) and not path.startswith(f"{kind}.metadata"):
                missing.append(path)
    assert not missing, f"nodes without a description (kubectl explain shows nothing): {missing}"


def test_explain_text_is_not_repeated_for_list_items_and_map_values() -> None:
    for path, node in all_nodes():
        for child in ("items", "additionalProperties"):
            sub = node.get(child)
            if isinstance(sub, dict) and "description" in sub:
                assert sub["description"] != node.get("description"), path


def test_defaults_are_valid_values_of_their_own_schema() -> None:
    for path, node in all_nodes():
        if "default" in node:
            errors = list(jsonschema.Draft202012Validator(to_json_schema(node)).iter_errors(node["default"]))
            assert not errors, f"{path}: default {node['default']!r} is invalid: {errors[0].message}"


def test_no_field_depends_on_an_explicit_null() -> None:
    # A merge or apply patch with null deletes a field, so "off" is spelled 0 (prometheusPort), never null.
    port = node_at("DurableAgent", "spec", "observability", "prometheusPort")
    assert port["default"] == 9464 and port["minimum"] == 0
    assert [path for path, node in all_nodes() if node.get("nullable")] == []


def test_tool_settings_accept_an_object_or_false_and_say_so() -> None:
    tool = node_at("DurableAgent", "spec", "activities", "tools", "{}", "{}")
    assert tool["x-kubernetes-preserve-unknown-fields"] is True and "type" not in tool
    assert "`false`" in tool["description"] and "startToCloseTimeout" in tool["description"]


def test_free_form_fields_keep_unknown_fields() -> None:
    for path in (("spec", "agent", "modelSettings"), ("spec", "agent", "output", "schema")):
        assert node_at("DurableAgent", *path)["x-kubernetes-preserve-unknown-fields"] is True
    assert node_at("AgentRun", "spec", "deps")["x-kubernetes-preserve-unknown-fields"] is True


def test_durations_and_names_carry_patterns() -> None:
    timeout = node_at("DurableAgent", "spec", "activities", "default", "startToCloseTimeout")
    assert timeout["pattern"] == r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$" and timeout["maxLength"] == 32
    assert node_at("DurableAgent", "spec", "agent", "name")["pattern"].startswith("^[a-zA-Z]")
    assert "pattern" in node_at("AgentRun", "spec", "agentRef", "name")
    assert node_at("DurableAgent", "spec", "template", "imagePullPolicy")["enum"] == [
        "Always",
        "IfNotPresent",
        "Never",
    ]


def test_conditions_merge_by_type_and_toolsets_by_id() -> None:
    for kind in ("DurableAgent", "AgentRun", "TemporalConnection"):  # a ToolApproval has a phase only
        conditions = node_at(kind, "status", "conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert node_at("DurableAgent", "spec", "agent", "mcpServers")["x-kubernetes-list-map-keys"] == ["id"]


# --- names, subresources, columns -----------------------------------------------------------------------


def test_names_short_names_and_category() -> None:
    names = {kind: CRDS[kind]["spec"]["names"] for kind in CRDS}
    assert {kind: n["shortNames"] for kind, n in names.items()} == {
        "DurableAgent": ["da"],
        "AgentRun": ["ar"],
        "TemporalConnection": ["tconn"],
        "ToolApproval": ["tap"],
    }
    assert all(n["categories"] == ["agents"] for n in names.values())
    assert all(CRDS[k]["spec"]["scope"] == "Namespaced" for k in CRDS)


def test_status_subresource_everywhere_and_scale_on_durable_agent() -> None:
    for kind, doc in CRDS.items():
        subresources = doc["spec"]["versions"][0]["subresources"]
        assert subresources["status"] == {}
        assert ("scale" in subresources) == (kind == "DurableAgent")
    scale = CRDS["DurableAgent"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    # The paths point at fields that exist, with the types the scale subresource needs.
    assert node_at("DurableAgent", "spec", "replicas")["type"] == "integer"
    assert node_at("DurableAgent", "status", "replicas")["type"] == "integer"
    assert node_at("DurableAgent", "status", "selector")["type"] == "string"


def test_printer_columns() -> None:
    def columns(kind: str) -> dict[str, str]:
        return {
            c["name"]: c["jsonPath"]
            for c in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
            if not c.get("priority")
        }

    assert columns("DurableAgent") == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Replicas": ".spec.replicas",
        "Workers": ".status.workers",
        "Backlog": ".status.backlog.count",
        "Running": ".status.runs.running",
        "Failed": ".status.runs.failed",
        "Awaiting": ".status.awaitingApproval",
        "Version": ".status.currentVersion",
        "Next Run": ".status.nextScheduledRun",
        "Age": ".metadata.creationTimestamp",
    }
    assert columns("AgentRun") == {
        "Agent": ".spec.agentRef.name",
        "Phase": ".status.phase",
        "Waiting On": ".status.pendingApprovals[*].toolName",
        "Age": ".metadata.creationTimestamp",
    }
    assert columns("ToolApproval") == {
        "Run": ".spec.runRef.name",
        "Call": ".spec.toolCallId",
        "Decision": ".spec.decision",
        "By": ".spec.decidedBy",
        "Phase": ".status.phase",
        "Age": ".metadata.creationTimestamp",
    }
    assert columns("TemporalConnection") == {
        "Address": ".spec.address",
        "Reachable": '.status.conditions[?(@.type=="Reachable")].status',
        "Age": ".metadata.creationTimestamp",
    }


# --- examples against the schema ------------------------------------------------------------------------


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12) the API server effectively applies: unknown fields rejected as with
    `kubectl --validate=strict`, nulls only where `nullable`."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out["properties"] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[key] = node[bound]
            out.pop(bound, None)
        elif key in ("nullable", "description") or key.startswith("x-kubernetes-"):
            continue
        elif key not in out:
            out[key] = value
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = to_json_schema(schema_of(kind))
    # metadata is the API server's; the models' view of it is not what is being tested here.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in CRDS:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


@pytest.mark.parametrize(("name", "doc"), example_documents(), ids=[n for n, _ in example_documents()])
def test_examples_validate_against_the_generated_schema(name: str, doc: dict[str, Any]) -> None:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)
    ]
    assert not errors, f"{name} does not match its CRD:\n" + "\n".join(errors)
    MODELS[doc["kind"]].model_validate(doc)


def test_examples_include_the_quickstart_agent() -> None:
    assert any(name.startswith("hello.yaml:DurableAgent") for name, _ in example_documents())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"activities": {"default": {"startToCloseTimeout": "30 seconds"}}}, "startToCloseTimeout"),
        ({"agent": {"name": "my-agent", "model": "test"}}, "name"),
        ({"replicas": -1}, "replicas"),
        ({"agent": {"name": "a", "model": "test", "tolls": []}}, "tolls"),
        ({"temporal": {"connectionRef": {"name": "Not_A_Name"}}}, "name"),
        ({"observability": {"prometheusPort": 70000}}, "prometheusPort"),
    ],
)
def test_schema_rejects_what_the_model_rejects(change: dict[str, Any], field: str) -> None:
    doc = {"apiVersion": "durable-agents.dev/v1alpha1", "kind": "DurableAgent", "metadata": {"name": "x"}}
    doc["spec"] = {"agent": {"name": "a", "model": "test"}, **change}
    errors = list(validator("DurableAgent").iter_errors(doc))
    assert any(field in e.json_path or field in e.message for e in errors), [e.message for e in errors]
    with pytest.raises(ValidationError):
        DurableAgent.model_validate(doc)


def test_prometheus_port_zero_turns_metrics_off_in_schema_and_model() -> None:
    doc = {"apiVersion": "durable-agents.dev/v1alpha1", "kind": "DurableAgent", "metadata": {"name": "x"}}
    doc["spec"] = {"agent": {"name": "a", "model": "test"}, "observability": {"prometheusPort": 0}}
    assert not list(validator("DurableAgent").iter_errors(doc))
    assert DurableAgent.model_validate(doc).spec.observability.prometheus_port == 0


# --- CEL rules ------------------------------------------------------------------------------------------


def rules_at(kind: str, *path: str) -> list[dict[str, Any]]:
    return node_at(kind, *path).get("x-kubernetes-validations", [])


def violated(kind: str, path: tuple[str, ...], new: Any, old: Any = None) -> list[str]:
    """Messages of the rules at `path` that reject `new` (an update from `old`, when given)."""
    messages = []
    for rule in rules_at(kind, *path):
        if "oldSelf" in rule["rule"] and old is None:
            continue  # transition rules only run on updates
        context = {"self": new} if old is None else {"self": new, "oldSelf": old}
        if cel.evaluate(rule["rule"], context) is not True:
            messages.append(rule["message"])
    return messages


def test_every_cel_rule_compiles_and_its_message_names_a_field_and_a_fix() -> None:
    count = 0
    for path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            cel.compile(rule["rule"])
            message = rule["message"]
            assert "spec" in message and ":" in message, (
                f"{path}: {message!r} should name the field and the fix"
            )
            count += 1
    assert count >= 10


AGENT = ("spec", "agent")


@pytest.mark.parametrize(
    ("agent", "violates"),
    [
        ({"name": "a", "model": "test"}, None),
        ({"name": "a", "entrypoint": "pkg.mod:agent", "image": "registry/agent:1"}, None),
        ({"name": "a"}, "exactly one of `model`"),
        ({"name": "a", "model": "test", "entrypoint": "pkg.mod:agent"}, "exactly one of `model`"),
        ({"name": "a", "entrypoint": "pkg.mod:agent", "instructions": "hi"}, "code agent"),
        (
            {"name": "a", "entrypoint": "pkg.mod:agent", "toolsets": [{"id": "t", "entrypoint": "m:t"}]},
            "code agent",
        ),
        ({"name": "a", "model": "test", "image": "registry/agent:1"}, "agent.image"),
    ],
)
def test_agent_is_declarative_xor_code_in_the_api_server_and_the_model(
    agent: dict[str, Any], violates: str
) -> None:
    messages = violated("DurableAgent", AGENT, agent)
    model_ok = True
    try:
        DurableAgent.model_validate({"spec": {"agent": agent}})
    except ValidationError:
        model_ok = False
    if violates is None:
        assert messages == [] and model_ok
    else:
        assert any(violates in m for m in messages), messages
        assert not model_ok, "the model must reject what the API server rejects"


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        ({"type": "text"}, True),
        ({"type": "json", "schema": {"type": "object"}}, True),
        ({"type": "json"}, False),
        ({"type": "text", "schema": {"type": "object"}}, False),
        ({"schema": {"type": "object"}}, False),
    ],
)
def test_json_output_needs_a_schema(output: dict[str, Any], ok: bool) -> None:
    assert (violated("DurableAgent", (*AGENT, "output"), output) == []) is ok


def test_agent_name_is_immutable() -> None:
    path = (*AGENT, "name")
    assert violated("DurableAgent", path, "hello", "hello") == []
    assert "spec.agent.name cannot change" in violated("DurableAgent", path, "hello2", "hello")[0]


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ({}, {}, True),
        ({}, {"temporal": {"taskQueue": "q"}}, True),
        ({"temporal": {}}, {"temporal": {"taskQueue": "q"}}, True),
        ({"temporal": {"taskQueue": "q"}}, {"temporal": {"taskQueue": "q"}, "replicas": 3}, True),
        ({"temporal": {"taskQueue": "q"}}, {"temporal": {"taskQueue": "other"}}, False),
        ({"temporal": {"taskQueue": "q"}}, {"temporal": {}}, False),
        ({"temporal": {"taskQueue": "q"}}, {}, False),
    ],
)
def test_task_queue_is_immutable_once_set(old: dict[str, Any], new: dict[str, Any], ok: bool) -> None:
    messages = violated("DurableAgent", ("spec",), new, old)
    assert (messages == []) is ok, messages


RUN = {"runRef": {"name": "r"}}


@pytest.mark.parametrize(
    ("spec", "violates"),
    [
        ({**RUN, "toolCallId": "c1", "decision": "Approve"}, None),
        ({**RUN, "toolCallId": "c1", "decision": "Deny", "reason": "not today"}, None),
        ({**RUN, "all": True, "decision": "Deny"}, None),
        ({**RUN, "toolCallId": "c1", "result": "Paris"}, None),
        ({**RUN, "decision": "Approve"}, "spec.toolCallId"),
        ({**RUN, "toolCallId": "c1", "all": True, "decision": "Approve"}, "spec.toolCallId"),
        ({**RUN, "all": False, "decision": "Approve"}, "spec.toolCallId"),
        ({**RUN, "toolCallId": "c1"}, "exactly one"),
        ({**RUN, "toolCallId": "c1", "decision": "Approve", "result": "Paris"}, "exactly one"),
        ({**RUN, "all": True, "result": "x"}, "spec.all decides approvals"),
    ],
)
def test_a_tool_approval_names_one_call_or_all_and_decides_or_answers(
    spec: dict[str, Any], violates: str | None
) -> None:
    messages = violated("ToolApproval", ("spec",), spec)
    model_ok = True
    try:
        ToolApproval.model_validate({"spec": spec})
    except ValidationError:
        model_ok = False
    if violates is None:
        assert messages == [] and model_ok, messages
    else:
        assert any(violates in m for m in messages), messages
        assert not model_ok, "the model must reject what the API server rejects"


def test_a_tool_approval_spec_is_immutable() -> None:
    spec = {**RUN, "toolCallId": "c1", "decision": "Approve", "decidedBy": "ada"}
    assert violated("ToolApproval", ("spec",), spec, spec) == []
    changed = violated("ToolApproval", ("spec",), {**spec, "decision": "Deny"}, spec)
    assert any("immutable" in m for m in changed), changed


@pytest.mark.parametrize(
    ("autoscaling", "ok"),
    [
        ({"minReplicas": 0, "maxReplicas": 3}, True),
        ({"minReplicas": 3, "maxReplicas": 3}, True),
        ({"minReplicas": 4, "maxReplicas": 3}, False),
        ({"minReplicas": 11}, False),  # maxReplicas defaults to 10
        ({"maxReplicas": 1}, True),  # minReplicas defaults to 1
    ],
)
def test_autoscaling_min_is_at_most_max(autoscaling: dict[str, Any], ok: bool) -> None:
    assert (violated("DurableAgent", ("spec", "autoscaling"), autoscaling) == []) is ok
    model_ok = True
    try:
        DurableAgent.model_validate(
            {"spec": {"agent": {"name": "a", "model": "test"}, "autoscaling": autoscaling}}
        )
    except ValidationError:
        model_ok = False
    assert model_ok is ok


@pytest.mark.parametrize(
    ("activity", "ok"),
    [
        ({"startToCloseTimeout": "30s", "scheduleToCloseTimeout": "5m"}, True),
        ({"startToCloseTimeout": "1h", "scheduleToCloseTimeout": "1h"}, True),
        ({"startToCloseTimeout": "1m30s", "scheduleToCloseTimeout": "90s"}, True),
        ({"startToCloseTimeout": "1.5s", "scheduleToCloseTimeout": "1500ms"}, True),
        ({"startToCloseTimeout": "2m", "scheduleToCloseTimeout": "90s"}, False),
        ({"startToCloseTimeout": "2m"}, True),
    ],
)
def test_start_to_close_at_most_schedule_to_close(activity: dict[str, Any], ok: bool) -> None:
    for path in (("spec", "activities", "default"), ("spec", "activities", "toolsets", "{}")):
        assert (violated("DurableAgent", path, activity) == []) is ok


def test_agent_run_spec_is_immutable() -> None:
    spec = {"agentRef": {"name": "hello"}, "prompt": "hi", "deps": {"user": {"id": 1}}}
    assert violated("AgentRun", ("spec",), spec, dict(spec)) == []
    changed = {**spec, "prompt": "hello"}
    assert "a run is a run" in violated("AgentRun", ("spec",), changed, spec)[0]
    assert violated("AgentRun", ("spec",), {**spec, "deps": {"user": {"id": 2}}}, spec)


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({"address": "t:7233"}, True),
        ({"address": "t:7233", "apiKeySecretRef": {"name": "k", "key": "key"}}, True),
        (
            {"address": "t:7233", "apiKeySecretRef": {"name": "k", "key": "key"}, "tls": {"serverName": "t"}},
            True,
        ),
        ({"address": "t:7233", "tls": {"clientCertSecretRef": {"name": "c"}}}, True),
        (
            {
                "address": "t:7233",
                "apiKeySecretRef": {"name": "k", "key": "key"},
                "tls": {"clientCertSecretRef": {"name": "c"}},
            },
            False,
        ),
    ],
)
def test_temporal_connection_takes_mtls_or_an_api_key_not_both(spec: dict[str, Any], ok: bool) -> None:
    assert (violated("TemporalConnection", ("spec",), spec) == []) is ok
    model_ok = True
    try:
        TemporalConnection.model_validate({"spec": spec})
    except ValidationError:
        model_ok = False
    assert model_ok is ok


def test_rule_patches_must_name_existing_fields() -> None:
    broken = crd.CrdKind(
        model=AgentRun,
        kind="AgentRun",
        plural="agentruns",
        short_names=("ar",),
        printer_columns=(),
        patches={("spec", "promt"): {"maxLength": 10}},
    )
    with pytest.raises(ValueError, match=r"spec\.promt names no field"):
        crd.structural_schema(broken)


def test_durable_agent_names_fit_in_a_label_value() -> None:
    # The name labels the worker pods; the API server refuses a longer one at creation.
    assert node_at("DurableAgent", "metadata", "name")["maxLength"] == 63
    assert "properties" not in node_at("AgentRun", "metadata")
