"""A seeded corpus of bad (and borderline) inputs for every built-in schema, each with the outcome it must get.

`build_corpus(seed, now=...)` is pure: the same seed and `now` give the same bytes. Every `CorpusItem` names
its schema, category and variant, and the outcome the codec (so the ingest API and the processor) must give
it: `ACCEPTED`, or rejected with one reason code of `adnomaly.events.codec`. The unit tests hold the codec to
every item; the integration tests send the whole corpus through the ingest API and straight into the raw
topic and account for each input.

It extends the generator's malformed kinds (`adnomaly.generator.malformed`, the kinds `invalidRate` draws
from): those are reused as they are, and the categories below add the rest.

Policy (what counts as bad, decided here and held by the tests):
- Schemas are closed: an unknown top-level field is a `schema_violation`. Free-form objects (signal
  `payload`, probe `metadata`) are open by design: any extra keys, arrays and nesting in them are accepted.
- Duplicate keys: every occurrence is validated and the last one wins, as in every parser along the
  pipeline (msgspec, PostgreSQL jsonb, orjson, Flink's Jackson), so one event means the same everywhere.
  Duplicates whose values are all valid are accepted; any invalid occurrence is a `schema_violation`.
- `NaN`, `Infinity`, `-Infinity` are not JSON: `malformed_json`. A number beyond a double (`1e400`) is a
  `schema_violation` (out of range), never a silent infinity.
- Nesting: free-form objects a few dozen levels deep are accepted; deeper than the decoder goes is
  `malformed_json`; nesting where a typed value belongs is a `schema_violation`.
- Bytes that are not UTF-8 inside a string are `invalid_utf8`; a byte-order mark or UTF-16 is
  `malformed_json` (JSON on the wire is UTF-8 without BOM).
- Event times before 2000-01-01, more than the future skew (24 h) ahead, or with a UTC offset beyond
  ±15:59 (PostgreSQL's limit) are `invalid_time`; a time that is not RFC 3339 with a zone (naive, date only,
  epoch number, leap second) is a `schema_violation`.
- An empty input is `empty`; whitespace only is `malformed_json` for the codec (the ingest API refuses a
  blank body as a whole, 400 `empty_body`, and skips blank NDJSON lines).
- A `\\u0000` in any string is `unstorable` (PostgreSQL jsonb cannot hold it); the text `\\\\u0000` is fine.
- Events larger than `max_event_bytes` are `oversize`, whatever they hold.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec

from adnomaly.events.codec import (
    DEFAULT_MAX_EVENT_BYTES,
    EMPTY,
    INVALID_TIME,
    INVALID_UTF8,
    MALFORMED_JSON,
    OVERSIZE,
    SCHEMA_VIOLATION,
    UNSTORABLE,
)
from adnomaly.events.schemas import BUILTIN_SCHEMAS, SCHEMA_NAMES
from adnomaly.generator.malformed import MALFORMED_KINDS
from adnomaly.generator.sources import source_for
from adnomaly.generator.stream import EventStream, GeneratorSettings

ACCEPTED = "accepted"
DEFAULT_SEED = 8
DEFAULT_DRAWS = 12  # variants per randomly drawn category and schema
FREEFORM_DEPTH = 40  # nesting accepted inside a free-form object
TOO_DEEP = 5000  # nesting no decoder stack takes (the codec's limit is the interpreter's, ~1000 levels)
HUGE_BYTES = 512 * 1024  # the largest items: far over the event limit, under Kafka's 1 MB message limit

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CorpusItem:
    schema: str
    category: str
    variant: str
    raw: bytes
    expected: str  # ACCEPTED or a reason code

    @property
    def name(self) -> str:
        """Unique within a corpus: `schema/category/variant`."""
        return f"{self.schema}/{self.category}/{self.variant}"

    @property
    def accepted(self) -> bool:
        return self.expected == ACCEPTED


def build_corpus(
    seed: int = DEFAULT_SEED,
    *,
    now: datetime,
    schemas: tuple[str, ...] = SCHEMA_NAMES,
    draws: int = DEFAULT_DRAWS,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> list[CorpusItem]:
    """The corpus for `schemas`; `now` is the wall-clock time the codec will check event times against."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    items: list[CorpusItem] = []
    for schema in schemas:
        items.extend(_SchemaCorpus(schema, seed, now, draws, max_event_bytes).items())
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise RuntimeError("corpus item names must be unique")
    return items


