"""The online store's layout in Redis, shared by the feature sink (writer) and the online API (reader).

One hash per entity: `<key prefix>:<feature>:<entity key>`, e.g. `adnomaly:clickstream:traffic_5m:geo=US|platform=ios`,
holding the latest window of that entity:
    window_start, window_end   RFC 3339 (UTC)
    window_end_ms              the window end in epoch milliseconds (what last-write-wins compares)
    event_count                events in the window
    metric:<name>              each metric's value as JSON (a number, or null when undefined)
The hash expires `ttl` after its window's end (as Feast does: a feature value is served for `ttl` past
its event time). An older window never replaces a newer one, whatever order they arrive in: the write
is a Lua script that compares `window_end_ms` on the server (equal window ends: the later write wins,
a re-computed window replaces the earlier result). The write sets the hash's fields over the old ones, without
deleting the hash first: a view writes the same fields every window, and deleting and rebuilding the hash
was the most expensive step of the script (`adnomaly bench feature-sink`). A metric dropped from the spec
leaves a stale field until the hash expires, so readers answer only the metrics they are configured with.

With a Feast project set (the plan always sets one: the pipeline's name), the same script also writes the
window into Feast's own hash of the entity (`adnomaly.feast.layout`), so `FeatureStore.get_online_features`
reads it. One writer, one script per window: both hashes change together or not at all, and the serving
API and Feast answer from the same write. Last-write-wins is checked on both hashes (ours: `window_end_ms`;
Feast's: `_adnomaly_end_ms:<view>`, kept next to `_ts:<view>`), so neither ever goes back to an older window.
Feast's hash is shared by the views keyed by the same dimensions, so it is never deleted, only its view's
fields are set, and its expiry only ever moves later (`PEXPIREAT ... GT`; a new hash gets the window's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from adnomaly.feast.layout import FeastView, feast_fields, flatten
from adnomaly.feast.layout import redis_key as feast_redis_key
from adnomaly.features.record import FeatureRecord, entity_key

WINDOW_START = "window_start"
WINDOW_END = "window_end"
WINDOW_END_MS = "window_end_ms"
EVENT_COUNT = "event_count"
METRIC_PREFIX = "metric:"

# KEYS[1]: our hash; KEYS[2] (optional): Feast's hash of the entity.
# ARGV[1]: window_end_ms; ARGV[2]: expire-at (epoch ms); ARGV[3]: n, the count of our field/value args that
# follow (ARGV[4..3+n]); ARGV[4+n..]: Feast's field/value pairs, the first being `_adnomaly_end_ms:<view>`.
# Returns 1 when written, 0 when a stored window is newer (the write is skipped).
WRITE_LATEST_LUA = """
local end_ms = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local current = redis.call('HGET', KEYS[1], 'window_end_ms')
if current and tonumber(current) > end_ms then
  return 0
end
if KEYS[2] then
  local feast = redis.call('HGET', KEYS[2], ARGV[4 + n])
  if feast and tonumber(feast) > end_ms then
    return 0
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
if KEYS[2] then
  local existed = redis.call('EXISTS', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(ARGV, 4 + n))
  if existed == 1 then
    redis.call('PEXPIREAT', KEYS[2], ARGV[2], 'GT')
  else
    redis.call('PEXPIREAT', KEYS[2], ARGV[2])
  end
end
return 1
"""

_json = msgspec.json.Encoder()


def redis_key(prefix: str, feature: str, entity: str) -> str:
    return f"{prefix}:{feature}:{entity}"


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken to be UTC, as Flink SQL writes them)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def epoch_ms(value: datetime) -> int:
    return round(utc(value).timestamp() * 1000)


def rfc3339(value: datetime) -> str:
    return utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class OnlineWrite:
    key: str
    window_end_ms: int
    expire_at_ms: int
    fields: tuple[tuple[str, str], ...]
    feast_key: bytes | None = None  # Feast's hash of the entity (None: no Feast layout)
    feast_fields: tuple[tuple[bytes, bytes], ...] = ()

    def keys(self) -> list[str | bytes]:
        return [self.key] if self.feast_key is None else [self.key, self.feast_key]

    def args(self) -> list[str | int | bytes]:
        flat: list[str | int | bytes] = [self.window_end_ms, self.expire_at_ms, 2 * len(self.fields)]
        for name, value in self.fields:
            flat += [name, value]
        return flat + flatten(self.feast_fields)


@dataclass(frozen=True)
class FeastTarget:
    """Where a view's windows go in Feast's layout: the Feast project and the view's typing."""

    project: str
    view: FeastView


def online_write(
    prefix: str, record: FeatureRecord, dimensions: list[str], ttl_s: float, feast: FeastTarget | None = None
) -> OnlineWrite:
    end_ms = epoch_ms(record.window_end)
    fields = [
        (WINDOW_START, rfc3339(record.window_start)),
        (WINDOW_END, rfc3339(record.window_end)),
        (WINDOW_END_MS, str(end_ms)),
        (EVENT_COUNT, str(record.event_count)),
    ]
    fields += [(METRIC_PREFIX + name, _json.encode(value).decode()) for name, value in sorted(record.metrics.items())]
    return OnlineWrite(
        key=redis_key(prefix, record.feature, entity_key(record.dimensions, dimensions)),
        window_end_ms=end_ms,
        expire_at_ms=end_ms + round(ttl_s * 1000),
        fields=tuple(fields),
        feast_key=None if feast is None else feast_redis_key(feast.project, record.dimensions),
        feast_fields=() if feast is None else tuple(feast_fields(feast.view, end_ms, record.metrics)),
    )


def read_latest(
    fields: Mapping[bytes | str, bytes | str], metrics_wanted: Collection[str] | None = None
) -> dict[str, Any] | None:
    """A stored hash as the online API answers it, with the metrics in `metrics_wanted` (None: all stored);
    None when the hash is empty (absent or expired)."""
    if not fields:
        return None
    text = {_text(name): _text(value) for name, value in fields.items()}
    metrics = {
        name.removeprefix(METRIC_PREFIX): msgspec.json.decode(value)
        for name, value in text.items()
        if name.startswith(METRIC_PREFIX)
        and (metrics_wanted is None or name.removeprefix(METRIC_PREFIX) in metrics_wanted)
    }
    return {
        "window_start": text.get(WINDOW_START),
        "window_end": text.get(WINDOW_END),
        "event_count": int(text.get(EVENT_COUNT, "0")),
        "metrics": metrics,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
