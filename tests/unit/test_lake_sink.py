"""The lake sink's flush protocol against an in-memory Kafka and a real directory.

The in-memory Kafka keeps the topic's partitions and the group's committed offsets with their metadata
across consumers, so a test can crash one sink at a chosen point (an exception that nothing catches)
and start another one on the same group, as a restarted process would. The same behaviours are checked
against real Kafka, MinIO and process kills in tests/integration/test_lake_sink.py.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from adnomaly.events.codec import codec_for
from adnomaly.kafka_record import HeldRecord
from adnomaly.sinks.lake.buffer import FlushPolicy
from adnomaly.sinks.lake.dedup import SLACK_MS, Seen, SeenIds
from adnomaly.sinks.lake.layout import OffsetRange, parse_file_name, time_partition
from adnomaly.sinks.lake.metrics import LakeMetrics
from adnomaly.sinks.lake.runner import LakeSettings, LakeSink
from adnomaly.sinks.lake.storage import LakeStore
from adnomaly.sinks.lake.table import converter_for
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

TOPIC = "pipe-raw"
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
CODEC = codec_for(schema="clickstream")


class Crash(BaseException):
    """The process dies here (nothing in the sink catches a BaseException)."""


def event(n: int, hour: int) -> bytes:
    return msgspec.json.encode({
        "event_id": f"e-{n}", "timestamp": (BASE + timedelta(hours=hour, seconds=n)).isoformat(),
        "user_id_hash": "u", "ad_id": "a", "campaign_id": "c", "geo": "US", "platform": "web",
        "user_agent": "ua", "CPC": 0.1, "CTR": 0.1, "conversion": 0, "bounce_rate": 0.5,
    })  # fmt: skip


def msg(raw: bytes, part: int, off: int, ts: int = 0) -> HeldRecord:
    return HeldRecord(raw, part, off, TOPIC, ts=ts)

@dataclass
class FakeKafka:
    """One topic and one consumer group's committed offsets (with metadata), outliving consumers."""

    partitions: int
    logs: dict[int, list[bytes]] = field(default_factory=dict)
    stamps: dict[int, list[int]] = field(default_factory=dict)  # Kafka timestamps (ms), parallel to logs
    committed: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    commits: list[list[tuple[int, int, str | None]]] = field(default_factory=list)
    on_commit: Callable[[list[TopicPartition]], None] | None = None
    now: float = 0.0

    def __post_init__(self) -> None:
        self.logs = {p: [] for p in range(self.partitions)}
        self.stamps = {p: [] for p in range(self.partitions)}

    def produce(self, partition: int, value: bytes, timestamp_ms: int | None = None) -> None:
        self.logs[partition].append(value)
        self.stamps[partition].append(len(self.logs[partition]) if timestamp_ms is None else timestamp_ms)

    def end(self) -> dict[int, int]:
        return {p: len(log) for p, log in self.logs.items()}

    def committed_offsets(self) -> dict[int, int]:
        return {p: self.committed.get(p, (0, None))[0] for p in self.logs}


class FakeConsumer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.callbacks: dict[str, Any] = {}
        self.assigned: list[int] = []
        self.positions: dict[int, int] = {}
        self.paused: set[int] = set()
        self.consumed_while_paused = 0
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        assert topics == [TOPIC]
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[HeldRecord]:
        self.kafka.now += max(timeout, 0.0)
        if not self.assigned:
            self.assigned = list(self.kafka.logs)
            self.positions = {p: self.kafka.committed.get(p, (0, None))[0] for p in self.assigned}
            self.callbacks["on_assign"](self, [TopicPartition(TOPIC, p) for p in self.assigned])
        out: list[HeldRecord] = []
        for p in self.assigned:
            if p in self.paused:
                continue
            log = self.kafka.logs[p]
            while self.positions[p] < len(log) and len(out) < num_messages:
                out.append(msg(log[self.positions[p]], p, self.positions[p], self.kafka.stamps[p][self.positions[p]]))
                self.positions[p] += 1
        if self.paused:
            self.consumed_while_paused += 1
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert not asynchronous
        if self.kafka.on_commit is not None:
            self.kafka.on_commit(offsets)
        self.kafka.commits.append([(tp.partition, tp.offset, tp.metadata) for tp in offsets])
        for tp in offsets:
            self.kafka.committed[tp.partition] = (tp.offset, tp.metadata)
        return offsets

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        out = []
        for tp in partitions:
            offset, metadata = self.kafka.committed.get(tp.partition, (-1001, None))
            if metadata is None:
                out.append(TopicPartition(TOPIC, tp.partition, offset))
            else:
                out.append(TopicPartition(TOPIC, tp.partition, offset, metadata=metadata))
        return out

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, tp.partition, self.positions[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = -1, cached: bool = False) -> Any:
        return 0, len(self.kafka.logs[partition.partition])

    def close(self) -> None:
        self.closed = True