def mutate(raw: bytes, seed: int) -> bytes:
    """`raw` with a few seeded random edits (byte flips, cuts, insertions, stray JSON tokens): corrupted input
    whose outcome nobody decided in advance (fuzzing: it must be accepted or rejected, never crash)."""
    rng = random.Random(seed)
    data = bytearray(raw)
    for _ in range(1 + rng.randrange(4)):
        if not data:
            break
        at = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[at] = rng.randrange(256)
        elif action == 1:
            del data[at:]
        elif action == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            data[at : at + 1] = rng.choice(_TOKENS)
    return bytes(data)


def by_category(items: list[CorpusItem]) -> dict[str, int]:
    """How many items each category holds (for reports)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.category] = counts.get(item.category, 0) + 1
    return dict(sorted(counts.items()))


# -- one schema's corpus ---------------------------------------------------------------------------------------

Variants = Iterator[tuple[str, bytes, str]]  # (variant, raw, expected)

_WRONG_BY_TYPE: dict[str, Any] = {
    "StrType": 12345, "FloatType": "12.5", "IntType": "1", "BoolType": "true", "DateTimeType": 1_700_000_000,
    "DictType": [1, 2], "UUIDType": 42, "LiteralType": 7, "UnionType": {"id": 1},
}  # fmt: skip
_FIELD_NAME_LOOKALIKES = ("{}_", "_{}", "{} ", "{}\u200b")  # near-misses of a real field name
_INVALID_UTF8 = {
    "latin1": b"caf\xe9",
    "lone_continuation": b"a\x80b",
    "overlong_slash": b"\xc0\xaf",
    "surrogate_bytes": b"\xed\xa0\x80",
    "truncated_sequence": b"\xe2\x82",
    "beyond_unicode": b"\xf4\x90\x80\x80",
    "five_byte": b"\xf8\x88\x80\x80\x80",
    "ff_fe": b"\xff\xfe",
}
_NOT_JSON = {
    "trailing_garbage": lambda raw: raw + b"x",
    "two_objects": lambda raw: raw + raw,
    "two_objects_newline": lambda raw: raw + b"\n" + raw,
    "trailing_comma": lambda raw: raw[:-1] + b",}",
    "single_quotes": lambda raw: raw.replace(b'"', b"'"),
    "unquoted_keys": lambda raw: raw.replace(b'{"', b"{", 1).replace(b'":', b":", 1),
    "line_comment": lambda raw: b"// an event\n" + raw,
    "raw_control_char": lambda raw: raw.replace(b'":"', b'":"\x01', 1),
    "open_brace": lambda raw: b"{",
    "close_brace": lambda raw: b"}",
    "plain_text": lambda raw: b"hello world",
    "xml": lambda raw: b"<event><id>1</id></event>",
}
_NOT_AN_OBJECT: dict[str, bytes] = {
    "null": b"null", "true": b"true", "number": b"42", "string": b'"event"', "empty_array": b"[]",
}  # fmt: skip
_MARKER = "\x01corpus-marker\x01"  # a placeholder string, replaced by raw bytes after encoding
_TOKENS = (b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\\u0000", b"\\ud800", b"NaN", b"1e400", b"\n")
_BAD_TIME_FORMATS = {
    "naive": "2025-06-01T12:00:00",
    "date_only": "2025-06-01",
    "words": "yesterday",
    "empty": "",
    "month_13": "2025-13-01T00:00:00Z",
    "leap_second": "2016-12-31T23:59:60Z",
    "hour_25": "2025-06-01T25:00:00Z",
    "offset_no_colon_99": "2025-06-01T12:00:00+9900",
}


class _SchemaCorpus:
    def __init__(self, schema: str, seed: int, now: datetime, draws: int, max_event_bytes: int) -> None:
        self.schema = schema
        self.seed = seed
        self.now = now.astimezone(UTC)
        self.draws = draws
        self.max_event_bytes = max_event_bytes
        self.rng = random.Random(f"adnomaly-corpus:{seed}:{schema}")
        self.stream = EventStream(GeneratorSettings(
            schema=schema, seed=seed, rate=1.0, start=self.now, max_event_bytes=max_event_bytes,
        ))  # fmt: skip
        builtin = BUILTIN_SCHEMAS[schema]
        self.time_field = builtin.time_field
        info = msgspec.inspect.type_info(builtin.struct)
        assert isinstance(info, msgspec.inspect.StructType)
        self.fields = {f.encode_name: type(f.type).__name__ for f in info.fields}
        self.required = tuple(f.encode_name for f in info.fields if f.required)
        self.freeform = tuple(name for name, kind in self.fields.items() if kind == "DictType")
        self.text_field = self.stream.source.faults.text_field
        self.numeric = tuple(name for name, kind in self.fields.items() if kind == "FloatType")
        self._encode = msgspec.json.Encoder().encode

    # -- base events ----------------------------------------------------------------------------------------

    def event(self) -> msgspec.Struct:
        """A fresh valid event with its own id (a UUID, which every schema takes)."""
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return self.stream.source.make(event_id, self.now, self.now.timestamp())

    def document(self) -> Document:
        return msgspec.json.decode(self._encode(self.event()))

    def encode(self, document: Any) -> bytes:
        return self._encode(document)

    def items(self) -> Iterator[CorpusItem]:
        categories: dict[str, Callable[[], Variants]] = {
            "generator_kinds": self.generator_kinds,
            "truncated": self.truncated,
            "wrong_type": self.wrong_type,
            "missing_field": self.missing_field,
            "extra_field": self.extra_field,
            "huge_string": self.huge_string,
            "huge_array": self.huge_array,
            "deep_nesting": self.deep_nesting,
            "duplicate_key": self.duplicate_key,
            "nan_infinity": self.nan_infinity,
            "invalid_utf8": self.invalid_utf8,
            "time_past": self.time_past,
            "time_future": self.time_future,
            "bad_time_format": self.bad_time_format,
            "wrong_schema": self.wrong_schema,
            "not_json": self.not_json,
            "empty": self.empty,
            "unstorable": self.unstorable,
            "valid_edge": self.valid_edge,
        }
        for category, make in categories.items():
            for variant, raw, expected in make():
                if len(raw) > self.max_event_bytes:  # the size is checked first, whatever the bytes hold
                    expected = OVERSIZE
                yield CorpusItem(self.schema, category, variant, raw, expected)

    # -- categories -------------------------------------------------------------------------------------------

    def generator_kinds(self) -> Variants:
        """Every malformed kind of the generator (the `invalidRate` events), a few draws each."""
        when, t_s = self.now, self.now.timestamp()
        for kind, code in MALFORMED_KINDS.items():
            for n in range(max(1, self.draws // 3)):
                yield f"{kind}_{n}", self.stream.malformer.spoil(kind, self.event(), when, t_s), code

    def truncated(self) -> Variants:
        raw = self.encode(self.event())
        cuts = {1, 2, len(raw) // 2, len(raw) - 1}
        cuts.update(1 + self.rng.randrange(len(raw) - 2) for _ in range(self.draws))
        for cut in sorted(cuts):
            yield f"at_{cut}", raw[:cut], MALFORMED_JSON

    def wrong_type(self) -> Variants:
        for name, kind in self.fields.items():
            yield name, self.encode({**self.document(), name: _WRONG_BY_TYPE[kind]}), SCHEMA_VIOLATION
        for name, value in sorted(self.stream.source.faults.wrong_types.items()):
            yield f"fault_{name}", self.encode({**self.document(), name: value}), SCHEMA_VIOLATION
        yield "number_as_bool", self.encode({**self.document(), self.required[0]: True}), SCHEMA_VIOLATION

    def missing_field(self) -> Variants:
        for name in self.required:
            document = self.document()
            del document[name]
            yield name, self.encode(document), SCHEMA_VIOLATION
        for name in self.required:
            yield f"null_{name}", self.encode({**self.document(), name: None}), SCHEMA_VIOLATION
        yield "empty_object", b"{}", SCHEMA_VIOLATION
        yield "only_time", self.encode({self.time_field: self.now}), SCHEMA_VIOLATION

    def extra_field(self) -> Variants:
        for n in range(self.draws):
            name = f"x_{self.rng.getrandbits(24):06x}"
            value = self.rng.choice([1, "s", None, True, [1, 2], {"a": 1}, 2.5])
            yield f"unknown_{n}", self.encode({**self.document(), name: value}), SCHEMA_VIOLATION
        for n, pattern in enumerate(_FIELD_NAME_LOOKALIKES):
            name = pattern.format(self.time_field)
            yield f"lookalike_{n}", self.encode({**self.document(), name: self.now}), SCHEMA_VIOLATION
        yield "case_changed", self.encode({**self.document(), self.time_field.upper(): self.now}), SCHEMA_VIOLATION
        for field in self.freeform:  # open by design
            for n in range(self.draws):
                extra = {f"k{i}": self._free_value(i) for i in range(1 + self.rng.randrange(8))}
                document = self.document()
                document[field] = {**(document.get(field) or {}), **extra}
                yield f"in_{field}_{n}", self.encode(document), ACCEPTED

    def _free_value(self, i: int) -> Any:
        choices: list[Any] = [
            i,
            -i * 1.5,
            "text",
            "ünïcødé ✓ 漢字",
            None,
            True,
            [1, "two", None],
            {"nested": {"x": [i]}},
            10**30,
            -(2**63),
            1e-300,
            "\\u0000 as text",
            "",
        ]
        return choices[self.rng.randrange(len(choices))]

    def huge_string(self) -> Variants:
        limit = self.max_event_bytes
        yield "over_limit", self.encode({**self.document(), self.text_field: "x" * (limit + 1)}), OVERSIZE
        yield "huge", self.encode({**self.document(), self.text_field: "y" * HUGE_BYTES}), OVERSIZE
        yield "huge_key", self.encode({**self.document(), "k" * (limit + 10): 1}), OVERSIZE
        yield "huge_id", self.encode({**self.document(), "event_id": "i" * (limit + 10)}), OVERSIZE
        # Under the event limit but over the field's own length limit (ShortText 256, LongText 1024 chars).
        yield "over_field_length", self.encode({**self.document(), self.text_field: "z" * 2048}), SCHEMA_VIOLATION
        for field in self.freeform:
            document = self.document()
            document[field] = {"blob": "b" * (limit // 2)}
            yield f"half_limit_in_{field}", self.encode(document), ACCEPTED

    def huge_array(self) -> Variants:
        limit = self.max_event_bytes
        big = list(range(HUGE_BYTES // 8))
        target = self.freeform[0] if self.freeform else "items"
        yield "over_limit", self.encode({**self.document(), target: {"a": big} if self.freeform else big}), OVERSIZE
        document = self.document()
        copies = limit // len(self.encode(document)) + 2
        yield "event_repeated", self.encode([document] * copies), OVERSIZE
        yield "array_of_events", self.encode([self.document() for _ in range(3)]), SCHEMA_VIOLATION
        yield (
            "array_in_typed_field",
            self.encode({**self.document(), self.text_field: list(range(1000))}),
            (SCHEMA_VIOLATION),
        )
        for field in self.freeform:
            document = self.document()
            document[field] = {"a": list(range(limit // 16))}
            yield f"under_limit_in_{field}", self.encode(document), ACCEPTED
            document = self.document()
            document[field] = {"a": [[] for _ in range(limit // 8)]}
            yield f"many_empty_arrays_in_{field}", self.encode(document), ACCEPTED

    def deep_nesting(self) -> Variants:
        yield "top_level_arrays", b"[" * TOO_DEEP + b"]" * TOO_DEEP, SCHEMA_VIOLATION
        yield "top_level_objects", b'{"a":' * TOO_DEEP + b"1" + b"}" * TOO_DEEP, SCHEMA_VIOLATION
        deep_list = b"[" * TOO_DEEP + b"]" * TOO_DEEP
        yield "in_typed_field", self._with_raw(self.text_field, deep_list), SCHEMA_VIOLATION
        for field in self.freeform:
            deep_objects = b'{"a":' * TOO_DEEP + b"1" + b"}" * TOO_DEEP
            yield f"too_deep_objects_in_{field}", self._with_raw(field, deep_objects), MALFORMED_JSON
            deep_arrays = b'{"a":' + b"[" * TOO_DEEP + b"]" * TOO_DEEP + b"}"
            yield f"too_deep_arrays_in_{field}", self._with_raw(field, deep_arrays), MALFORMED_JSON
            nested: Any = {"leaf": 1}
            for _ in range(FREEFORM_DEPTH):
                nested = {"n": nested}
            document = self.document()
            document[field] = nested
            yield f"moderate_in_{field}", self.encode(document), ACCEPTED
            document = self.document()
            document[field] = {"a": msgspec.json.decode(b"[" * FREEFORM_DEPTH + b"]" * FREEFORM_DEPTH)}
            yield f"moderate_arrays_in_{field}", self.encode(document), ACCEPTED

    def _with_text_bytes(self, value: bytes) -> bytes:
        """A fresh event whose text field is the raw bytes `value` (a JSON string, spelled as given)."""
        raw = self.encode({**self.document(), self.text_field: _MARKER})
        return raw.replace(self.encode(_MARKER), value, 1)

    def _with_raw(self, field: str, value: bytes) -> bytes:
        """The encoding of a fresh event with `field` replaced by the raw JSON `value` (put last)."""
        return _append(self.encode({k: v for k, v in self.document().items() if k != field}), field, value)

    def duplicate_key(self) -> Variants:
        """Every occurrence must be valid; then the last one wins."""
        for n, field in enumerate(self.required):
            document = self.document()
            raw = self.encode(document)
            yield f"same_value_{field}", _append(raw, field, self.encode(document[field])), ACCEPTED
            wrong = self.encode(_WRONG_BY_TYPE[self.fields[field]])
            yield f"invalid_first_{field}", b'{"' + field.encode() + b'":' + wrong + b"," + raw[1:], SCHEMA_VIOLATION
            yield f"invalid_last_{field}", _append(raw, field, wrong), SCHEMA_VIOLATION
            if n >= 2:
                break
        document = self.document()
        last = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        yield "event_id_twice", _append(self.encode(document), "event_id", self.encode(last)), ACCEPTED
        raw = self.encode(self.document())
        later = self.encode(self.now - timedelta(minutes=5))
        yield "time_twice", _append(raw, self.time_field, later), ACCEPTED
        too_old = self.encode(datetime(1990, 1, 1, tzinfo=UTC))
        yield "time_twice_last_too_old", _append(raw, self.time_field, too_old), INVALID_TIME
        for field in self.freeform:
            yield f"in_{field}", self._with_raw(field, b'{"k":1,"k":2,"k":"three"}'), ACCEPTED

    def nan_infinity(self) -> Variants:
        literals = {"nan": b"NaN", "infinity": b"Infinity", "minus_infinity": b"-Infinity", "lower_nan": b"nan",
                    "inf": b"inf"}  # fmt: skip
        targets = [*self.numeric[:2], *(f"{f}.score" for f in self.freeform)]
        for target in targets:
            for name, literal in literals.items():
                yield f"{name}_{target}", self._with_number(target, literal), MALFORMED_JSON
            for name, literal in {"1e400": b"1e400", "minus_1e400": b"-1e400"}.items():
                yield f"{name}_{target}", self._with_number(target, literal), SCHEMA_VIOLATION
        if not targets:  # pragma: no cover - every built-in schema has a number or a free-form object
            raise RuntimeError(f"schema {self.schema} has nowhere to put a number")

    def _with_number(self, target: str, literal: bytes) -> bytes:
        field, _, key = target.partition(".")
        if key:
            return self._with_raw(field, b'{"' + key.encode() + b'":' + literal + b"}")
        return self._with_raw(field, literal)

    def invalid_utf8(self) -> Variants:
        for name, bad in _INVALID_UTF8.items():
            yield f"value_{name}", self._with_text_bytes(b'"' + bad + b'"'), INVALID_UTF8
        raw = self.encode({**self.document(), "x": 1})
        yield "in_key", raw.replace(b'"x":', b'"x\xff":', 1), INVALID_UTF8
        raw = self.encode(self.event())
        yield "bom", b"\xef\xbb\xbf" + raw, MALFORMED_JSON
        yield "utf16", raw.decode().encode("utf-16"), MALFORMED_JSON
        yield "utf16_be_no_bom", raw.decode().encode("utf-16-be"), MALFORMED_JSON
        yield "byte_outside_string", b"{\xff" + raw[1:], MALFORMED_JSON

    def time_past(self) -> Variants:
        fixed = {
            "epoch": "1970-01-01T00:00:00Z",
            "just_before_2000": "1999-12-31T23:59:59Z",
            "just_before_2000_with_offset": "2000-01-01T00:30:00+01:00",
            "year_1": "0001-01-01T00:00:00+01:00",
            "year_1_utc": "0001-01-01T00:00:00Z",
        }
        for name, value in fixed.items():
            yield name, self.encode({**self.document(), self.time_field: value}), INVALID_TIME
        for n in range(self.draws):
            when = datetime.fromtimestamp(self.rng.uniform(-2e9, 9.4e8), UTC)
            yield f"random_{n}", self.encode({**self.document(), self.time_field: when}), INVALID_TIME

    def time_future(self) -> Variants:
        fixed = {
            "year_9999": "9999-12-31T23:59:59-01:00",
            "year_9999_utc": "9999-12-31T23:59:59Z",
            "in_25_hours": self.now + timedelta(hours=25),
            "in_a_year": self.now + timedelta(days=365),
        }
        for name, value in fixed.items():
            yield name, self.encode({**self.document(), self.time_field: value}), INVALID_TIME
        for n in range(self.draws):
            when = self.now + timedelta(days=2 + self.rng.uniform(0, 2.5e6))
            yield f"random_{n}", self.encode({**self.document(), self.time_field: when}), INVALID_TIME

    def bad_time_format(self) -> Variants:
        for name, value in _BAD_TIME_FORMATS.items():
            yield name, self.encode({**self.document(), self.time_field: value}), SCHEMA_VIOLATION
        epoch = int(self.now.timestamp())
        yield "epoch_seconds", self.encode({**self.document(), self.time_field: epoch}), SCHEMA_VIOLATION
        offsets = {"offset_16h": "+16:00", "offset_23h59": "+23:59", "offset_minus_23h59": "-23:59"}
        for name, offset in offsets.items():  # RFC 3339, but beyond what PostgreSQL stores
            when = self.now.strftime("%Y-%m-%dT%H:%M:%S") + offset
            yield name, self.encode({**self.document(), self.time_field: when}), INVALID_TIME

    def wrong_schema(self) -> Variants:
        others = [s for s in SCHEMA_NAMES if s != self.schema]
        when, t_s = self.now, self.now.timestamp()
        for other in others:
            source = source_for(other, self.seed, random.Random(f"adnomaly-corpus:{self.seed}:{other}"), t_s)
            for n in range(max(1, self.draws // 3)):
                event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                yield f"{other}_{n}", self.encode(source.make(event_id, when, t_s)), SCHEMA_VIOLATION
        for name, raw in _NOT_AN_OBJECT.items():
            yield name, raw, SCHEMA_VIOLATION

    def not_json(self) -> Variants:
        for name, spoil in _NOT_JSON.items():
            yield name, spoil(self.encode(self.event())), MALFORMED_JSON

    def empty(self) -> Variants:
        yield "empty", b"", EMPTY
        for name, raw in {"space": b" ", "newline": b"\n", "crlf": b"\r\n", "tabs": b"\t\t"}.items():
            yield name, raw, MALFORMED_JSON

    def unstorable(self) -> Variants:
        yield "nul_in_text", self.encode({**self.document(), self.text_field: "a\x00b"}), UNSTORABLE
        yield (
            "nul_in_id",
            self.encode({**self.document(), "event_id": "id\x00"}),
            (SCHEMA_VIOLATION if self.fields["event_id"] == "UUIDType" else UNSTORABLE),
        )
        yield "escaped_backslash_then_u0000", self.encode({**self.document(), self.text_field: "a\\u0000b"}), ACCEPTED
        for field in self.freeform:
            yield f"nul_key_in_{field}", self._with_raw(field, b'{"a\\u0000":1}'), UNSTORABLE

    def valid_edge(self) -> Variants:
        """Inputs that look odd but are valid: they must be accepted (and stored) like any event."""
        raw = self.encode(self.event())
        yield "surrounding_whitespace", b" \t" + raw + b" \r\n", ACCEPTED
        yield "pretty_printed", msgspec.json.format(self.encode(self.event()), indent=2), ACCEPTED
        reordered = dict(reversed(list(self.document().items())))
        yield "keys_reversed", self.encode(reordered), ACCEPTED
        yield "escaped_unicode", self.encode({**self.document(), self.text_field: "caf\u00e9 \u2603"}), ACCEPTED
        yield "surrogate_pair_escape", self._with_text_bytes(b'"\\ud83d\\ude00 \\u00e9"'), ACCEPTED
        yield "oldest_time", self.encode({**self.document(), self.time_field: "2000-01-01T00:00:01Z"}), ACCEPTED
        soon = self.now + timedelta(hours=1)
        yield "an_hour_ahead", self.encode({**self.document(), self.time_field: soon}), ACCEPTED
        offset = self.now.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
        yield "with_offset", self.encode({**self.document(), self.time_field: offset}), ACCEPTED
        widest = timedelta(hours=15, minutes=59)
        for name, offset in {"offset_15h59": widest, "offset_minus_15h59": -widest}.items():
            shifted = self.now.astimezone(timezone(offset)).isoformat()
            yield name, self.encode({**self.document(), self.time_field: shifted}), ACCEPTED
        spaced = self.now.strftime("%Y-%m-%d %H:%M:%SZ")
        yield "space_separator", self.encode({**self.document(), self.time_field: spaced}), ACCEPTED
        nanos = self.now.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
        yield "nanoseconds", self.encode({**self.document(), self.time_field: nanos}), ACCEPTED
        yield "lowercase_t_and_z", self.encode({
            **self.document(), self.time_field: self.now.strftime("%Y-%m-%dt%H:%M:%Sz"),
        }), ACCEPTED  # fmt: skip
        if "event_id" not in self.required:  # the codec derives the id from the content
            anonymous = {k: v for k, v in self.document().items() if k != "event_id"}
            yield "without_event_id", self.encode(anonymous), ACCEPTED
            yield "null_event_id", self.encode({**self.document(), "event_id": None}), ACCEPTED
        yield "exact_limit", self._exactly(self.max_event_bytes), ACCEPTED
        yield "one_over_limit", self._exactly(self.max_event_bytes + 1), OVERSIZE

    def _exactly(self, size: int) -> bytes:
        """A valid event of exactly `size` bytes (padded with whitespace, which JSON ignores)."""
        raw = self.encode(self.event())
        return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _append(raw: bytes, field: str, value: bytes) -> bytes:
    """The JSON object `raw` with one more member `field: value` (raw JSON) at its end, duplicate or not."""
    return raw[:-1] + b',"' + field.encode() + b'":' + value + b"}"
