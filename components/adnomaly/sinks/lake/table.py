"""Valid events → an Arrow table with a stable, typed schema → Parquet bytes.

The schema comes from the event schema, never from the data, so every file of a table has the same
columns whatever its rows hold:
- built-in schemas: one column per field of the msgspec struct (strings, float64, int64, bool,
  timestamp[us, UTC]; free-form objects such as `payload`/`metadata` as JSON text);
- a custom JSON Schema: one column per declared scalar property (string/number/integer/boolean), the
  time field as timestamp[us, UTC], and `payload`, the whole event as JSON text, so nothing is lost;
then `event_id` first, and `_kafka_partition`/`_kafka_offset` last (where each row came from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from adnomaly.events.codec import ValidEvent
from adnomaly.events.schemas import BUILTIN_SCHEMAS

TIMESTAMP = pa.timestamp("us", tz="UTC")
PARTITION_COLUMN = "_kafka_partition"
OFFSET_COLUMN = "_kafka_offset"
PAYLOAD_COLUMN = "payload"

Row = tuple[int, ValidEvent]  # (kafka offset, event)
_json = msgspec.json.Encoder()


def _to_json(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def _to_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _scalar_arrow_type(info: msgspec.inspect.Type) -> tuple[pa.DataType, Callable[[Any], Any] | None]:
    """Arrow type of one struct field, and how to convert its Python value (None: as it is)."""
    inspect = msgspec.inspect
    if isinstance(info, inspect.UnionType):
        others = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        if len(others) == 1:
            return _scalar_arrow_type(others[0])
        return pa.string(), _to_json
    if isinstance(info, inspect.StrType):
        return pa.string(), None
    if isinstance(info, inspect.LiteralType) and all(isinstance(v, str) for v in info.values):
        return pa.string(), None
    if isinstance(info, inspect.UUIDType):
        return pa.string(), _to_text
    if isinstance(info, inspect.BoolType):
        return pa.bool_(), None
    if isinstance(info, inspect.IntType):
        return pa.int64(), None
    if isinstance(info, inspect.FloatType):
        return pa.float64(), None
    if isinstance(info, inspect.DateTimeType):
        return TIMESTAMP, None
    return pa.string(), _to_json  # objects, lists, anything else: JSON text


class Converter:
    """Turns rows of one schema into Arrow tables."""

    def __init__(self, fields: Sequence[tuple[str, pa.DataType]]) -> None:
        self.schema = pa.schema(
            [pa.field("event_id", pa.string(), nullable=False)]
            + [pa.field(name, type_) for name, type_ in fields]
            + [
                pa.field(PARTITION_COLUMN, pa.int32(), nullable=False),
                pa.field(OFFSET_COLUMN, pa.int64(), nullable=False),
            ]
        )

    def columns(self, rows: Sequence[Row]) -> list[list[Any]]:
        raise NotImplementedError

    def table(self, partition: int, rows: Sequence[Row]) -> pa.Table:
        columns: list[Any] = [[event.event_id for _, event in rows]]
        columns += self.columns(rows)
        columns += [[partition] * len(rows), [offset for offset, _ in rows]]
        arrays = [pa.array(values, type=field.type) for values, field in zip(columns, self.schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=self.schema)


class StructConverter(Converter):
    """A built-in schema: the canonical payload is decoded into its msgspec struct, column by column."""

    def __init__(self, schema: str) -> None:
        struct = BUILTIN_SCHEMAS[schema].struct
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        self._fields: list[tuple[str, Callable[[Any], Any] | None]] = []
        arrow_fields: list[tuple[str, pa.DataType]] = []
        for field in info.fields:
            if field.name == "event_id":
                continue
            arrow_type, convert = _scalar_arrow_type(field.type)
            arrow_fields.append((field.encode_name, arrow_type))
            self._fields.append((field.name, convert))
        super().__init__(arrow_fields)
        self._decode = msgspec.json.Decoder(list[struct]).decode  # type: ignore[valid-type]

    def columns(self, rows: Sequence[Row]) -> list[list[Any]]:
        structs = self._decode(b"[" + b",".join(event.payload for _, event in rows) + b"]")
        out: list[list[Any]] = []
        for name, convert in self._fields:
            values = [getattr(item, name) for item in structs]
            out.append(values if convert is None else [convert(value) for value in values])
        return out


_JSON_SCALARS: Mapping[str, pa.DataType] = {
    "string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_(),
}  # fmt: skip


def _json_schema_type(prop: Any) -> pa.DataType | None:
    if not isinstance(prop, Mapping):
        return None
    declared = prop.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        declared = non_null[0] if len(non_null) == 1 else None
    return _JSON_SCALARS.get(declared) if isinstance(declared, str) else None


_INT64 = (-(2**63), 2**63 - 1)


def _as_int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


# A declared column holds the value when it fits the column's type, else null (the `payload` column keeps
# the event as it came): JSON Schema lets through what Arrow cannot hold, e.g. integers beyond 64 bits.
_COERCE: Mapping[pa.DataType, Callable[[Any], Any]] = {
    pa.string(): lambda v: v if isinstance(v, str) else None,
    pa.int64(): _as_int,
    pa.float64(): _as_float,
    pa.bool_(): lambda v: v if isinstance(v, bool) else None,
}


class JsonSchemaConverter(Converter):
    """A custom JSON Schema: declared scalar properties as columns, the whole event as `payload`."""

    def __init__(self, json_schema: Mapping[str, Any], time_field: str) -> None:
        properties = json_schema.get("properties") or {}
        self._time_field = time_field
        self._scalars: list[tuple[str, pa.DataType]] = []
        for name, prop in properties.items():
            if name in ("event_id", PAYLOAD_COLUMN, PARTITION_COLUMN, OFFSET_COLUMN) or name == time_field:
                continue
            arrow_type = _json_schema_type(prop)
            if arrow_type is not None:
                self._scalars.append((name, arrow_type))
        super().__init__([(time_field, TIMESTAMP), *self._scalars, (PAYLOAD_COLUMN, pa.string())])
        self._decode = msgspec.json.Decoder(list[dict[str, Any]]).decode

    def columns(self, rows: Sequence[Row]) -> list[list[Any]]:
        documents = self._decode(b"[" + b",".join(event.payload for _, event in rows) + b"]")
        out: list[list[Any]] = [[event.event_time for _, event in rows]]
        for name, arrow_type in self._scalars:
            coerce = _COERCE[arrow_type]
            out.append([coerce(document.get(name)) for document in documents])
        out.append([event.payload.decode() for _, event in rows])
        return out


def converter_for(schema: str, json_schema: Mapping[str, Any] | None, time_field: str) -> Converter:
    if json_schema is not None:
        return JsonSchemaConverter(json_schema, time_field)
    return StructConverter(schema)


def parquet_bytes(table: pa.Table, compression: str) -> bytes:
    """The table as one Parquet file (one row group), deterministic for the same rows."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression=None if compression == "none" else compression,
        row_group_size=max(1, table.num_rows), write_statistics=True,
    )  # fmt: skip
    return bytes(sink.getvalue().to_pybytes())