class FlakyStore(LakeStore):
    """A real directory store whose puts can fail (OSError: an outage) or crash the process."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"file://{root}")
        self.puts: list[str] = []
        self.fail: Callable[[int], BaseException | None] = lambda _n: None

    def put(self, relative_path: str, data: bytes) -> None:
        error = self.fail(len(self.puts))
        self.puts.append(relative_path)
        if error is not None:
            raise error
        super().put(relative_path, data)


@dataclass
class FakeHistory:
    """The partition read back from the in-memory log (what TopicHistory reads from Kafka)."""

    kafka: FakeKafka
    reads: list[tuple[int, int, int]] = field(default_factory=list)

    def read(self, topic: str, partition: int, since_ms: int, end_offset: int) -> list[Seen]:
        assert topic == TOPIC
        self.reads.append((partition, since_ms, end_offset))
        out = []
        for raw, ts in list(zip(self.kafka.logs[partition], self.kafka.stamps[partition], strict=True))[:end_offset]:
            if ts >= since_ms:
                try:
                    out.append(Seen(CODEC.decode(raw).event_id, ts))
                except ValueError:
                    out.append(Seen(None, ts))
        return out


def make_sink(
    kafka: FakeKafka, store: LakeStore, policy: FlushPolicy, dedup_window_ms: int | None = None
) -> tuple[LakeSink, FakeConsumer]:
    consumer = FakeConsumer(kafka)
    settings = LakeSettings(topic=TOPIC, partitioning="hourly", policy=policy, max_buffer_bytes=10**9,
                            consume_batch=7, poll_timeout_s=0.5, dedup_window_ms=dedup_window_ms)  # fmt: skip
    sink = LakeSink(
        settings, consumer, store, CODEC.decode, converter_for("clickstream", None, "timestamp"),
        LakeMetrics.create(CollectorRegistry()), clock=lambda: kafka.now, backoff=lambda _n: 0.001,
        history=FakeHistory(kafka) if dedup_window_ms is not None else None,
    )  # fmt: skip
    assert sink.start()
    return sink, consumer


def drain(sink: LakeSink, kafka: FakeKafka, max_polls: int = 500) -> None:
    for _ in range(max_polls):
        if kafka.committed_offsets() == kafka.end():
            return
        sink.poll_once()
    raise AssertionError(f"not drained: committed {kafka.committed_offsets()}, end {kafka.end()}")


def lake_contents(root: Path) -> tuple[dict[str, OffsetRange], list[dict[str, Any]]]:
    """{relative path: range named} and every row of every file (with its file's path)."""
    files: dict[str, OffsetRange] = {}
    rows: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.parquet")):
        relative = str(path.relative_to(root))
        offsets = parse_file_name(relative)
        assert offsets is not None, relative
        files[relative] = offsets
        for row in pq.read_table(path).to_pylist():
            rows.append({**row, "_file": relative})
    return files, rows


def check_exactly_once(root: Path, kafka: FakeKafka) -> None:
    """Every valid message in exactly one file, inside that file's range and hour; ranges never overlap."""
    files, rows = lake_contents(root)
    ranges = sorted(set(files.values()))
    for a, b in itertools.pairwise(ranges):
        assert not a.overlaps(b), f"overlapping ranges {a} and {b}"
    seen = Counter((row["_kafka_partition"], row["_kafka_offset"]) for row in rows)
    assert [key for key, count in seen.items() if count > 1] == []
    expected = set()
    for partition, log in kafka.logs.items():
        for offset, raw in enumerate(log):
            try:
                CODEC.decode(raw)
            except ValueError:
                continue
            expected.add((partition, offset))
    assert set(seen) == expected
    for row in rows:
        offsets = files[row["_file"]]
        assert offsets.partition == row["_kafka_partition"]
        assert offsets.first <= row["_kafka_offset"] <= offsets.last
        assert row["_file"].startswith(time_partition(row["timestamp"], "hourly") + "/")


def fill(kafka: FakeKafka, count: int, *, start: int = 0, invalid_every: int = 0) -> None:
    for n in range(start, start + count):
        raw = b'{"broken": ' if invalid_every and n % invalid_every == 0 else event(n, hour=n % 3)
        kafka.produce(n % kafka.partitions, raw)


def test_every_valid_message_lands_in_exactly_one_file_of_its_hour(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=3)
    fill(kafka, 120, invalid_every=9)
    sink, _ = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=7, bytes=10**9, interval_s=3))
    drain(sink, kafka)
    check_exactly_once(tmp_path, kafka)
    files, _ = lake_contents(tmp_path)
    assert len({path.split("/")[1] for path in files}) == 3  # three hours of event time
    assert sink.stats.invalid == len([n for n in range(120) if n % 9 == 0])
    # every flush recorded its cut before the final commit
    cuts = [c for batch in kafka.commits for c in batch if c[2]]
    assert cuts and all(meta == f"adnomaly-lake:v1:{off}-" + meta.rsplit("-", 1)[1] for _, off, meta in cuts)


