"""The lake sink loop: consume the raw topic → buffer per partition → flush offset ranges as Parquet.

Flush protocol for the offset ranges being cut (one per due partition):
  1. Record each range as the group's offset metadata at its first offset (`encode_cut`). Committing
     offset `first` moves nothing (the group is there already); the metadata tells whoever consumes the
     partition next after a crash to cut exactly there again.
  2. Write the range's valid events, one Parquet file per hour (or day) of event time, all named after
     the range. A failing write is retried with back-off while the partitions are paused.
  3. Commit `last + 1`.
A crash before 3 replays the range from `first`, cut at the recorded `last`: the same events go to the
same file names, so every message ends up in exactly one file and no two files' ranges overlap. A range
whose cut could not be recorded (e.g. its partition was revoked meanwhile) is never written.

Every *event id*, not only every message, lands once within the dedup window W: a range's copies of ids
seen within W (by Kafka timestamp) are left out of its files (dedup.py). Before a newly assigned partition
is flushed, its dedup state is rebuilt by reading the partition back over W from the topic (history.py),
so a replay decides exactly as the first attempt did, after a kill -9 or on another sink.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from adnomaly.events.codec import InvalidEvent, ValidEvent
from adnomaly.kafka_record import message_timestamp
from adnomaly.owed_offsets import CommitFailed, commit
from adnomaly.sinks.consume import (
    Consumer,
    Waiter,
    describe,
    forget_lag,
    one_line,
    update_lag,
)
from adnomaly.sinks.lake.buffer import Entry, FlushPolicy, PartitionBuffer, RecordedCut, due, over_memory
from adnomaly.sinks.lake.dedup import DEFAULT_MAX_IDS, SeenIds
from adnomaly.sinks.lake.history import History
from adnomaly.sinks.lake.layout import (
    OffsetRange,
    Partitioning,
    bucket_dir,
    decode_cut,
    encode_cut,
    object_path,
    time_bucket,
)
from adnomaly.sinks.lake.metrics import DUPLICATE, INVALID, WRITTEN, LakeMetrics
from adnomaly.sinks.lake.storage import LakeStore
from adnomaly.sinks.lake.table import Converter, parquet_bytes

_log = logging.getLogger(__name__)

TPKey = tuple[str, int]


@dataclass(frozen=True)
class LakeSettings:
    topic: str
    partitioning: Partitioning
    policy: FlushPolicy
    max_buffer_bytes: int
    consume_batch: int = 5000
    poll_timeout_s: float = 0.5
    compression: str = "zstd"
    lag_interval_s: float = 5.0
    stop_attempts: int = 3  # write attempts while stopping, before leaving the rest to be replayed
    dedup_window_ms: int | None = None  # W (plan.dedup_window_ms); None: no dedup by event id
    dedup_max_ids: int = DEFAULT_MAX_IDS  # per partition


@dataclass
class LakeStats:
    """Running totals of this process (for benchmarks and logs)."""

    messages: int = 0  # messages of committed ranges, valid or not
    written: int = 0
    invalid: int = 0
    duplicates: int = 0
    files: int = 0
    bytes_written: int = 0
    raw_bytes: int = 0
    flushes: int = 0
    first_message_at: float | None = None
    last_commit_at: float | None = None


@dataclass
class _Segment:
    offsets: OffsetRange
    entries: list[Entry]
    buffer: PartitionBuffer  # the buffer it was cut from: a partition revoked and re-assigned gets a new one
    duplicates: int = 0  # entries left out as copies (their `event` set to None)


class LakeSink:
    def __init__(
        self,
        settings: LakeSettings,
        consumer: Consumer,
        store: LakeStore,
        decode: Callable[[bytes], ValidEvent],
        converter: Converter,
        metrics: LakeMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[int], float] | None = None,
        history: History | None = None,
    ) -> None:
        if settings.dedup_window_ms is not None and history is None:
            raise ValueError("dedup by event id needs the topic's history to rebuild its state")
        self.settings = settings
        self._history = history
        self._consumer = consumer
        self._store = store
        self._decode = decode
        self._converter = converter
        self._metrics = metrics
        self._clock = clock
        self._buffers: dict[TPKey, PartitionBuffer] = {}
        self._stopping = False
        self._subscribed = False
        self._next_lag_update = 0.0
        waiter_options: dict[str, Any] = {"clock": clock, "retries": metrics.retries}
        if backoff is not None:
            waiter_options["backoff"] = backoff
        self._waiter = Waiter(
            consumer, self._add, batch=settings.consume_batch, stopping=lambda: self._stopping, **waiter_options
        )
        self.stats = LakeStats()

    # -- lifecycle -------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Flush what may be flushed, commit it and leave (safe to call from a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        try:
            if not self.start():
                return
            while not self._stopping:
                self.poll_once()
        finally:
            self.close()

    def start(self) -> bool:
        """Make sure the bucket/directory exists (waiting for the store), then join the consumer group."""
        if self._waiter.retry(self._ensure_store, "preparing the lake", (OSError,)) is None:
            return False
        self._consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._subscribed = True
        return True

    def _ensure_store(self) -> bool:
        self._store.ensure()
        return True

    def close(self) -> None:
        """Flush everything that may be flushed (a few attempts), then leave the group."""
        try:
            if self._subscribed:
                self._stopping = True
                self._check_cuts()
                while self._flush_due(force=True):
                    pass
        except Exception:
            _log.exception("could not flush on the way out; the rest stays uncommitted and will be replayed")
        finally:
            self._consumer.close()

    # -- the loop --------------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Consume once and flush whatever is due; returns the messages committed by this call."""
        before = self.stats.messages
        self._add(self._consumer.consume(num_messages=self.settings.consume_batch,
                                         timeout=self.settings.poll_timeout_s))  # fmt: skip
        self._check_cuts()
        self._flush_due(force=False)
        if self._clock() >= self._next_lag_update:
            self._next_lag_update = self._clock() + self.settings.lag_interval_s
            update_lag(self._consumer, self._metrics.consumer_lag)
        return self.stats.messages - before

    @property
    def buffered(self) -> int:
        return sum(len(buffer.entries) for buffer in self._buffers.values())

    def _add(self, messages: list[Any]) -> None:
        now = self._clock()
        for message in messages:
            if message.error() is not None:
                _log.warning("consumer error: %s", message.error())
                continue
            buffer = self._buffers.get((message.topic(), message.partition()))
            if buffer is None:  # a message of a partition revoked meanwhile: its next owner reads it
                continue
            value = message.value() or b""
            try:
                event: ValidEvent | None = self._decode(value)
            except InvalidEvent:
                event = None
            buffer.add(Entry(message.offset(), event, len(value), message_timestamp(message)), now)
            if self.stats.first_message_at is None:
                self.stats.first_message_at = now
        self._metrics.buffered_events.set(self.buffered)

    def _check_cuts(self) -> None:
        """Read the recorded cuts of newly assigned partitions (before any of them is flushed)."""
        self._read_cuts()
        if self.settings.dedup_window_ms is not None:
            self._rebuild_seen(self.settings.dedup_window_ms)

    def _read_cuts(self) -> None:
        unchecked = [TopicPartition(topic, part) for (topic, part), b in self._buffers.items() if not b.cut_read]
        if not unchecked:
            return
        try:
            committed = self._consumer.committed(unchecked, timeout=5.0)
        except KafkaException as exc:
            _log.warning("cannot read committed offsets yet (%s); will try again", one_line(exc))
            return
        for tp in committed:
            buffer = self._buffers.get((tp.topic, tp.partition))
            if buffer is None or tp.error is not None:
                continue
            last = decode_cut(tp.metadata, tp.offset) if tp.offset >= 0 else None
            buffer.cut = RecordedCut(tp.offset, last) if last is not None else None
            buffer.cut_read = True
            buffer.checked = self.settings.dedup_window_ms is None
            if buffer.cut is not None:
                _log.info("%s[%d]: replaying the recorded range %d-%d", tp.topic, tp.partition, tp.offset, last)

    def _rebuild_seen(self, window_ms: int) -> None:
        """Rebuild the dedup state of partitions about to be flushed, from the topic (see dedup.py)."""
        assert self._history is not None
        for buffer in self._buffers.values():
            if buffer.checked or not buffer.cut_read or not buffer.entries:
                continue  # an idle partition needs no state until its first message arrives
            seen = SeenIds(window_ms, max_ids=self.settings.dedup_max_ids)
            first = buffer.entries[0]
            try:
                history = self._history.read(
                    buffer.topic, buffer.partition, seen.history_start_ms(first.timestamp_ms), first.offset
                )
            except (KafkaException, TimeoutError) as exc:
                _log.warning("cannot read %s[%d] back yet (%s); will try again", buffer.topic, buffer.partition,
                             one_line(exc))  # fmt: skip
                continue
            seen.remember(history)
            buffer.seen, buffer.checked = seen, True
            _log.info("%s[%d]: dedup state rebuilt from %d messages before offset %d (%d ids)",
                      buffer.topic, buffer.partition, len(history), first.offset, len(seen))  # fmt: skip

    def _flush_due(self, *, force: bool) -> bool:
        """Flush the partitions that are due; True when something was flushed and committed."""
        now = self._clock()
        picks = {key: count for key, buffer in self._buffers.items()
                 if (count := due(buffer, self.settings.policy, now, force=force))}  # fmt: skip
        biggest = over_memory(list(self._buffers.values()), self.settings.max_buffer_bytes)
        if biggest is not None:
            key = (biggest.topic, biggest.partition)
            count = due(biggest, self.settings.policy, now, force=True)
            if count:
                picks[key] = count
        if not picks:
            return False
        segments = []
        for key, count in sorted(picks.items()):
            buffer = self._buffers[key]
            entries = buffer.take(count, now)
            offsets = OffsetRange(key[0], key[1], entries[0].offset, entries[-1].offset)
            entries, duplicates = _without_copies(entries, buffer.seen)
            segments.append(_Segment(offsets, entries, buffer, duplicates))
        self._metrics.buffered_events.set(self.buffered)
        return self._flush(segments)

    # -- one flush ---------------------------------------------------------------------------------------

    def _owned(self, segments: list[_Segment]) -> list[_Segment]:
        return [s for s in segments if self._buffers.get((s.offsets.topic, s.offsets.partition)) is s.buffer]

    def _flush(self, segments: list[_Segment]) -> bool:
        started = self._clock()
        give_up = self.settings.stop_attempts if self._stopping else None
        # 1. record the cuts
        recorded = self._waiter.retry(
            lambda: self._record_cuts(segments), "recording the flush's offset ranges",
            (CommitFailed,), give_up_after=give_up,
        )  # fmt: skip
        if not recorded:  # a stop meanwhile, or every partition of the flush was revoked
            return False
        segments = recorded
        # 2. build and write the files (a replay rebuilds the very same files)
        files = [(path, data) for segment in segments for path, data in self._files(segment)]
        for path, data in files:
            if self._waiter.retry(lambda p=path, d=data: self._put(p, d), f"writing {path}", (OSError,),
                                  give_up_after=give_up) is None:  # fmt: skip
                return False
        # 3. commit the ends of the ranges
        owned = self._owned(segments)
        try:
            commit(self._consumer, [TopicPartition(s.offsets.topic, s.offsets.partition, s.offsets.last + 1)
                                    for s in owned])  # fmt: skip
        except CommitFailed as exc:
            # The files are written; whoever consumes the partitions next replays the recorded ranges to the
            # same file names.
            self._metrics.commit_failures.inc()
            _log.warning("offset commit after the flush failed (the ranges will be replayed): %s", exc)
            return False
        self._record(owned, files, started)
        return True

    def _record_cuts(self, segments: list[_Segment]) -> list[_Segment]:
        owned = self._owned(segments)
        commit(self._consumer, [
            TopicPartition(s.offsets.topic, s.offsets.partition, s.offsets.first,
                           metadata=encode_cut(s.offsets.first, s.offsets.last))
            for s in owned
        ])  # fmt: skip
        return owned

    def _files(self, segment: _Segment) -> list[tuple[str, bytes]]:
        partitioning = self.settings.partitioning
        groups: dict[int, list[tuple[int, ValidEvent]]] = defaultdict(list)
        for entry in segment.entries:
            if entry.event is not None:
                groups[time_bucket(entry.event.event_time, partitioning)].append((entry.offset, entry.event))
        files = []
        for bucket in sorted(groups):
            table = self._converter.table(segment.offsets.partition, groups[bucket])
            path = object_path(bucket_dir(bucket, partitioning), segment.offsets)
            files.append((path, parquet_bytes(table, self.settings.compression)))
        return files

    def _put(self, path: str, data: bytes) -> bool:
        try:
            self._store.put(path, data)
        except OSError:
            self._metrics.upload_errors.inc()
            raise
        return True

    def _record(self, segments: list[_Segment], files: list[tuple[str, bytes]], started: float) -> None:
        now = self._clock()
        stats = self.stats
        messages = sum(len(s.entries) for s in segments)
        written = sum(1 for s in segments for e in s.entries if e.event is not None)
        duplicates = sum(s.duplicates for s in segments)
        written_bytes = sum(len(data) for _, data in files)
        stats.flushes += 1
        stats.messages += messages
        stats.written += written
        stats.invalid += messages - written - duplicates
        stats.duplicates += duplicates
        stats.files += len(files)
        stats.bytes_written += written_bytes
        stats.raw_bytes += sum(e.size for s in segments for e in s.entries)
        stats.last_commit_at = now
        metrics = self._metrics
        metrics.events.labels(WRITTEN).inc(written)
        metrics.events.labels(INVALID).inc(messages - written - duplicates)
        metrics.events.labels(DUPLICATE).inc(duplicates)
        metrics.files.inc(len(files))
        metrics.bytes_written.inc(written_bytes)
        metrics.flush_seconds.observe(now - started)
        _log.debug("flushed %s into %d files", ", ".join(
            f"{s.offsets.topic}[{s.offsets.partition}] {s.offsets.first}-{s.offsets.last}" for s in segments
        ), len(files))  # fmt: skip

    # -- rebalances ----------------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._buffers[(tp.topic, tp.partition)] = PartitionBuffer(tp.topic, tp.partition)
        _log.info("assigned %s", describe(partitions))
        self._waiter.assigned(partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Unflushed messages are dropped: the next owner reads them again from the last commit (and
        # replays a recorded cut exactly).
        for tp in partitions:
            self._buffers.pop((tp.topic, tp.partition), None)
        forget_lag(self._metrics.consumer_lag, partitions)
        self._metrics.buffered_events.set(self.buffered)
        _log.info("revoked %s", describe(partitions))


def _without_copies(entries: list[Entry], seen: SeenIds | None) -> tuple[list[Entry], int]:
    """`entries` (in offset order) with copies of ids seen within W turned into unwritten entries; the state
    records the range's ids. The offsets stay: the range is still the range (file names, commits)."""
    if seen is None:
        return entries, 0
    out, duplicates = [], 0
    for entry in entries:
        if entry.event is not None and not seen.first_copy(entry.event.event_id, entry.timestamp_ms):
            entry = Entry(entry.offset, None, entry.size, entry.timestamp_ms)
            duplicates += 1
        out.append(entry)
    return out, duplicates
