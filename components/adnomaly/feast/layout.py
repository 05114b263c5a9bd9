"""Feast's Redis online-store layout, written by the feature sink so that Feast reads our features itself.

Feast's Redis store keeps one hash per entity and project, shared by every feature view with the same join
keys:
    key      serialize_entity_key(join keys → values, version 3) + project name (UTF-8)
    fields   murmur3_32("<view>:<feature>") as 4 little-endian bytes → a serialized `feast.types.Value`
             "_ts:<view>"                                          → a serialized `google.protobuf.Timestamp`
Its reader takes whatever the hash holds (TTL is not enforced on read), so expiry comes from the key's TTL.

We encode those bytes here, without feast, protobuf or mmh3 in the main environment: the formats are small
and stable (a test in Feast's own environment compares every byte with Feast's functions, so a Feast upgrade
that changes them fails loudly). Entity values are strings: a dimension is always read as text.

Feast's hash is the pipeline's only online copy of a window: the serving API and the reliability suite read it
too. Besides Feast's fields the sink keeps two of its own per view, next to `_ts:<view>` in the same hash (Feast
reads only the fields it asks for, so it never sees them); both names start with `_adnomaly_`:
    "_adnomaly_end_ms:<view>"   the window end in epoch milliseconds: last-write-wins compares it on the server
                                (see `adnomaly.sinks.features.online`), so Feast's `_ts` never goes backwards and,
                                like Feast's own writer, an older window never replaces a newer one;
    "_adnomaly_window:<view>"   what the serving API answers beside the metrics (window start/end, event count).
The decoders (`decode_value`, `decode_entity_key`) are the encoders' inverses, for those readers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

ENTITY_KEY_SERIALIZATION_VERSION = 3
VALUE_TYPE_STRING = 2  # feast.types.ValueType.STRING
INT64_METRICS = frozenset({"count"})  # metric aggregations Feast types as Int64 (the rest are Float64)

_MASK32 = 0xFFFFFFFF


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (unsigned), as `mmh3.hash(data, signed=False)`."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK32
    whole = len(data) - len(data) % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * c1) & _MASK32
        k = ((k << 15) | (k >> 17)) & _MASK32
        h ^= (k * c2) & _MASK32
        h = ((h << 13) | (h >> 19)) & _MASK32
        h = (h * 5 + 0xE6546B64) & _MASK32
    tail = data[whole:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * c1) & _MASK32
        k = ((k << 15) | (k >> 17)) & _MASK32
        h ^= (k * c2) & _MASK32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


@lru_cache(maxsize=4096)
def feature_field(view: str, feature: str) -> bytes:
    """The hash field of one feature: murmur3_32 of `<view>:<feature>` as 4 little-endian bytes."""
    return murmur3_32(f"{view}:{feature}".encode()).to_bytes(4, "little")


def ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


OWN_FIELD_PREFIX = b"_adnomaly_"  # our fields in Feast's hash (Feast's own never start so)


def end_ms_field(view: str) -> bytes:
    """Our own field next to Feast's `_ts:<view>`: the window end in ms, what last-write-wins compares."""
    return OWN_FIELD_PREFIX + f"end_ms:{view}".encode()


def window_field(view: str) -> bytes:
    """Our own field holding what the serving API answers besides the metrics (its value is opaque here)."""
    return OWN_FIELD_PREFIX + f"window:{view}".encode()


def entity_key_bytes(entity: Mapping[str, str]) -> bytes:
    """Feast's `serialize_entity_key` (version 3) of string-valued join keys: count, sorted keys, values."""
    names = sorted(entity)
    out = [struct.pack("<I", len(names))]
    for name in names:
        encoded = name.encode()
        out += [struct.pack("<II", VALUE_TYPE_STRING, len(encoded)), encoded]
    for name in names:
        encoded = entity[name].encode()
        out += [struct.pack("<II", VALUE_TYPE_STRING, len(encoded)), encoded]
    return b"".join(out)