def test_a_range_spanning_hours_gets_one_file_per_hour_with_the_same_name(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=1)
    for n in range(6):
        kafka.produce(0, event(n, hour=n % 2))
    sink, _ = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=6, bytes=10**9, interval_s=99))
    drain(sink, kafka)
    files, _ = lake_contents(tmp_path)
    assert len(files) == 2
    assert {p.rsplit("/", 1)[1] for p in files} == {f"{TOPIC}+0+0-5.parquet"}


@pytest.mark.parametrize("crash_at_put", [0, 1, 2])
def test_a_crash_mid_flush_replays_the_recorded_range_exactly(tmp_path: Path, crash_at_put: int) -> None:
    kafka = FakeKafka(partitions=2)
    fill(kafka, 10)  # 5 per partition; flushed by age below, so the cut depends on timing
    store = FlakyStore(tmp_path)
    store.fail = lambda n: Crash() if n == crash_at_put else None
    sink, _ = make_sink(kafka, store, FlushPolicy(events=1000, bytes=10**9, interval_s=1.0))
    with pytest.raises(Crash):
        drain(sink, kafka)
    assert kafka.committed_offsets() == {0: 0, 1: 0}  # the cuts are recorded, nothing is committed past them
    assert all(meta for _, _, meta in kafka.commits[-1])
    fill(kafka, 30, start=10)  # more arrives while the sink is down
    # the restarted sink would take everything in one go, were it not for the recorded cuts
    store.fail = lambda _n: None
    restarted, _ = make_sink(kafka, store, FlushPolicy(events=1000, bytes=10**9, interval_s=5.0))
    drain(restarted, kafka)
    check_exactly_once(tmp_path, kafka)
    files, _ = lake_contents(tmp_path)
    assert {(r.partition, r.first, r.last) for r in files.values()} == {(0, 0, 4), (1, 0, 4), (0, 5, 19), (1, 5, 19)}


def test_a_crash_after_the_files_before_the_commit_rewrites_the_same_files(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=1)
    fill(kafka, 8)
    store = FlakyStore(tmp_path)
    sink, _ = make_sink(kafka, store, FlushPolicy(events=1000, bytes=10**9, interval_s=1.0))

    def crash_on_final_commit(offsets: list[TopicPartition]) -> None:
        if not offsets[0].metadata:
            raise Crash()

    kafka.on_commit = crash_on_final_commit
    with pytest.raises(Crash):
        drain(sink, kafka)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet"))
    assert written and kafka.committed_offsets() == {0: 0}
    kafka.on_commit = None
    fill(kafka, 8, start=8)
    restarted, _ = make_sink(kafka, store, FlushPolicy(events=1000, bytes=10**9, interval_s=1.0))
    drain(restarted, kafka)
    check_exactly_once(tmp_path, kafka)
    assert [p for p in store.puts[: len(written)]] == [str(p) for p in written]
    assert store.puts[len(written) : 2 * len(written)] == store.puts[: len(written)]  # the replay: same names


