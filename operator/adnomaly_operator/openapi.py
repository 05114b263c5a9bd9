"""pydantic JSON Schema → Kubernetes *structural* OpenAPI v3 schema. Pure, deterministic.

What changes on the way:
- `$ref`s are inlined (field-level `description`/`default` win over the referenced model's);
- `anyOf: [X, {type: null}]` becomes plain optional `X` (the API server prunes nulls of non-nullable
  fields, and a missing field means "use the default", exactly what `None` means in the model);
- JSON Schema 2020 `exclusiveMinimum: N` becomes OpenAPI 3.0 `minimum: N, exclusiveMinimum: true`;
- `title`, `examples`, `const` and `additionalProperties: false` go (pruning rejects unknown fields
  under `kubectl apply --validate=strict`; structural schemas forbid `additionalProperties` next to
  `properties`);
- free-form `dict[str, Any]` becomes `type: object` + `x-kubernetes-preserve-unknown-fields`;
- object defaults shrink to `{}` when the nested property defaults already produce the same value
  (the API server applies defaults top-down, recursing into what it just defaulted), otherwise they
  are kept with their `null`s removed.

`apply_defaults` mirrors the API server's defaulting algorithm so unit tests can check that a
defaulted object means the same to the CRD and to the pydantic model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Schema = dict[str, Any]

KEPT_KEYWORDS = (
    "type", "description", "enum", "default", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "minProperties",
    "maxProperties", "format", "items", "properties", "required", "additionalProperties", "nullable",
)


class SchemaError(ValueError):
    """The pydantic schema uses a construct that has no structural OpenAPI equivalent."""


def strip_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nones(v) for v in value]
    return value


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Default `value` the way kube-apiserver does (returns a new value; the input is not changed)."""
    if isinstance(value, dict):
        out = dict(value)
        props: dict[str, Schema] = schema.get("properties", {})
        for key, prop in props.items():
            if "default" in prop and (key not in out or out[key] is None):
                out[key] = copy.deepcopy(prop["default"])
        for key, item in list(out.items()):
            if key in props:
                out[key] = apply_defaults(item, props[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                out[key] = apply_defaults(item, schema["additionalProperties"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


class Converter:
    """Converts one pydantic JSON schema document (with its `$defs`)."""

    def __init__(self, document: Schema, *, on_model: Callable[[str, Schema], Schema] | None = None) -> None:
        self._defs: dict[str, Schema] = document.get("$defs", {})
        self._document = document
        self._on_model = on_model

    def convert_root(self, name: str) -> Schema:
        return self._model(name, self._document)

    def _model(self, name: str, raw: Schema) -> Schema:
        out = self._node(raw)
        if self._on_model is not None:
            out = self._on_model(name, out)
        return out

    def _resolve(self, raw: Schema) -> Schema:
        ref = raw["$ref"]
        prefix = "#/$defs/"
        if not ref.startswith(prefix):
            raise SchemaError(f"unsupported $ref {ref}")
        name = ref[len(prefix):]
        target = self._model(name, self._defs[name])
        merged = dict(target)
        for key in ("description", "default"):
            if key in raw:
                merged[key] = raw[key]
        return merged

    def _node(self, raw: Schema) -> Schema:
        if "$ref" in raw:
            return self._finish(self._resolve(raw), raw)
        if "anyOf" in raw:
            options = [o for o in raw["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                raise SchemaError(f"only `X | None` unions are supported, got {raw['anyOf']}")
            inner = self._node(options[0])
            merged = dict(inner)
            for key in ("description", "default"):
                if key in raw:
                    merged[key] = raw[key]
            return self._finish(merged, raw)
        out: Schema = {}
        for key in KEPT_KEYWORDS:
            if key not in raw:
                continue
            value = raw[key]
            if key == "properties":
                out[key] = {prop: self._node(sub) for prop, sub in value.items()}
            elif key == "items":
                out[key] = self._node(value)
            elif key == "additionalProperties":
                if isinstance(value, dict):
                    out[key] = self._node(value)
                elif value is True and "properties" not in raw:
                    out["x-kubernetes-preserve-unknown-fields"] = True
            elif key == "exclusiveMinimum":
                out["minimum"], out["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum":
                out["maximum"], out["exclusiveMaximum"] = value, True
            else:
                out[key] = value
        if "const" in raw:
            out["enum"] = [raw["const"]]
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return self._finish(out, raw)

    def _finish(self, out: Schema, raw: Schema) -> Schema:
        if "default" in out:
            default = strip_nones(out["default"])
            if default is None:
                del out["default"]
            elif isinstance(default, dict) and out.get("properties"):
                implied = apply_defaults({}, {"properties": out["properties"]})
                out["default"] = {} if implied == default else default
            else:
                out["default"] = default
        if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"schema without a type is not structural: {raw}")
        return _ordered(out)


_ORDER = {key: i for i, key in enumerate((
    "description", "type", "enum", "default", "pattern", "format", "minimum", "exclusiveMinimum",
    "maximum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "required", "properties", "additionalProperties", "items", "x-kubernetes-validations",
))}


def _ordered(schema: Schema) -> Schema:
    """A stable, readable key order (description first, nested schemas last)."""
    return dict(sorted(schema.items(), key=lambda kv: (_ORDER.get(kv[0], 50), kv[0])))


def to_structural(document: Schema, *, on_model: Callable[[str, Schema], Schema] | None = None) -> Schema:
    """Convert a pydantic `model_json_schema(by_alias=True)` document; `on_model(name, schema)` may add
    per-model extras (CEL rules, list types) and returns the schema to use."""
    return Converter(document, on_model=on_model).convert_root(document.get("title", "root"))