def decode_entity_key(data: bytes) -> dict[str, str]:
    """The join keys → values of a key serialized by `entity_key_bytes` (string values only); ValueError when
    `data` is not exactly one such key."""
    try:
        (count,) = struct.unpack_from("<I", data)
        offset, parts = 4, []
        for _ in range(2 * count):
            kind, size = struct.unpack_from("<II", data, offset)
            offset += 8
            if kind != VALUE_TYPE_STRING or offset + size > len(data):
                raise ValueError(f"not a string of {size} bytes at {offset}")
            parts.append(data[offset:offset + size].decode())
            offset += size
    except struct.error as exc:
        raise ValueError(f"truncated entity key: {exc}") from None
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} bytes after the entity key")
    return dict(zip(parts[:count], parts[count:], strict=True))


def entity_of(key: bytes, project: str) -> dict[str, str] | None:
    """The entity of a Redis key written by `redis_key(project, ...)`; None for any other key (another project's
    whose name merely ends like this one's, or not Feast's layout)."""
    suffix = project.encode()
    if not key.endswith(suffix):
        return None
    try:
        return decode_entity_key(key[: len(key) - len(suffix)])
    except ValueError:
        return None


def redis_key(project: str, entity: Mapping[str, str]) -> bytes:
    """Feast's `_redis_key(project, entity_key)`: the serialized entity key, then the project name."""
    return _redis_key(project, tuple(sorted(entity.items())))


@lru_cache(maxsize=65536)  # the sink sees the same entities window after window
def _redis_key(project: str, items: tuple[tuple[str, str], ...]) -> bytes:
    return entity_key_bytes(dict(items)) + project.encode()


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def double_value(value: float | None) -> bytes:
    """A serialized `feast.types.Value` holding `double_val` (field 5); empty (no value) for None."""
    return b"" if value is None else b"\x29" + struct.pack("<d", value)


@lru_cache(maxsize=65536)  # counts repeat
def int64_value(value: float | None) -> bytes:
    """A serialized `feast.types.Value` holding `int64_val` (field 4); empty for None."""
    return b"" if value is None else b"\x20" + _varint(int(value))


@lru_cache(maxsize=4096)  # a batch holds many entities of few window ends
def timestamp(epoch_ms: int) -> bytes:
    """A serialized `google.protobuf.Timestamp` (seconds, nanos; zero fields omitted) of an epoch in ms."""
    seconds, ms = divmod(epoch_ms, 1000)
    out = b"\x08" + _varint(seconds) if seconds else b""
    return out + (b"\x10" + _varint(ms * 1_000_000) if ms else b"")


@dataclass(frozen=True)
class FeastView:
    """What the sink needs to write one feature view in Feast's layout."""

    name: str
    int64_metrics: frozenset[str]  # metric names typed Int64 (counts); the others are Float64

    @cached_property
    def names(self) -> tuple[bytes, bytes, bytes]:
        """(our end-ms field, our window field, Feast's `_ts` field)."""
        return end_ms_field(self.name), window_field(self.name), ts_field(self.name)

    def metric(self, name: str) -> tuple[bytes, Callable[[float | None], bytes]]:
        """A metric's hash field and value encoder."""
        return feature_field(self.name, name), int64_value if name in self.int64_metrics else double_value


def feast_fields(
    view: FeastView, end_ms: int, window: bytes, metrics: Mapping[str, float | None]
) -> list[tuple[bytes, bytes]]:
    """The hash fields of one window of `view`: our end-ms field first (the write script finds it there), our
    window field (`window`, opaque here), Feast's `_ts`, then one per metric (sorted)."""
    end_name, window_name, ts_name = view.names
    fields = [(end_name, str(end_ms).encode()), (window_name, window), (ts_name, timestamp(end_ms))]
    for name, value in sorted(metrics.items()):
        field, encode = view.metric(name)
        fields.append((field, encode(value)))
    return fields


def decode_value(data: bytes) -> float | int | None:
    """The number in a serialized `feast.types.Value` written by `double_value`/`int64_value` (None: empty)."""
    if not data:
        return None
    if data[0] == 0x29:
        return float(struct.unpack_from("<d", data, 1)[0])
    if data[0] == 0x20:
        value, shift = 0, 0
        for byte in data[1:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return value - (1 << 64) if value >= 1 << 63 else value
    raise ValueError(f"not a double or int64 feast Value: {data[:12].hex()}")


def flatten(fields: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    return [part for pair in fields for part in pair]
