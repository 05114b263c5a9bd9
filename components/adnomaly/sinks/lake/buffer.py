"""Per-partition buffers of the lake sink and the decision when (and where) to cut a flush. Pure.

A partition's buffer is flushed when it holds `flush_events` messages (exactly that many are cut), when
its raw bytes reach `flush_bytes`, or when its oldest message has waited `flush_interval_s`. A recorded
cut (see layout.py) overrides all of these: the buffer is then flushed exactly up to the cut's last
offset, as soon as that offset has arrived, and never before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adnomaly.events.codec import ValidEvent
from adnomaly.sinks.lake.dedup import SeenIds


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    event: ValidEvent | None  # None: invalid (the processor dead-letters it); part of the range, not written
    size: int  # raw message bytes
    timestamp_ms: int = 0  # the Kafka message timestamp (the dedup rule's clock, see dedup.py)


@dataclass(frozen=True)
class FlushPolicy:
    events: int
    bytes: int
    interval_s: float


@dataclass(frozen=True)
class RecordedCut:
    """A flush of first..last that was recorded (committed as metadata at offset `first`) by someone."""

    first: int
    last: int


@dataclass
class PartitionBuffer:
    topic: str
    partition: int
    entries: list[Entry] = field(default_factory=list)
    bytes: int = 0
    started_at: float | None = None  # clock() when the oldest buffered entry arrived
    checked: bool = False  # ready to flush: the committed metadata was read (and `seen` rebuilt) since assigned
    cut: RecordedCut | None = None
    cut_read: bool = False  # the committed metadata was read since the assignment
    seen: SeenIds | None = None  # the event ids of the partition's last W (dedup.py); None: not rebuilt yet

    def add(self, entry: Entry, now: float) -> None:
        if self.entries and entry.offset <= self.entries[-1].offset:
            return  # a message seen already (e.g. consumed again after a seek): keep the first copy
        if not self.entries:
            self.started_at = now
        self.entries.append(entry)
        self.bytes += entry.size

    def take(self, count: int, now: float) -> list[Entry]:
        """Remove and return the first `count` entries."""
        taken, self.entries = self.entries[:count], self.entries[count:]
        self.bytes -= sum(entry.size for entry in taken)
        self.started_at = now if self.entries else None
        if self.cut is not None and taken and taken[-1].offset >= self.cut.last:
            self.cut = None
        return taken


def due(buffer: PartitionBuffer, policy: FlushPolicy, now: float, *, force: bool = False) -> int:
    """How many of the buffer's first entries to flush now (0: none yet).

    `force` (stopping, or too much memory held) flushes whatever may be flushed, but a recorded cut is
    still only flushed whole.
    """
    entries = buffer.entries
    if not entries or not buffer.checked:
        return 0
    cut = buffer.cut
    if cut is not None:
        if entries[0].offset != cut.first or entries[0].offset > cut.last:
            buffer.cut = None  # the recorded range is gone (retention) or was passed: cut freely
        else:
            reached = next((index for index, entry in enumerate(entries) if entry.offset > cut.last), None)
            if reached is not None:
                return reached  # a gap after the cut's last offset: it was the last one there is
            return len(entries) if entries[-1].offset == cut.last else 0
    if len(entries) >= policy.events:
        return policy.events
    if force or buffer.bytes >= policy.bytes:
        return len(entries)
    if buffer.started_at is not None and now - buffer.started_at >= policy.interval_s:
        return len(entries)
    return 0


def over_memory(buffers: list[PartitionBuffer], limit: int) -> PartitionBuffer | None:
    """The biggest buffer, when all of them together hold more than `limit` bytes."""
    if sum(buffer.bytes for buffer in buffers) <= limit:
        return None
    return max(buffers, key=lambda buffer: buffer.bytes, default=None)
