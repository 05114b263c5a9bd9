"""The online store's layout in Redis, shared by the feature sink (writer), the online API and the reliability
suite (readers): Feast's own Redis layout (`adnomaly.feast.layout`), the only online copy of a window.

One hash per entity and Feast project, `serialize_entity_key(join keys → values) + project`, shared by every
view keyed by the same dimensions. Per view it holds the latest window of that entity:
    murmur3("<view>:<metric>")   each metric as a serialized `feast.types.Value` (Int64 for counts, Float64
                                 otherwise; empty when the metric is undefined in the window: null)
    _ts:<view>                   the window end as a `google.protobuf.Timestamp` (Feast's event time)
    _adnomaly_end_ms:<view>      the window end in epoch milliseconds (what last-write-wins compares)
    _adnomaly_window:<view>      JSON {"window_start", "window_end" (RFC 3339, UTC), "event_count"}: what the
                                 serving API answers beside the metrics, ready to use
So `FeatureStore.get_online_features` reads what the sink writes, and the serving API answers from the same
bytes: one HSET per window instead of a second hash of our own (which took about a third of the sink's Redis
path's time, `adnomaly bench feature-sink`; bench/README.md).

An older window never replaces a newer one, whatever order they arrive in: the write is a Lua script that
compares `_adnomaly_end_ms:<view>` on the server (equal window ends: the later write wins, a re-computed window
replaces the earlier result). It sets the view's fields over the old ones, never deleting the hash (other views
share it), and the hash's expiry only ever moves later (`PEXPIREAT ... GT`; a new hash gets the window's end
plus the view's TTL, Feast's `key_ttl_seconds`). Since another view can keep the shared hash alive past this
view's TTL, readers enforce the TTL themselves (`read_latest`: a window is served until `ttl` after its end, as
Feast's TTL means). A metric dropped from the spec leaves a stale field until the hash expires; readers ask only
for the metrics they are configured with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from adnomaly.feast.layout import (
    FeastView,
    decode_value,
    end_ms_field,
    feast_fields,
    feature_field,
    flatten,
    redis_key,
    window_field,
)  # fmt: skip
from adnomaly.features.record import FeatureRecord
from adnomaly.sinks.config import FeatureView

# KEYS[1]: Feast's hash of the entity. ARGV[1]: expire-at (epoch ms); ARGV[2..]: field/value pairs, the first
# being `_adnomaly_end_ms:<view>` and the window end in ms. Returns 1 when written, 0 when a stored window of
# the view is newer (the write is skipped).
WRITE_LATEST_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[2])
if current and tonumber(current) > tonumber(ARGV[3]) then
  return 0
end
local existed = current or redis.call('EXISTS', KEYS[1]) == 1
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if existed then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1], 'GT')
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 1
"""


class Window(msgspec.Struct, frozen=True):
    """The value of `_adnomaly_window:<view>`, as the serving API answers it."""

    window_start: str
    window_end: str
    event_count: int


_window_encoder = msgspec.json.Encoder()
_window_decoder = msgspec.json.Decoder(Window)


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken to be UTC, as Flink SQL writes them)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def epoch_ms(value: datetime) -> int:
    return round(utc(value).timestamp() * 1000)


def rfc3339(value: datetime) -> str:
    return utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class OnlineWrite:
    key: bytes  # Feast's hash of the entity
    expire_at_ms: int
    fields: tuple[tuple[bytes, bytes], ...]  # `_adnomaly_end_ms:<view>` first (the script compares it)

    def args(self) -> list[int | bytes]:
        return [self.expire_at_ms, *flatten(self.fields)]


@dataclass(frozen=True)
class FeastTarget:
    """Where a view's windows go: the Feast project, the view's typing and its TTL."""

    project: str
    view: FeastView
    ttl_ms: int


def feast_targets(views: Mapping[str, FeatureView], project: str) -> dict[str, FeastTarget]:
    """Each view's place in Feast's layout."""
    return {
        name: FeastTarget(project, FeastView(name, frozenset(view.int64_metrics)), round(view.ttl_s * 1000))
        for name, view in views.items()
    }


def online_write(target: FeastTarget, record: FeatureRecord) -> OnlineWrite:
    end_ms = epoch_ms(record.window_end)
    window = Window(rfc3339(record.window_start), rfc3339(record.window_end), record.event_count)
    return OnlineWrite(
        key=redis_key(target.project, record.dimensions),
        expire_at_ms=end_ms + target.ttl_ms,
        fields=tuple(feast_fields(target.view, end_ms, _window_encoder.encode(window), record.metrics)),
    )


def read_fields(view: FeatureView) -> list[bytes]:
    """The fields to HMGET for `read_latest`: our end-ms and window fields, then each configured metric's."""
    return [end_ms_field(view.name), window_field(view.name), *(feature_field(view.name, m) for m in view.metrics)]


def read_latest(view: FeatureView, values: Sequence[bytes | None], now_ms: int) -> dict[str, Any] | None:
    """The window as the online API answers it, from the HMGET of `read_fields(view)`; None when the hash has
    no window of the view or it expired (its end plus the view's TTL is before `now_ms`). A metric whose field
    is absent (added to the spec since the window was written) is left out; an undefined one is None."""
    end_ms, window, *metrics = values
    if end_ms is None or window is None or int(end_ms) + round(view.ttl_s * 1000) < now_ms:
        return None
    answer = msgspec.structs.asdict(_window_decoder.decode(window))
    answer["metrics"] = {
        name: decode_value(value) for name, value in zip(view.metrics, metrics, strict=True) if value is not None
    }
    return answer
