"""The lookups' answers from Redis kept in the serving process while Redis tracks their keys (pure, no I/O).

Why: under `adnomaly bench online --rate 2000` about 40 % of the serving process's CPU per lookup was the
loopback round trip to Redis for its one `HMGET` (see `adnomaly.serving.redis_wire`), and a lookup waits
for Redis to be scheduled on one of the two cores shared with the API and its clients. Feature lookups are
read-mostly and hot: an entity's hash changes once per window slide while it is read many times a second.
Redis's server-assisted client-side caching (`CLIENT TRACKING`, Redis ≥ 6, RESP3) makes keeping the answers
safe: Redis remembers which keys the connection read and pushes an `invalidate` message on the same
connection as soon as one of them changes, expires or is evicted. `redis_wire.WireClient` feeds this class
what arrives on its connection, in order:

  - a reply is stored when it is *parsed* (not when its caller resumes), so an invalidation that follows it
    on the wire always lands after it: no stale answer can outlive the message that invalidates it;
  - an invalidation drops every answer of the keys it names (`None`: all keys, as after FLUSHALL);
  - a lost connection clears everything, since invalidations may have been lost with it.

How fresh a kept answer is: Redis queues an invalidation before any reply it sends later on the connection,
so once a reply has been parsed, every change Redis made before it sent that reply has been applied here.
`WireClient` serves a kept answer only while the last reply parsed is younger than its `max_staleness`
(0.5 s by default); past that the lookup goes to Redis, whose reply refreshes the bound. A stalled Redis
therefore cannot make the API serve old answers for longer than that. The TTL of a view is not cached: it is
checked against the clock on every lookup (`adnomaly.sinks.features.online.read_latest`).

Bounded: at most `max_keys` Redis keys are kept; storing one more drops the key stored first (insertion
order). Redis goes on tracking a dropped key, which costs one needless invalidation message later.
"""

from __future__ import annotations

from collections.abc import Sequence

Reply = list[bytes | None]
Fields = tuple[str | bytes, ...]


class TrackedReplies:
    """`HMGET` replies by (key, fields), dropped on invalidation; at most `max_keys` keys."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1 (0 means no cache: do not make one)")
        self.max_keys = max_keys
        self._by_key: dict[bytes, dict[Fields, Reply]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: bytes, fields: Fields) -> Reply | None:
        """A copy of the kept reply (counted as a hit), or None. Not finding one is not counted here: a miss is
        a question sent to Redis instead, which only the caller knows it sends (`WireClient` adds to `misses`)."""
        kept = self._by_key.get(key)
        reply = kept.get(fields) if kept is not None else None
        if reply is None:
            return None
        self.hits += 1
        return list(reply)

    def store(self, key: bytes, fields: Fields, reply: Reply) -> None:
        kept = self._by_key.get(key)
        if kept is None:
            if len(self._by_key) >= self.max_keys:
                del self._by_key[next(iter(self._by_key))]
            kept = self._by_key[key] = {}
        kept[fields] = list(reply)

    def invalidate(self, keys: Sequence[bytes] | None) -> None:
        """What Redis's `invalidate` push names: these keys, or every key (`None`)."""
        if keys is None:
            self._by_key.clear()
            return
        for key in keys:
            self._by_key.pop(key, None)

    def clear(self) -> None:
        self._by_key.clear()
