"""Malformed events: valid events spoiled in one of several ways, each of which the codec must reject.

`MALFORMED_KINDS` maps every kind to the rejection code the codec gives it (the unit tests hold the codec
to that for every kind and every schema). Which kind an invalid event gets is drawn from the stream's
random generator, so malformed events are as reproducible as valid ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adnomaly.events.codec import (
    EMPTY,
    INVALID_TIME,
    INVALID_UTF8,
    MALFORMED_JSON,
    OVERSIZE,
    SCHEMA_VIOLATION,
)
from adnomaly.events.schemas import BUILTIN_SCHEMAS
from adnomaly.generator.sources import EventSource

MALFORMED_KINDS: dict[str, str] = {
    "truncated_json": MALFORMED_JSON,
    "wrong_type": SCHEMA_VIOLATION,
    "missing_field": SCHEMA_VIOLATION,
    "unknown_field": SCHEMA_VIOLATION,
    "oversize": OVERSIZE,
    "non_utf8": INVALID_UTF8,
    "wrong_schema": SCHEMA_VIOLATION,
    "empty": EMPTY,
    "nan_literal": MALFORMED_JSON,
    "out_of_range": SCHEMA_VIOLATION,
    "time_past": INVALID_TIME,
    "time_future": INVALID_TIME,
}
KIND_NAMES: tuple[str, ...] = tuple(MALFORMED_KINDS)

_MARKER = "\x00adnomaly-marker\x00"
_MARKER_JSON = msgspec.json.encode(_MARKER)
_INVALID_UTF8 = b'"caf\xe9 \xff\xfe au lait"'  # Latin-1 and stray bytes inside a JSON string
_UNKNOWN_FIELDS = ("debug", "internal_score", "trace_flags", "_comment", "session_token")
_PAST_RANGE_S = (0.0, datetime(1999, 12, 31, tzinfo=UTC).timestamp())  # the codec's floor is 2000-01-01
_FUTURE_OFFSET = timedelta(days=200 * 365)  # far beyond any configured future skew


class Malformer:
    """Turns one valid event of `source`'s schema into the bytes of a malformed one."""

    def __init__(
        self,
        source: EventSource,
        rng: random.Random,
        max_event_bytes: int,
        foreign_source: Callable[[str], EventSource],
    ) -> None:
        self.source = source
        self.rng = rng
        self.max_event_bytes = max_event_bytes
        self._foreign_source = foreign_source
        self._time_field = BUILTIN_SCHEMAS[source.schema].time_field
        info = msgspec.inspect.type_info(BUILTIN_SCHEMAS[source.schema].struct)
        assert isinstance(info, msgspec.inspect.StructType)
        self._required = tuple(f.encode_name for f in info.fields if f.required)
        self._others = tuple(s for s in BUILTIN_SCHEMAS if s != source.schema)
        self._encoder = msgspec.json.Encoder()
        self._spoilers: dict[str, Callable[[dict[str, Any], bytes, datetime, float], bytes]] = {
            "truncated_json": self._truncated, "wrong_type": self._wrong_type, "missing_field": self._missing,
            "unknown_field": self._unknown, "oversize": self._oversize, "non_utf8": self._non_utf8,
            "wrong_schema": self._wrong_schema, "empty": self._empty, "nan_literal": self._nan,
            "out_of_range": self._out_of_range, "time_past": self._time_past, "time_future": self._time_future,
        }  # fmt: skip
        if set(self._spoilers) != set(MALFORMED_KINDS):
            raise RuntimeError("every malformed kind needs exactly one spoiler")

    def pick_kind(self) -> str:
        return KIND_NAMES[int(self.rng.random() * len(KIND_NAMES))]

    def spoil(self, kind: str, event: msgspec.Struct, when: datetime, t_s: float) -> bytes:
        """The malformed bytes of `kind`, made from the valid `event`."""
        raw = self._encoder.encode(event)
        document = msgspec.json.decode(raw)
        return self._spoilers[kind](document, raw, when, t_s)

    # -- one spoiler per kind --------------------------------------------------------------------------

    def _encode(self, document: dict[str, Any]) -> bytes:
        return self._encoder.encode(document)

    def _truncated(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        return raw[: 1 + int(self.rng.random() * (len(raw) - 2))]

    def _wrong_type(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        field, value = self._choice(self.source.faults.wrong_types)
        return self._encode({**document, field: value})

    def _missing(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        field = self._required[int(self.rng.random() * len(self._required))]
        return self._encode({k: v for k, v in document.items() if k != field})

    def _unknown(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        field = _UNKNOWN_FIELDS[int(self.rng.random() * len(_UNKNOWN_FIELDS))]
        return self._encode({**document, field: f"x{self.rng.getrandbits(32):08x}"})

    def _oversize(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        padding = self.max_event_bytes + 1 + int(self.rng.random() * 512)
        return self._encode({**document, self.source.faults.text_field: "x" * padding})

    def _non_utf8(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        marked = self._encode({**document, self.source.faults.text_field: _MARKER})
        return marked.replace(_MARKER_JSON, _INVALID_UTF8, 1)

    def _wrong_schema(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        other = self._others[int(self.rng.random() * len(self._others))]
        foreign = self._foreign_source(other)
        return self._encoder.encode(foreign.make(_event_id_of(document), when, t_s))

    def _empty(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        return b""

    def _nan(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        *parents, leaf = self.source.faults.nan_path
        target = document
        for name in parents:
            target[name] = dict(target.get(name) or {})
            target = target[name]
        target[leaf] = _MARKER
        return self._encode(document).replace(_MARKER_JSON, b"NaN", 1)

    def _out_of_range(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        field, value = self._choice(self.source.faults.out_of_range)
        return self._encode({**document, field: value})

    def _time_past(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        past = datetime.fromtimestamp(self.rng.uniform(*_PAST_RANGE_S), UTC)
        return self._encode({**document, self._time_field: past})

    def _time_future(self, document: dict[str, Any], raw: bytes, when: datetime, t_s: float) -> bytes:
        future = when + _FUTURE_OFFSET + timedelta(seconds=self.rng.random() * 86_400 * 365)
        return self._encode({**document, self._time_field: future})

    def _choice(self, options: Mapping[str, Any]) -> tuple[str, Any]:
        items = sorted(options.items(), key=lambda item: item[0])
        return items[int(self.rng.random() * len(items))]


def _event_id_of(document: dict[str, Any]) -> str:
    """The spoiled event's id, reused by the foreign event (a UUID-shaped string fits every schema)."""
    value = document.get("event_id")
    return str(value) if value else "00000000-0000-8000-8000-000000000000"