def test_an_outage_is_retried_with_partitions_paused_and_nothing_committed(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=1)
    fill(kafka, 10)
    store = FlakyStore(tmp_path)
    store.fail = lambda n: OSError("connection refused") if n < 4 else None
    commits_during_outage: list[int] = []

    def watch(offsets: list[TopicPartition]) -> None:
        if len(store.puts) <= 4 and not offsets[0].metadata:
            commits_during_outage.append(offsets[0].offset)

    kafka.on_commit = watch
    sink, consumer = make_sink(kafka, store, FlushPolicy(events=5, bytes=10**9, interval_s=99))
    drain(sink, kafka)
    assert commits_during_outage == []
    assert consumer.consumed_while_paused >= 4
    assert not consumer.paused
    check_exactly_once(tmp_path, kafka)


def test_stop_flushes_what_is_buffered(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=2)
    fill(kafka, 9)
    sink, consumer = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=100, bytes=10**9,
                                                                                   interval_s=99))  # fmt: skip
    sink.poll_once()
    assert kafka.committed_offsets() == {0: 0, 1: 0}
    consumed = dict(consumer.positions)
    assert sum(consumed.values()) == 7  # one consume() of consume_batch messages
    sink.request_stop()
    sink.close()
    assert kafka.committed_offsets() == consumed  # what was buffered, not what is still in Kafka
    assert consumer.closed
    for partition, log in kafka.logs.items():
        del log[consumed[partition]:]
    check_exactly_once(tmp_path, kafka)


def test_a_revoked_partition_is_neither_written_nor_committed(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=2)
    fill(kafka, 10)
    store = FlakyStore(tmp_path)
    sink, consumer = make_sink(kafka, store, FlushPolicy(events=5, bytes=10**9, interval_s=99))
    revoked = False

    def revoke_partition_1(offsets: list[TopicPartition]) -> None:
        nonlocal revoked
        if not revoked and any(tp.metadata for tp in offsets):
            revoked = True
            consumer.callbacks["on_revoke"](consumer, [TopicPartition(TOPIC, 1)])
            consumer.assigned.remove(1)
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

    kafka.on_commit = revoke_partition_1
    for _ in range(5):
        sink.poll_once()
    assert kafka.committed_offsets() == {0: 5, 1: 0}
    assert all(parse_file_name(p).partition == 0 for p in store.puts)  # type: ignore[union-attr]


def test_arrow_reads_the_lake_back_as_one_table(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=2)
    fill(kafka, 40)
    sink, _ = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=6, bytes=10**9, interval_s=3))
    drain(sink, kafka)
    import pyarrow.dataset as ds

    table = ds.dataset(str(tmp_path), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 40
    assert sorted(table.column("event_id").to_pylist()) == sorted(f"e-{n}" for n in range(40))
    assert {"dt", "hour"} <= set(table.schema.names)
    assert isinstance(table, pa.Table)


# -- one event id once, within the dedup window --------------------------------------------------------------


def resend(kafka: FakeKafka, ns: list[int], *, timestamp_ms: int, partitions: int | None = None) -> None:
    """Copies of events `ns` (same id, same bytes) as a client retry re-sends them: the ingest API keys by
    event id, so a copy lands on its original's partition."""
    for n in ns:
        kafka.produce(n % (partitions or kafka.partitions), event(n, hour=n % 3), timestamp_ms)


def ids_in_lake(root: Path) -> Counter[str]:
    return Counter(row["event_id"] for row in lake_contents(root)[1])


W = 600_000


def test_copies_of_an_id_within_the_window_are_written_once(tmp_path: Path) -> None:
    kafka = FakeKafka(partitions=2)
    for n in range(20):
        kafka.produce(n % 2, event(n, hour=n % 3), 1_000 * n)
    resend(kafka, [1, 2, 3, 4], timestamp_ms=25_000)  # a retried batch, in the next flush
    resend(kafka, [3], timestamp_ms=26_000)  # and again
    resend(kafka, [5, 6], timestamp_ms=5_000 + W)  # exactly W after their first copies: still copies
    resend(kafka, [7], timestamp_ms=7_000 + W + 1)  # later than W: written again (the guarantee's edge)
    sink, _ = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=5, bytes=10**9, interval_s=99),
                        dedup_window_ms=W)  # fmt: skip
    drain(sink, kafka)
    ids = ids_in_lake(tmp_path)
    assert set(ids) == {f"e-{n}" for n in range(20)}
    assert [i for i, c in ids.items() if c > 1] == ["e-7"]
    assert sink.stats.duplicates == 7 and sink.stats.written == 21 and sink.stats.invalid == 0


