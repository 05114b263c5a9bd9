"""What the API server would refuse in a Pipeline document, found without an API server. Pure.

A Pipeline is admitted when it passes the CRD's structural schema (types, enums, patterns, bounds, required
and unknown fields, unique list keys) and its CEL rules. The CEL rules mirror the model's cross-field
validators (a unit test keeps every validator mirrored), so the model stands in for them here; the schema
is checked as well because the API server is stricter than pydantic about types (`partitions: "6"` or
`enabled: "yes"` pass pydantic's lax mode, never the API server). Transition rules (`self >= oldSelf`:
partitions never shrink) need the stored object and are left to the API server.

`adnomaly validate` reports what `admission_errors` finds, every error with its field path.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from typing import Any

from adnomaly.spec import FieldError, pipeline_errors

from adnomaly_operator import crd
from adnomaly_operator.openapi import Schema

Loc = tuple[str | int, ...]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "integer": (int,),
    "number": (int, float),
}  # fmt: skip


@cache
def pipeline_schema() -> Schema:
    """The generated CRD's `openAPIV3Schema` (the same one `crds/` holds)."""
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _has_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer" and isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


def _scalar_errors(value: Any, schema: Schema, loc: Loc) -> list[FieldError]:
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
        errors.append(FieldError(loc, f"Unsupported value: {_shown(value)}: supported values: {allowed}"))
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(FieldError(loc, f"Invalid value: {_shown(value)}: should match '{schema['pattern']}'"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(FieldError(loc, f"Invalid value: {_shown(value)}: at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(loc, f"Too long: may not be longer than {schema['maxLength']}"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") and value == low):
                relation = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                errors.append(FieldError(loc, f"Invalid value: {value}: should be {relation} {low}"))
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") and value == high):
                relation = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                errors.append(FieldError(loc, f"Invalid value: {value}: should be {relation} {high}"))
    return errors


def _object_errors(value: dict[Any, Any], schema: Schema, loc: Loc) -> list[FieldError]:
    errors = [
        FieldError((*loc, name), "Required value") for name in schema.get("required", ()) if value.get(name) is None
    ]
    properties: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], (*loc, key))
        elif isinstance(extra, dict):
            errors += schema_errors(item, extra, (*loc, key))
        elif properties and not schema.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(FieldError((*loc, key), "unknown field"))
    return errors


def _array_errors(value: list[Any], schema: Schema, loc: Loc) -> list[FieldError]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(FieldError(loc, f"Invalid value: {len(value)} items: should have at least {schema['minItems']}"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError(loc, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
    seen: set[tuple[Any, ...]] = set()
    for index, item in enumerate(value):
        errors += schema_errors(item, schema.get("items", {}), (*loc, index))
        if keys and isinstance(item, dict):
            key = tuple(repr(item.get(k)) for k in keys)
            if key in seen:
                shown = _shown({k: item.get(k) for k in keys})
                errors.append(FieldError((*loc, index), f"Duplicate value: {shown}"))
            seen.add(key)
    return errors


def schema_errors(value: Any, schema: Schema, loc: Loc = ()) -> list[FieldError]:
    """Where `value` breaks the structural OpenAPI `schema`, the way kube-apiserver validates a custom
    resource (nulls are pruned, so a null field is a missing one; CEL rules are not evaluated here)."""
    if value is None:
        return []
    expected = schema.get("type")
    if expected is not None and not _has_type(value, expected):
        return [FieldError(loc, f"Invalid value: {_shown(value)}: must be of type {expected}, not {_type_name(value)}")]
    if isinstance(value, dict):
        return _object_errors(value, schema, loc)
    if isinstance(value, list):
        return _array_errors(value, schema, loc)
    return _scalar_errors(value, schema, loc)


def admission_errors(document: Any) -> list[FieldError]:
    """Everything wrong with one Pipeline document: the model's errors, then the schema's errors on fields
    the model did not already name (the same mistake is reported once)."""
    model = pipeline_errors(document)
    if not isinstance(document, dict):
        return model
    named = {error.path for error in model}
    return [*model, *(e for e in schema_errors(document, pipeline_schema()) if e.path not in named)]
