"""The processor loop's offset protocol, against in-memory stand-ins for Kafka and PostgreSQL.

The stand-ins keep one shared, ordered log of what happened, so a test can check *when* offsets were
committed relative to the database write and the dead-letter acknowledgements. The same behaviours are
checked against the real services in tests/integration/test_processor.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest
from adnomaly.events.codec import codec_for
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import UNSTORABLE, DeadLetter, prepare_batch
from adnomaly.processor.dlq import DeadLetterQueue
from adnomaly.processor.metrics import ProcessorMetrics
from adnomaly.processor.runner import LoopSettings, Processor, linger_left
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

TOPIC = "p-raw"
RECORD_TIME_MS = 1_700_000_000_000  # a fake record's Kafka timestamp: this plus its offset
NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
DECODE = codec_for(schema="clickstream").decode


def msg(raw: bytes | None, part: int, off: int) -> HeldRecord:
    return HeldRecord(raw, part, off, TOPIC, ts=RECORD_TIME_MS + off)

def event(event_id: str) -> bytes:
    return msgspec.json.encode({
        "event_id": event_id, "timestamp": NOW, "user_id_hash": "u", "ad_id": "a", "campaign_id": "c",
        "geo": "US", "platform": "web", "user_agent": "ua", "CPC": 0.1, "CTR": 0.1, "conversion": 0,
        "bounce_rate": 0.5,
    })  # fmt: skip


class FakeConsumer:
    """Partitions with queued messages; honours pause/resume; `hooks` run inside the next consume() calls."""

    def __init__(self, log: list[Any], partitions: Sequence[int] = (0, 1)) -> None:
        self.log = log
        self.assigned = [(TOPIC, p) for p in partitions]
        self.queues: dict[tuple[str, int], list[HeldRecord]] = {tp: [] for tp in self.assigned}
        self.paused: set[tuple[str, int]] = set()
        self.committed: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.high: dict[tuple[str, int], int] = {}
        self.hooks: list[Callable[[FakeConsumer], None]] = []
        self.callbacks: dict[str, Any] = {}
        self.consumed_while_paused = 0
        self.leak: list[HeldRecord] = []  # handed out by the next consume() even if paused (prefetched messages)
        self.closed = False
        self.inside = False
        self.refusals = 0  # commits to refuse, as Kafka does while a broker restarts
        self.calls: list[tuple[int, float]] = []  # (num_messages, timeout) of each consume()

    def add(self, partition: int, raws: Sequence[bytes | None]) -> None:
        queue = self.queues[(TOPIC, partition)]
        start = self.high.get((TOPIC, partition), 0)
        queue.extend(msg(raw, partition, start + i) for i, raw in enumerate(raws))
        self.high[(TOPIC, partition)] = start + len(raws)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.log.append(("subscribe", tuple(topics)))
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = 0) -> list[HeldRecord]:
        assert not self.inside, "consume() re-entered from a rebalance callback"
        self.calls.append((num_messages, timeout))
        self.inside = True
        try:
            if self.hooks:
                self.hooks.pop(0)(self)
        finally:
            self.inside = False
        out, self.leak = self.leak, []
        for tp in self.assigned:
            queue = self.queues[tp]
            while tp not in self.paused and queue and len(out) < num_messages:
                msg = queue.pop(0)
                self.positions[tp] = msg.off + 1
                out.append(msg)
        if self.paused:
            self.consumed_while_paused += 1
        self.log.append(("consume", len(out)))
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert asynchronous is False
        if self.refusals:
            self.refusals -= 1
            self.log.append(("commit-refused", {(tp.partition): tp.offset for tp in offsets}))
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        self.log.append(("commit", {(tp.partition): tp.offset for tp in offsets}))
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        return offsets

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        if not self.paused:
            self.log.append("pause")
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.log.append("resume")
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0, cached: bool = False) -> tuple[int, int]:
        return 0, self.high.get((tp.topic, tp.partition), 0)

    def revoke(self, partition: int) -> None:
        """What librdkafka does in a cooperative rebalance: the callback first, then the partition goes."""
        self.callbacks["on_revoke"](self, [TopicPartition(TOPIC, partition)])
        self.log.append(("revoked", partition))
        self.assigned.remove((TOPIC, partition))
        # The new owner starts from the committed offset: our uncommitted messages are gone for us.
        self.queues[(TOPIC, partition)] = []

    def close(self) -> None:
        self.callbacks["on_revoke"](self, self.assignment())
        self.closed = True
        self.log.append("close")


class FakeDatabase:
    """Event ids → rows, like the events table's primary key; `failures` scripted transient errors."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.rows: dict[bytes, bytes] = {}
        self.failures = 0  # the next N writes fail with a connection error
        self.delay = 0.0  # seconds each write takes
        self.migrate_failures = 0
        self.on_failure: Callable[[], None] | None = None
        self.lock = threading.Lock()

    def write(self, rows: Sequence[bytes]) -> int:
        time.sleep(self.delay)
        ids = [row.split(b"\t", 1)[0] for row in rows]
        with self.lock:
            if self.failures:
                self.failures -= 1
                self.log.append(("write-failed", len(rows)))
                if self.on_failure:
                    self.on_failure()
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            if any(b"poison" in row for row in rows):
                raise psycopg.DataError("invalid input syntax for type json")
            new = [i for i in dict.fromkeys(ids) if i not in self.rows]
            for row, event_id in zip(rows, ids, strict=True):
                self.rows.setdefault(event_id, row)
            self.log.append(("write", len(rows)))
            return len(new)