def test_without_dedup_every_copy_is_written(tmp_path: Path) -> None:
    """The other side of the test above: the lake is idempotent per offset only without a window."""
    kafka = FakeKafka(partitions=1)
    for n in range(5):
        kafka.produce(0, event(n, hour=0), n)
    resend(kafka, [1, 2], timestamp_ms=10)
    sink, _ = make_sink(kafka, LakeStore(f"file://{tmp_path}"), FlushPolicy(events=3, bytes=10**9, interval_s=99))
    drain(sink, kafka)
    assert ids_in_lake(tmp_path)["e-1"] == 2


@pytest.mark.parametrize("crash_at_put", [0, 1, 3])
def test_a_restarted_sink_rebuilds_the_ids_from_the_topic_and_replays_identically(
    tmp_path: Path, crash_at_put: int
) -> None:
    kafka = FakeKafka(partitions=2)
    for n in range(30):
        kafka.produce(n % 2, event(n, hour=n % 3), 1_000 * n)
    resend(kafka, list(range(0, 30, 3)), timestamp_ms=40_000)
    store = FlakyStore(tmp_path)
    store.fail = lambda n: Crash() if n == crash_at_put else None  # kill -9 in the middle of a flush
    policy = FlushPolicy(events=8, bytes=10**9, interval_s=99)
    sink, _ = make_sink(kafka, store, policy, dedup_window_ms=W)
    with pytest.raises(Crash):
        drain(sink, kafka)
    written_before = {p: (tmp_path / p).read_bytes() for p in lake_contents(tmp_path)[0]}
    # more copies arrive while it is down, of ids flushed before the crash and of ids not flushed yet
    resend(kafka, [0, 1, 28, 29], timestamp_ms=50_000)
    store.fail = lambda _n: None
    restarted, _ = make_sink(kafka, store, policy, dedup_window_ms=W)
    drain(restarted, kafka)
    ids = ids_in_lake(tmp_path)
    assert ids == Counter({f"e-{n}": 1 for n in range(30)})  # every id exactly once over all files
    for path, data in written_before.items():  # a replayed range rewrote the very same bytes
        assert (tmp_path / path).read_bytes() == data
    assert restarted._history.reads  # type: ignore[union-attr]
    assert all(since == first_ts - W - 60_000 for _, since, first_ts in
               [(p, s, kafka.stamps[p][e]) for p, s, e in restarted._history.reads])  # type: ignore[union-attr]


def test_the_rule_follows_kafka_timestamps_not_the_clock() -> None:
    seen = SeenIds(1_000, slack_ms=0)
    assert seen.first_copy("a", 10_000)
    assert not seen.first_copy("a", 11_000)  # 1 s later: within W
    assert seen.first_copy("a", 12_001)  # > W after the last written copy (11 000 was not written)
    assert not seen.first_copy("a", 12_500)
    assert seen.history_start_ms(50_000) == 49_000
    assert SeenIds(1_000).history_start_ms(50_000) == 49_000 - SLACK_MS


def test_the_seen_ids_are_bounded_by_the_window_and_the_cap() -> None:
    seen = SeenIds(1_000, slack_ms=500)
    for n in range(100):
        seen.first_copy(f"id-{n}", n * 100)  # 10 ids/s for 10 s
    assert len(seen) == 16  # the last W + slack: timestamps 8 400..9 900
    assert seen.evicted_early == 0
    capped = SeenIds(10_000, max_ids=5)
    for n in range(20):
        capped.first_copy(f"id-{n}", n)
    assert len(capped) == 5 and capped.evicted_early == 15
    assert capped.first_copy("id-0", 30)  # forgotten early: the cap shrinks the guarantee (counted)
    rebuilt = SeenIds(1_000, slack_ms=0)
    rebuilt.remember([Seen("x", 100), Seen(None, 150), Seen("y", 200)])
    assert not rebuilt.first_copy("x", 900) and len(rebuilt) == 2
