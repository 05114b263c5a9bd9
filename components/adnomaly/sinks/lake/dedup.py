"""Which messages of a partition are copies of an event id already written to the lake, within W. Pure.

A client that re-sends a batch to the ingest API puts the same event id on the raw topic twice. Offsets
alone (the flush protocol of runner.py) make every *message* land once; this makes every *event id* land
once, within the dedup window W (`events.dedupWindow`, see `plan.dedup_window_ms`), the same W as the
features job's.

The rule, per partition, on Kafka message timestamps: a message is a copy, and is not written, when an
earlier message of the same partition carried the same event id and a timestamp at most W before its own.
It is decided by the log alone, never by the clock of the process, so a replayed range (after a crash,
by this process or the partition's next owner) drops exactly the messages the first attempt dropped and
rewrites the very same files. Per partition is enough: the ingest API keys every event by its id, so all
copies of an id land on one partition (as long as the partition count does not change in between).

Where the state lives: in memory (`SeenIds`: id → timestamp, plus an arrival-ordered queue for eviction),
and nowhere else. The raw topic is its durable copy: when a partition is assigned (a start, a restart after
kill -9, a rebalance), the sink reads the partition back from the offset whose timestamp is W + SLACK before
the first message it is about to flush, up to that message (`history.py`), and rebuilds the set from it:
exactly the ids the rule can still match. The raw topic's retention (days) is far longer than W (minutes),
so the history is there; nothing extra is written per flush, and nothing is read per message.

Bounds: ids older than (newest timestamp - W - SLACK) are evicted as newer ones arrive, so the set holds
the ids of about W + SLACK of the partition's traffic, ~220 bytes each in CPython (measured: ~130 for the
dict slot, queue entry and int, ~85 for a 36-character id string): 120 events/s over 11 min is ~80k ids,
~17 MB; deciding costs ~1-3 µs per message. `max_ids` caps it for higher
rates (the oldest go first; the guarantee then shrinks to the last `max_ids` ids, counted by
`evicted_early`). SLACK absorbs producers' clock differences: timestamps within a partition are only
nearly ordered, and an id kept a little longer never changes a decision (the rule compares timestamps).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

SLACK_MS = 60_000
DEFAULT_MAX_IDS = 1_000_000


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as dedup sees it: its event id (None when invalid) and Kafka timestamp."""

    event_id: str | None
    timestamp_ms: int


class SeenIds:
    """The ids of one partition's last W (+ slack) of messages, and the rule that decides a copy."""

    def __init__(self, window_ms: int, *, max_ids: int = DEFAULT_MAX_IDS, slack_ms: int = SLACK_MS) -> None:
        if window_ms <= 0 or max_ids <= 0:
            raise ValueError("the dedup window and max_ids must be positive")
        self.window_ms = window_ms
        self.max_ids = max_ids
        self.slack_ms = slack_ms
        self._ids: dict[str, int] = {}  # id → timestamp of its last written copy
        self._order: deque[tuple[int, str]] = deque()  # (timestamp, id) in arrival order, for eviction
        self._horizon = -(2**62)  # nothing older than this is kept: newest timestamp - W - slack
        self.evicted_early = 0  # ids dropped by the cap before their W was over

    def __len__(self) -> int:
        return len(self._ids)

    def first_copy(self, event_id: str, timestamp_ms: int) -> bool:
        """Record the message; False when it is a copy of an id seen at most W before it."""
        ids = self._ids
        previous = ids.get(event_id)
        if previous is not None and previous >= timestamp_ms - self.window_ms:
            return False
        ids[event_id] = timestamp_ms  # new, or seen longer than W ago: this copy counts (again)
        order = self._order
        order.append((timestamp_ms, event_id))
        horizon = timestamp_ms - self.window_ms - self.slack_ms
        if horizon > self._horizon:
            self._horizon = horizon
        if order[0][0] < self._horizon or len(ids) > self.max_ids:
            self._evict()
        return True

    def remember(self, history: Iterable[Seen]) -> None:
        """Rebuild from the messages before the first one to decide (read back from the topic)."""
        for seen in history:
            if seen.event_id is not None:
                self.first_copy(seen.event_id, seen.timestamp_ms)

    def history_start_ms(self, first_timestamp_ms: int) -> int:
        """From which timestamp the topic must be read back before a message of `first_timestamp_ms`."""
        return first_timestamp_ms - self.window_ms - self.slack_ms

    def _evict(self) -> None:
        ids, order, horizon = self._ids, self._order, self._horizon
        while order and (order[0][0] < horizon or len(ids) > self.max_ids):
            timestamp, event_id = order.popleft()
            if ids.get(event_id) != timestamp:
                continue  # an entry superseded by a later copy of the same id
            if timestamp >= horizon:
                self.evicted_early += 1
            del ids[event_id]