class FakeStore:
    """One connection to the FakeDatabase."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.in_use = threading.Lock()  # a connection is never used by two threads at once

    def migrate(self) -> list[int]:
        if self.db.migrate_failures:
            self.db.migrate_failures -= 1
            raise psycopg.OperationalError("connection refused")
        self.db.log.append("migrate")
        return [1]

    def connect(self) -> None:
        self.db.log.append("connect")

    def write(self, rows: Sequence[bytes]) -> int:
        assert self.in_use.acquire(blocking=False), "one connection used by two writers at once"
        try:
            return self.db.write(rows)
        finally:
            self.in_use.release()

    def close(self) -> None:
        self.db.log.append("store-close")


class FakeProducer:
    """Records dead letters; delivery reports are served by flush(); `fail` offsets fail once."""

    def __init__(self, log: list[Any], fail: set[int] | None = None) -> None:
        self.log = log
        self.fail = set(fail or ())
        self.pending: list[tuple[dict[str, Any], Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.closed = False

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.pending.append(({"topic": topic, "value": value, "key": key, **kwargs}, kwargs["on_delivery"]))

    def poll(self, timeout: float = 0) -> int:
        return self.flush(timeout)

    def flush(self, timeout: float = 0) -> int:
        pending, self.pending = self.pending, []
        for record, callback in pending:
            offset = int(dict(record["headers"])["source_offset"])
            if offset in self.fail:
                self.fail.discard(offset)
                callback("broker not available", None)
            else:
                self.delivered.append(record)
                self.log.append(("dlq-acked", offset))
                callback(None, None)
        return 0

    def close(self) -> bool:
        assert not self.pending, "a producer is closed only once everything in flight is delivered"
        self.closed = True
        return True


@dataclass
class Rig:
    processor: Processor
    consumer: FakeConsumer
    db: FakeDatabase
    producer: FakeProducer
    registry: CollectorRegistry
    log: list[Any]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def drain(self, max_polls: int = 50) -> None:
        """poll_once until everything queued is consumed and committed."""
        for _ in range(max_polls):
            self.processor.poll_once()
            queued = any(q for tp, q in self.consumer.queues.items() if tp in self.consumer.assigned)
            if not queued and not self.processor._inflight and not self.processor._carry:
                return
        raise AssertionError("did not drain")


@pytest.fixture(params=[1, 2], ids=["one-writer", "two-writers"])
def depth(request: pytest.FixtureRequest) -> int:
    """How many batches may be written at once (PostgreSQL connections)."""
    return int(request.param)


def rig(
    depth: int,
    batch_size: int = 100,
    fail_dlq: set[int] | None = None,
    partitions: Sequence[int] = (0, 1),
    clock: Callable[[], float] = time.monotonic,
    batch_timeout_s: float = 0.0,
    wall_clock: Callable[[], float] = time.time,
) -> Rig:
    log: list[Any] = []
    consumer = FakeConsumer(log, partitions)
    db = FakeDatabase(log)
    producer = FakeProducer(log, fail_dlq)
    registry = CollectorRegistry()
    processor = Processor(
        LoopSettings(topic=TOPIC, batch_size=batch_size, batch_timeout_s=batch_timeout_s, idle_slice_s=0.01,
                     dlq_confirm_timeout_s=0.01, revoke_wait_s=1.0),
        consumer=consumer, stores=[FakeStore(db) for _ in range(depth)], dlq=DeadLetterQueue(producer, "p-dlq", "p"),
        decode=DECODE,
        metrics=ProcessorMetrics.create(registry), backoff=lambda attempt: 0.01, clock=clock, wall_clock=wall_clock,
    )  # fmt: skip
    assert processor.start()
    return Rig(processor, consumer, db, producer, registry, log)


def index(log: list[Any], predicate: Callable[[Any], bool]) -> int:
    return next(i for i, entry in enumerate(log) if predicate(entry))


def kind(name: str) -> Callable[[Any], bool]:
    return lambda entry: entry == name or (isinstance(entry, tuple) and entry[0] == name)


# -- the happy path ----------------------------------------------------------------------------------------


def test_commit_comes_after_the_write_and_the_dead_letter_acknowledgements(depth: int) -> None:
    r = rig(depth)
    r.consumer.add(0, [event("a"), b"{oops", event("b"), event("a")])
    r.consumer.add(1, [event("c"), b""])
    r.drain()
    assert sorted(r.db.rows) == [b"a", b"b", b"c"]
    assert r.consumer.committed == {(TOPIC, 0): 4, (TOPIC, 1): 2}
    commit = index(r.log, kind("commit"))
    assert index(r.log, kind("write")) < commit
    assert max(i for i, e in enumerate(r.log) if kind("dlq-acked")(e)) < commit
    assert sorted(int(dict(d["headers"])["source_offset"]) for d in r.producer.delivered) == [1, 1]
    assert {dict(d["headers"])["reason_code"] for d in r.producer.delivered} == {b"malformed_json", b"empty"}
    # a dead letter keeps its raw record's timestamp (the detector's `_dlq` windows count it there)
    assert [d["timestamp"] for d in r.producer.delivered] == [RECORD_TIME_MS + 1] * 2
    assert r.metric("adnomaly_processor_events_total", result="stored") == 3
    assert r.metric("adnomaly_processor_events_total", result="duplicate") == 1
    assert r.metric("adnomaly_processor_events_total", result="invalid") == 2
    assert r.metric("adnomaly_dlq_events_total", reason_code="malformed_json") == 1
    assert r.metric("adnomaly_processor_batch_size_count") == 1
    assert r.processor.stats.messages == 6


def test_batches_are_committed_in_order_and_a_replayed_batch_stores_nothing_twice(depth: int) -> None:
    r = rig(depth, batch_size=3)
    r.consumer.add(0, [event(f"e{i}") for i in range(10)])
    r.drain()
    commits = [e[1][0] for e in r.log if kind("commit")(e)]
    assert commits == [3, 6, 9, 10]
    # A replay (crash before commit, or a new owner) of the same events stores nothing new.
    r.consumer.add(0, [event(f"e{i}") for i in range(10)])
    r.drain()
    assert len(r.db.rows) == 10
    assert r.metric("adnomaly_processor_events_total", result="duplicate") == 10


# -- outages -----------------------------------------------------------------------------------------------


def test_database_outage_retries_the_same_batch_paused_without_committing(depth: int) -> None:
    r = rig(depth, batch_size=5)
    r.db.failures = 3
    r.consumer.add(0, [event(f"e{i}") for i in range(12)])
    r.drain()
    writes = [e for e in r.log if kind("write-failed")(e) or kind("write")(e)]
    assert writes[:4] == [("write-failed", 5)] * 3 + [("write", 5)]
    first_ok = r.log.index(("write", 5))
    assert index(r.log, kind("commit")) > first_ok  # nothing committed while failing
    pause, resume = r.log.index("pause"), r.log.index("resume")
    assert pause < first_ok and resume > pause
    # While paused, consume() kept being called (group membership) but handed out nothing.
    assert r.consumer.consumed_while_paused >= 3
    assert all(e == ("consume", 0) for e in r.log[pause:resume] if kind("consume")(e))
    assert len(r.db.rows) == 12 and r.consumer.committed == {(TOPIC, 0): 12}
    assert r.metric("adnomaly_processor_db_errors_total") == 3
    assert r.metric("adnomaly_processor_db_retries_total") == 3


def test_dead_letters_not_acknowledged_hold_the_commit_back_and_are_sent_again(depth: int) -> None:
    r = rig(depth, fail_dlq={1})
    r.consumer.add(0, [event("a"), b"nope", event("b")])
    r.drain()
    assert [e for e in r.log if kind("write")(e)] == [("write", 2)]  # the database write is not repeated
    assert index(r.log, kind("commit")) > index(r.log, kind("dlq-acked"))
    assert [d["value"] for d in r.producer.delivered] == [b"nope"]
    assert r.consumer.committed == {(TOPIC, 0): 3}


def test_a_stop_during_an_outage_leaves_the_batch_uncommitted(depth: int) -> None:
    r = rig(depth)
    r.db.failures = 1000
    r.db.on_failure = r.processor.request_stop
    r.consumer.add(0, [event("a"), event("b")])
    r.processor.run()  # returns: stop requested while the write keeps failing
    assert r.consumer.committed == {}
    assert r.consumer.closed and "store-close" in r.log


def test_start_waits_for_the_database_before_joining_the_group() -> None:
    log: list[Any] = []
    db = FakeDatabase(log)
    db.migrate_failures = 2
    consumer = FakeConsumer(log)
    processor = Processor(
        LoopSettings(topic=TOPIC, batch_size=10, batch_timeout_s=0.0, idle_slice_s=0.01),
        consumer=consumer, stores=[FakeStore(db)], dlq=DeadLetterQueue(FakeProducer(log), "d", "p"), decode=DECODE,
        metrics=ProcessorMetrics.create(CollectorRegistry()), backoff=lambda attempt: 0.01,
    )  # fmt: skip
    assert processor.start()
    assert log[:3] == ["migrate", "connect", ("subscribe", (TOPIC,))]


# -- bad rows, rebalances, stop ----------------------------------------------------------------------------


def test_a_row_postgres_refuses_is_dead_lettered_and_the_rest_stored(depth: int) -> None:
    r = rig(depth)
    r.consumer.add(0, [event("a"), event("poison"), event("b")])
    r.drain()
    assert sorted(r.db.rows) == [b"a", b"b"]
    [letter] = r.producer.delivered
    headers = dict(letter["headers"])
    assert headers["reason_code"] == UNSTORABLE.encode() and headers["source_offset"] == b"1"
    assert letter["value"] == event("poison")
    assert r.consumer.committed == {(TOPIC, 0): 3}


def test_revocation_commits_the_batch_being_written_before_giving_the_partition_up(depth: int) -> None:
    r = rig(depth, batch_size=4)
    r.consumer.add(0, [event(f"a{i}") for i in range(4)])
    r.consumer.add(1, [event(f"b{i}") for i in range(4)])
    r.processor.poll_once()  # batch 1 (partition 0) is being written
    r.consumer.hooks.append(lambda c: c.revoke(0))
    r.processor.poll_once()  # the rebalance happens inside consume()
    assert r.log.index(("commit", {0: 4})) < r.log.index(("revoked", 0))
    r.drain()
    assert r.consumer.committed == {(TOPIC, 0): 4, (TOPIC, 1): 4}
    assert len(r.db.rows) == 8


def test_revocation_waits_for_a_slow_write_inside_the_callback_without_consuming_again(depth: int) -> None:
    r = rig(depth, batch_size=4)
    r.db.delay = 0.2  # many idle slices (0.01 s) long
    r.consumer.add(0, [event(f"a{i}") for i in range(4)])
    r.processor.poll_once()
    r.consumer.hooks.append(lambda c: c.revoke(0))
    r.processor.poll_once()
    assert r.log.index(("commit", {0: 4})) < r.log.index(("revoked", 0))
    assert "pause" not in r.log


# -- closing a batch -----------------------------------------------------------------------------------


def test_linger_left_is_the_batch_timeout_less_the_first_records_age_within_bounds() -> None:
    now = RECORD_TIME_MS / 1000
    assert linger_left(RECORD_TIME_MS - 20, 0.05, now) == pytest.approx(0.03)  # 20 ms spent in Kafka already
    assert linger_left(RECORD_TIME_MS - 80, 0.05, now) == 0.0  # older than the timeout: close now
    assert linger_left(RECORD_TIME_MS + 500, 0.05, now) == 0.05  # a producer clock ahead: never longer
    assert linger_left(0, 0.05, now) == 0.05  # no timestamp: the whole timeout


def test_a_batch_waits_for_its_first_message_then_until_that_message_is_the_batch_timeout_old(depth: int) -> None:
    # The first record (offset 0) is stamped RECORD_TIME_MS; "now" is 20 ms later.
    r = rig(depth, batch_size=10, batch_timeout_s=0.05, wall_clock=lambda: (RECORD_TIME_MS + 20) / 1000)
    r.consumer.add(0, [event("a"), event("b")])
    r.processor.poll_once()
    first, rest = r.consumer.calls
    assert first == (1, 0.05)  # one message, waiting up to the whole timeout for it
    assert rest[0] == 9 and rest[1] == pytest.approx(0.03)
    r.processor.poll_once()  # nothing queued: one wait of the whole timeout, no second call
    assert r.consumer.calls[2:] == [(1, 0.05)]
    assert sorted(r.db.rows) == [b"a", b"b"]


def test_the_next_batch_starts_its_write_before_the_previous_batch_is_committed() -> None:
    r = rig(1, batch_size=2)  # one connection: the next batch needs the one the previous batch used
    r.consumer.add(0, [event(f"a{i}") for i in range(4)])
    in_flight_at_commit: list[int] = []
    commit = r.consumer.commit

    def counting_commit(*, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        in_flight_at_commit.append(len(r.processor._inflight))
        return commit(offsets=offsets, asynchronous=asynchronous)

    r.consumer.commit = counting_commit  # type: ignore[method-assign]
    # The first write is still running when the first poll returns (on a busy machine the writer thread
    # could otherwise finish it before that poll looks, and the poll would rightly commit it at once).
    first_write_may_end = threading.Event()
    store = r.processor._stores[0]
    write = store.write

    def held_write(rows: list[bytes]) -> Any:
        assert first_write_may_end.wait(10)
        return write(rows)

    store.write = held_write  # type: ignore[method-assign]
    r.processor.poll_once()
    assert in_flight_at_commit == []  # not written yet: nothing to commit
    first_write_may_end.set()
    r.processor.poll_once()
    assert in_flight_at_commit == [2]  # the first batch's commit came with the second already submitted
    r.drain()
    assert r.consumer.committed == {(TOPIC, 0): 4} and len(r.db.rows) == 4


def test_a_revocation_while_a_batch_fills_drops_the_revoked_partitions_messages_from_it(depth: int) -> None:
    r = rig(depth, batch_size=10)
    r.consumer.add(0, [event("a0")])
    r.consumer.add(1, [event("b0")])
    r.consumer.hooks.extend([lambda c: None, lambda c: c.revoke(0)])  # inside the consume() that fills
    r.drain()
    assert r.consumer.hooks == []
    assert b"a0" not in r.db.rows and b"b0" in r.db.rows  # a0 was consumed first, then its partition left
    assert r.consumer.committed == {(TOPIC, 1): 1}


def when_paused(action: Callable[[FakeConsumer], None]) -> Callable[[FakeConsumer], None]:
    """A consume() hook that waits (re-arms itself) until the consumer is paused, then runs `action`."""

    def hook(consumer: FakeConsumer) -> None:
        if consumer.paused:
            action(consumer)
        else:
            consumer.hooks.insert(0, hook)

    return hook


def test_revocation_during_an_outage_drops_carried_messages_and_commits_only_owned_partitions(depth: int) -> None:
    r = rig(depth, batch_size=2)
    r.consumer.add(0, [event("a0"), event("a1"), event("a2")])
    r.consumer.add(1, [event("b0")])
    r.db.failures = 3

    def leak_b1(c: FakeConsumer) -> None:  # a message fetched before the pause still comes out
        c.leak.append(msg(event("b1"), 1, 1))

    r.consumer.hooks.extend([when_paused(leak_b1), when_paused(lambda c: c.revoke(1))])
    r.drain()
    assert r.consumer.hooks == []
    assert r.consumer.committed == {(TOPIC, 0): 3}  # never an offset for the partition we lost
    assert {b"a0", b"a1", b"a2"} <= set(r.db.rows)
    assert b"b1" not in r.db.rows  # kept for later, then dropped: its new owner processes it


def test_close_finishes_the_batch_in_hand_then_leaves_the_group(depth: int) -> None:
    r = rig(depth)
    r.consumer.add(0, [event("a"), event("b")])
    r.processor.poll_once()
    assert r.processor._inflight is not None
    r.processor.request_stop()
    r.processor.close()
    assert r.consumer.committed == {(TOPIC, 0): 2}
    assert r.log.index(("commit", {0: 2})) < r.log.index("close")
    assert r.producer.closed  # released: it would keep reconnecting to the broker until collected


def test_lag_gauge_per_assigned_partition(depth: int) -> None:
    r = rig(depth, batch_size=3)
    r.consumer.add(0, [event(f"e{i}") for i in range(5)])
    r.processor.poll_once()
    assert r.metric("adnomaly_consumer_lag", topic=TOPIC, partition="0") == 2
    r.consumer.revoke(0)
    assert r.registry.get_sample_value("adnomaly_consumer_lag", {"topic": TOPIC, "partition": "0"}) is None


def test_a_refused_commit_is_owed_and_lands_once_the_topic_idles(depth: int) -> None:
    """The last batch's commit refused (a broker restarting as the load stops) still lands while idle, so the
    group's lag returns to zero; without it the committed offset stayed behind until the next record."""
    now = [0.0]
    r = rig(depth, clock=lambda: now[0])
    r.consumer.add(0, [event("a"), event("b")])
    r.consumer.refusals = 1
    r.processor.poll_once()
    r.processor.poll_once()  # idle: finishes what is in flight; its commit is refused
    assert [e for e in r.log if kind("commit-refused")(e)] == [("commit-refused", {0: 2})]
    assert r.consumer.committed == {}
    now[0] += 1.5
    r.processor.poll_once()
    assert r.consumer.committed == {(TOPIC, 0): 2}


