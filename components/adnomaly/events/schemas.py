"""The four built-in event schemas, as typed msgspec structs (the per-event hot path).

Each mirrors one system Adnomaly replaces. Every event may carry `event_id`, the idempotency key; when
the source sends none, the codec derives one from the event's content (see `codec.derive_event_id`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

AwareTime = Annotated[datetime, Meta(tz=True)]
Ratio = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Meta(ge=0.0)]
ShortText = Annotated[str, Meta(min_length=1, max_length=256)]
LongText = Annotated[str, Meta(max_length=1024)]
CountryCode = Annotated[str, Meta(pattern="^[A-Z]{2}$")]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]


class _Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    event_id: EventId | None = None


class Clickstream(_Event):
    """An ad impression/click record (ad-fraud detection)."""

    timestamp: AwareTime
    user_id_hash: ShortText
    ad_id: ShortText
    campaign_id: ShortText
    geo: CountryCode
    platform: Literal["web", "ios", "android"]
    user_agent: LongText
    CPC: Annotated[float, Meta(ge=0.0, le=1000.0)]
    CTR: Ratio
    conversion: Annotated[int, Meta(ge=0, le=1)]
    bounce_rate: Ratio


class Signal(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A product signal (login, purchase, click, ...) with a free-form payload; always has its own id."""

    event_id: uuid.UUID
    user_id: ShortText
    source: Literal["web", "mobile", "api"]
    type: Annotated[str, Meta(pattern="^[a-z][a-z0-9_]{0,63}$")]
    event_ts: AwareTime
    payload: dict[str, Any] = {}


class Probe(_Event):
    """A network probe measurement from one node."""

    node_id: ShortText
    node_name: ShortText
    region: ShortText
    latency_ms: Annotated[float, Meta(ge=0.0, le=3_600_000.0)]
    uptime: NonNegative
    packet_loss: Ratio
    ts: AwareTime
    metadata: dict[str, Any] = {}


class Download(_Event):
    """One content download attempt."""

    content_id: ShortText
    region: ShortText
    device_type: Literal["mobile", "tablet", "desktop", "tv"]
    os_version: ShortText
    speed_mbps: Annotated[float, Meta(ge=0.0, le=100_000.0)]
    duration_s: NonNegative
    success: bool
    ts: AwareTime


class BuiltinSchema(msgspec.Struct, frozen=True):
    """What the rest of the system needs to know about a built-in schema."""

    name: str
    struct: type[msgspec.Struct]
    time_field: str
    dimensions: tuple[str, ...]
    numeric_fields: tuple[str, ...]


BUILTIN_SCHEMAS: dict[str, BuiltinSchema] = {
    s.name: s
    for s in (
        BuiltinSchema(
            "clickstream", Clickstream, "timestamp", ("geo", "platform"),
            ("CPC", "CTR", "conversion", "bounce_rate"),
        ),
        BuiltinSchema("signal", Signal, "event_ts", ("source", "type"), ()),
        BuiltinSchema(
            "probe", Probe, "ts", ("region", "node_id"), ("latency_ms", "uptime", "packet_loss"),
        ),
        BuiltinSchema(
            "download", Download, "ts", ("region", "device_type"),
            ("speed_mbps", "duration_s", "success"),
        ),
    )
}

SCHEMA_NAMES: tuple[str, ...] = tuple(BUILTIN_SCHEMAS)


def struct_fields(schema: str) -> tuple[str, ...]:
    return BUILTIN_SCHEMAS[schema].struct.__struct_fields__
