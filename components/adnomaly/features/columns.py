"""Event fields as Flink SQL columns: their types and the checks that keep Flink's view of the raw topic
in line with the processor's validation. Pure; imports no pyflink.

The features job reads the raw topic, which also carries events the processor dead-letters. Records that
are not JSON, or whose used fields have the wrong JSON type for their column, are skipped by the JSON
format (`json.ignore-parse-errors`). What remains is checked here, field by field, for the fields a
feature uses (its dimensions and metric operands): required fields present, numbers in their declared
range, strings matching their pattern, length or enum. Built-in schemas take these rules from their
msgspec structs (the same ones the processor decodes with); custom schemas from the JSON Schema keywords
`required`, `type`, `minimum`/`maximum` (and exclusive forms), `enum`, `pattern`, `minLength`/`maxLength`.
What Flink cannot see (unknown extra fields, a number sent as a string) is counted as long as the used
fields pass: the processor stays the one place that judges a whole event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from adnomaly.config import EventsConfig
from adnomaly.events.schemas import BUILTIN_SCHEMAS

DOUBLE = "DOUBLE"
BOOLEAN = "BOOLEAN"
STRING = "STRING"


def quote(identifier: str) -> str:
    """A Flink SQL identifier in backticks (field names such as `timestamp` or `type` are keywords)."""
    return "`" + identifier.replace("`", "``") + "`"


def literal(text: str) -> str:
    """A Flink SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(frozen=True)
class Column:
    """One event field as the features job reads it."""

    name: str
    sql_type: str  # DOUBLE | BOOLEAN | STRING
    required: bool
    checks: tuple[str, ...]  # SQL predicates over the column that hold for a valid value

    def as_number(self) -> str:
        """The field as a DOUBLE expression (booleans count 1/0; text is parsed, NULL when not a number)."""
        col = quote(self.name)
        if self.sql_type == DOUBLE:
            return col
        if self.sql_type == BOOLEAN:
            return f"CASE WHEN {col} THEN 1.0E0 WHEN NOT {col} THEN 0.0E0 END"
        return f"TRY_CAST({col} AS DOUBLE)"

    def predicate(self) -> str | None:
        """A predicate that holds for a valid value of this field (absent is valid only if optional)."""
        col = quote(self.name)
        parts = list(self.checks)
        if not self.required:
            if not parts:
                return None
            return f"({col} IS NULL OR ({' AND '.join(parts)}))"
        return " AND ".join([f"{col} IS NOT NULL", *parts])


# -- built-in schemas (msgspec structs) ---------------------------------------------------------------------


def _numeric_checks(col: str, info: Any) -> list[str]:
    checks = []
    for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        bound = getattr(info, attr, None)
        if bound is not None:
            checks.append(f"{col} {op} {number(bound)}")
    if isinstance(info, msgspec.inspect.IntType):
        checks.append(f"FLOOR({col}) = {col}")
    return checks


def _string_checks(col: str, info: Any) -> list[str]:
    checks = []
    if isinstance(info, msgspec.inspect.LiteralType):
        values = ", ".join(literal(str(v)) for v in info.values)
        return [f"{col} IN ({values})"]
    if isinstance(info, msgspec.inspect.StrType):
        if info.min_length is not None:
            checks.append(f"CHAR_LENGTH({col}) >= {info.min_length}")
        if info.max_length is not None:
            checks.append(f"CHAR_LENGTH({col}) <= {info.max_length}")
        if info.pattern is not None:
            checks.append(f"REGEXP({col}, {literal(info.pattern)})")
    return checks


def _builtin_column(name: str, field: Any) -> Column:
    info = field.type
    if isinstance(info, msgspec.inspect.UnionType):  # `X | None`: optional
        others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        info = others[0] if len(others) == 1 else msgspec.inspect.AnyType()
    col = quote(name)
    if isinstance(info, msgspec.inspect.FloatType | msgspec.inspect.IntType):
        return Column(name, DOUBLE, field.required, tuple(_numeric_checks(col, info)))
    if isinstance(info, msgspec.inspect.BoolType):
        return Column(name, BOOLEAN, field.required, ())
    return Column(name, STRING, field.required, tuple(_string_checks(col, info)))


def builtin_columns(schema: str) -> dict[str, Column]:
    struct = BUILTIN_SCHEMAS[schema].struct
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: _builtin_column(f.encode_name, f) for f in info.fields}


# -- custom schemas (JSON Schema) ---------------------------------------------------------------------------


def _json_types(prop: Mapping[str, Any]) -> set[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    return set()


def _json_column(name: str, prop: Mapping[str, Any], required: bool) -> Column:
    types = _json_types(prop) - {"null"}
    col = quote(name)
    if types and types <= {"number", "integer"}:
        checks = []
        for key, op in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        ):
            bound = prop.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                checks.append(f"{col} {op} {number(bound)}")
        if types == {"integer"}:
            checks.append(f"FLOOR({col}) = {col}")
        return Column(name, DOUBLE, required, tuple(checks))
    if types == {"boolean"}:
        return Column(name, BOOLEAN, required, ())
    checks = []
    if types == {"string"}:
        enum = prop.get("enum")
        if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
            checks.append(f"{col} IN ({', '.join(literal(v) for v in enum)})")
        if isinstance(prop.get("minLength"), int):
            checks.append(f"CHAR_LENGTH({col}) >= {prop['minLength']}")
        if isinstance(prop.get("maxLength"), int):
            checks.append(f"CHAR_LENGTH({col}) <= {prop['maxLength']}")
        if isinstance(prop.get("pattern"), str):
            checks.append(f"REGEXP({col}, {literal(prop['pattern'])})")
    return Column(name, STRING, required, tuple(checks))


def json_schema_columns(json_schema: Mapping[str, Any], names: set[str]) -> dict[str, Column]:
    props = json_schema.get("properties") or {}
    required = set(json_schema.get("required") or [])
    return {name: _json_column(name, props.get(name) or {}, name in required) for name in sorted(names)}


def as_text(column: Column) -> Column:
    """The column read as text (dimensions: any JSON value keeps its JSON spelling, e.g. `true`, `7`)."""
    if column.sql_type == STRING:
        return column
    return Column(column.name, STRING, column.required, ())


def event_columns(
    events: EventsConfig, names: Collection[str], text: Collection[str] = ()
) -> dict[str, Column]:
    """The columns for `names` (event field names) under the pipeline's event schema; those in `text`
    (the dimensions) are read as STRING whatever their JSON type."""
    wanted = set(names) | set(text)
    if events.json_schema is not None:
        columns = json_schema_columns(events.json_schema, wanted)
    else:
        known = builtin_columns(events.schema_name)
        missing = sorted(wanted - set(known))
        if missing:
            raise ValueError(f"schema {events.schema_name} has no field(s) {', '.join(missing)}")
        columns = {name: known[name] for name in sorted(wanted)}
    return {name: as_text(col) if name in text else col for name, col in columns.items()}