@pytest.mark.parametrize("letters", [0, 3])
def test_process_runs_one_batch_to_its_commit(letters: int, depth: int) -> None:
    r = rig(depth)
    r.consumer.add(0, [event("a")] + [b"x"] * letters)
    batch = prepare_batch(r.consumer.consume(num_messages=10), DECODE)
    assert r.processor.process(batch)
    assert r.consumer.committed == {(TOPIC, 0): 1 + letters}
    assert len(r.producer.delivered) == letters
    assert all(isinstance(letter, DeadLetter) for letter in batch.dead) and len(batch.dead) == letters


def test_a_partition_revoked_while_paused_delivers_again_when_assigned_back(depth: int) -> None:
    # librdkafka (like FakeConsumer) keeps a partition's pause flag across a revoke and a later assign
    r = rig(depth)
    r.processor._pauses.pause()  # waiting for a store, partitions paused
    r.consumer.assigned.remove((TOPIC, 1))  # a rebalance takes partition 1 meanwhile
    r.processor._pauses.resume()  # the wait ends: only partition 0 is resumed
    assert (TOPIC, 1) in r.consumer.paused
    r.consumer.assigned.append((TOPIC, 1))
    r.processor._on_assign(r.consumer, [TopicPartition(TOPIC, 1)])
    assert not r.consumer.paused
    r.consumer.add(1, [event("back")])
    r.drain()
    assert sorted(r.db.rows) == [b"back"]
