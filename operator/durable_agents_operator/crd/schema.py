"""Pydantic JSON schema → the *structural* OpenAPI v3 schema the API server requires.

Every `$ref` inlined, `anyOf [X, null]` collapsed to X, no titles, a description on every field; then the
kind's CRD-only keywords (`CrdKind.patches`) are added at the paths they name.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from durable_agents_api.config import DURATION_PATTERN

from .kinds import JSON, CrdKind

__all__ = ["DURATION_MAX_LENGTH", "structural_schema"]

# Durations are short strings; a bound keeps the API server's CEL cost estimate for rules that parse
# them small (without maxLength it assumes a string as large as a whole request).
DURATION_MAX_LENGTH = 32

# OpenAPI v3 keywords a structural schema may carry, in the order they are written out (readable YAML).
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "items",
    "additionalProperties",
    "properties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
# Marks a node whose model type admits None, until its owner decides whether `nullable` is needed.
_MAY_BE_NULL = "__may_be_null__"
# JSON-schema keywords pydantic emits that a CRD has no use for.
_DROPPED = frozenset({"title", "$defs", "examples"})

# The root of every resource: apiVersion/kind/metadata are the API server's (the model's metadata type
# only names the fields the operator reads).
_ROOT_FIELDS: JSON = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    },
    "kind": {"type": "string", "description": "Kind is the REST resource this object represents."},
    # The API server allows nothing but `type` (and name restrictions) on metadata.
    "metadata": {"type": "object"},
}


class _Converter:
    """Turns one pydantic JSON schema (with `$defs`) into a structural OpenAPI v3 schema."""

    def __init__(self, schema: JSON, *, undocumented: frozenset[str] = frozenset()) -> None:
        self.defs: dict[str, JSON] = schema.get("$defs", {})
        # Paths allowed to have no description (the root metadata, which takes nothing but its type).
        self.undocumented = undocumented

    def resolve(self, node: JSON, seen: tuple[str, ...]) -> tuple[JSON, tuple[str, ...]]:
        """Inline a `$ref`: the target's keywords, overridden by the referring node's own (description)."""
        ref = node.get("$ref")
        if ref is None:
            return node, seen
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"recursive model {name} cannot be inlined into a structural schema")
        merged = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return merged, (*seen, name)

    def convert(self, node: JSON, path: str, seen: tuple[str, ...] = ()) -> JSON:
        node, seen = self.resolve(node, seen)
        if "anyOf" in node:
            return self._union(node, path, seen)
        out: JSON = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
                # JSON Schema 2020 writes the bound; OpenAPI v3.0 writes the bound plus a flag.
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key == "properties":
                required = set(node.get("required", ()))
                out["properties"] = {
                    name: self._property(sub, f"{path}.{name}", seen, required=name in required)
                    for name, sub in value.items()
                }
            elif key == "items":
                out["items"] = self._child(value, f"{path}[]", seen)
            elif key == "additionalProperties":
                # `False` is implied by structural pruning (and forbidden next to properties); `True`
                # means any value, which is `x-kubernetes-preserve-unknown-fields`.
                if value is True:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                elif isinstance(value, dict):
                    out["additionalProperties"] = self._child(value, f"{path}{{}}", seen)
            elif key == "default":
                if value is not None:
                    out["default"] = value
            elif key == "uniqueItems":
                raise ValueError(
                    f"{path}: the API server rejects uniqueItems; use x-kubernetes-list-type: set"
                )
            elif key in _KEY_ORDER:
                out[key] = copy.deepcopy(value)
            else:
                raise ValueError(f"{path}: JSON schema keyword {key!r} has no structural equivalent")
        if out.get("pattern") == DURATION_PATTERN:
            out.setdefault("maxLength", DURATION_MAX_LENGTH)
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            # A free-form object (`dict[str, Any]`) keeps whatever it is given.
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    def _property(self, node: JSON, path: str, seen: tuple[str, ...], *, required: bool) -> JSON:
        out = self.convert(node, path, seen)
        if not out.get("description") and path not in self.undocumented:
            raise ValueError(f"{path} has no description: add Field(description=...) to the model field")
        # Null is only worth keeping where it means something other than "unset": a required field, or
        # one whose default is not null. Elsewhere the API server prunes the null and the field takes its
        # default, which is the same thing.
        if out.pop(_MAY_BE_NULL, False) and (required or "default" in out):
            out["nullable"] = True
        return out

    def _child(self, node: JSON, path: str, seen: tuple[str, ...]) -> JSON:
        """An array item or map value. It keeps its own description (a model's docstring) but gets no
        copy of its field's: `kubectl explain` prints both, one after the other."""
        out = self.convert(node, path, seen)
        if out.pop(_MAY_BE_NULL, False):
            out["nullable"] = True
        return out

    def _union(self, node: JSON, path: str, seen: tuple[str, ...]) -> JSON:
        alternatives = [alt for alt in node["anyOf"] if alt != {"type": "null"}]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(alternatives) > 1:
            return self._mixed_union(alternatives, outer, path, seen)
        out = self.convert({**alternatives[0], **outer}, path, seen)
        if len(alternatives) < len(node["anyOf"]):
            out[_MAY_BE_NULL] = True
        return out

    def _mixed_union(self, alternatives: list[JSON], outer: JSON, path: str, seen: tuple[str, ...]) -> JSON:
        """A union of different types is not structural: accept any value and say what is expected.

        The API server stores the value as it is; the operator validates it with the model and reports
        `InvalidSpec`.
        """
        spelled: list[str] = []
        for alt in alternatives:
            converted = self.convert(alt, path, seen)
            if "enum" in converted:
                spelled.extend(f"`{json.dumps(value)}`" for value in converted["enum"])
            elif "properties" in converted:
                spelled.append(f"an object with {', '.join(converted['properties'])}")
            else:
                spelled.append(f"a {converted.get('type', 'value')}")
        description = (
            f"Either {'; or '.join(spelled)}. The API server accepts any value here (a union of types is not "
            "structural); the operator validates it and reports InvalidSpec."
        )
        out = {k: v for k, v in outer.items() if k not in _DROPPED and k != "default"}
        out.setdefault("description", description)
        out["x-kubernetes-preserve-unknown-fields"] = True
        return out


def _ordered(node: Any) -> Any:
    """Keywords in `_KEY_ORDER`; properties keep the model's field order."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    keys = sorted(node, key=lambda k: rank.get(k, len(rank)))
    out: JSON = {}
    for key in keys:
        value = node[key]
        if key == "properties":
            out[key] = {name: _ordered(sub) for name, sub in value.items()}
        elif key in ("default", "enum", "x-kubernetes-validations"):
            out[key] = value
        else:
            out[key] = _ordered(value)
    return out


def _apply_patches(schema: JSON, patches: dict[tuple[str, ...], JSON], kind: str) -> None:
    for path, patch in patches.items():
        node: JSON | None = schema
        for name in path:
            assert node is not None
            if name == "{}":
                node = node.get("additionalProperties")
            elif name == "[]":
                node = node.get("items")
            else:
                node = node.get("properties", {}).get(name)
            if node is None:
                raise ValueError(
                    f"{kind}: CRD patch for {'.'.join(path)} names no field of the model: update "
                    "durable_agents_operator.crd.kinds to the model's field names"
                )
        assert node is not None
        for key, value in patch.items():
            if key == "x-kubernetes-validations":
                node.setdefault(key, []).extend(copy.deepcopy(value))
            else:
                node[key] = copy.deepcopy(value)


def structural_schema(kind: CrdKind) -> JSON:
    """The `openAPIV3Schema` of one CRD, converted from its model and patched with CRD-only keywords."""
    source = kind.model.model_json_schema(by_alias=True, mode="serialization")
    # apiVersion, kind and metadata belong to the API server, whatever the model says about them.
    source["properties"] = {
        **copy.deepcopy(_ROOT_FIELDS),
        **{name: sub for name, sub in source["properties"].items() if name not in _ROOT_FIELDS},
    }
    source["required"] = [name for name in source.get("required", []) if name not in _ROOT_FIELDS]
    converter = _Converter(source, undocumented=frozenset({f"{kind.kind}.metadata"}))
    schema = converter.convert(source, kind.kind)
    schema["properties"].update(copy.deepcopy(_ROOT_FIELDS))
    _apply_patches(schema, kind.patches, kind.kind)
    return _ordered(schema)
