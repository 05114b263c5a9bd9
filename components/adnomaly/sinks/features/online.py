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
a re-computed window replaces the earlier result).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from adnomaly.features.record import FeatureRecord, entity_key

WINDOW_START = "window_start"
WINDOW_END = "window_end"
WINDOW_END_MS = "window_end_ms"
EVENT_COUNT = "event_count"
METRIC_PREFIX = "metric:"

# KEYS[1]: the hash; ARGV[1]: window_end_ms; ARGV[2]: expire-at (epoch ms); ARGV[3..]: field, value, ...
# Returns 1 when written, 0 when the stored window is newer (the write is skipped).
WRITE_LATEST_LUA = """
local current = redis.call('HGET', KEYS[1], 'window_end_ms')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
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

    def args(self) -> list[str | int]:
        flat: list[str | int] = [self.window_end_ms, self.expire_at_ms]
        for name, value in self.fields:
            flat += [name, value]
        return flat


def online_write(prefix: str, record: FeatureRecord, dimensions: list[str], ttl_s: float) -> OnlineWrite:
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
    )


def read_latest(fields: Mapping[bytes | str, bytes | str]) -> dict[str, Any] | None:
    """A stored hash as the online API answers it; None when the hash is empty (absent or expired)."""
    if not fields:
        return None
    text = {_text(name): _text(value) for name, value in fields.items()}
    metrics = {
        name.removeprefix(METRIC_PREFIX): msgspec.json.decode(value)
        for name, value in text.items()
        if name.startswith(METRIC_PREFIX)
    }
    return {
        "window_start": text.get(WINDOW_START),
        "window_end": text.get(WINDOW_END),
        "event_count": int(text.get(EVENT_COUNT, "0")),
        "metrics": metrics,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
