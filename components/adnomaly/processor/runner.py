"""The processor loop: consume a batch → store valid events and dead-letter invalid ones → commit offsets.

Offset protocol (at-least-once delivery, exactly-once effect):
  1. Consume a batch of up to `batch_size` messages (see "Closing a batch"); decode every message once.
  2. Start producing the batch's dead letters (asynchronously: they travel while the database works).
  3. Write the valid events in one PostgreSQL transaction (idempotent: ON CONFLICT (event_id) DO NOTHING).
  4. Wait until Kafka has acknowledged every dead letter of the batch.
  5. Only then commit, synchronously, the offsets after the batch's last message of each partition.
A crash anywhere before 5 replays the batch from the last commit; the writes are keyed by event id, so
the replay stores nothing twice. Batches are committed strictly in order.

Closing a batch: `batch_timeout_s` bounds how long an event waits before its batch is written, counted from
its Kafka timestamp, as a producer's linger counts from a record's creation. The loop waits (up to the
timeout) for the batch's first message, then fills the batch until that message is `batch_timeout_s` old.
Counting from the consume call instead made the first event of each batch wait out the whole timeout *on
top of* the time it had already spent in the producer and the broker, and those events were the tail of
produce → stored latency (bench e2e at 10,000/s: the Kafka leg alone has a 36 ms p99). The wait is clamped
to [0, timeout]: a record without a timestamp, or from a producer whose clock runs ahead, waits the whole
timeout; one stamped in the past (a backlog being replayed, a clock behind ours) closes the batch with what
is already queued, which under a backlog is a full batch anyway (librdkafka prefetches).

Pipelining: step 3 runs in writer threads, one PostgreSQL connection each (psycopg releases the GIL while
PostgreSQL works), while the main thread consumes and decodes the next batch. With two connections (the
default) batch N+1 is copied and inserted while batch N waits for its commit to reach the disk. Batches
still finish strictly in order: N+1's offsets are committed only after N's. A connection is free again as
soon as its batch's write has succeeded, so the next batch's write starts before that batch's offset commit
(a synchronous broker round trip) rather than after it.

While PostgreSQL (or the dead-letter topic) is unreachable the same batch is retried with exponential
back-off and jitter; meanwhile every assigned partition is paused and `consume` keeps being called, so the
consumer stays in its group (max.poll.interval.ms) without taking new work. Anything it still returns is
kept, in order, for the next batch.

Rebalances happen inside `consume`. On revocation the batch being written is finished and committed while
its partitions are still ours (when PostgreSQL answers within `revoke_wait_s`; otherwise it is left to be
replayed by the next owner). Messages kept for later from revoked partitions are dropped (the new owner
reads them again from the last commit), and offsets are only ever committed for partitions still owned.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from confluent_kafka import KafkaException, TopicPartition

from adnomaly.events.codec import ValidEvent
from adnomaly.kafka_client import PartitionPause
from adnomaly.kafka_record import message_timestamp
from adnomaly.owed_offsets import CommitFailed, OwedOffsets
from adnomaly.processor.batch import UNSTORABLE, Batch, DeadLetter, Message, prepare_batch
from adnomaly.processor.dlq import DeadLetterQueue
from adnomaly.processor.metrics import DUPLICATE, INVALID, STORED, ProcessorMetrics
from adnomaly.processor.retry import backoff_delay
from adnomaly.processor.store import TRANSIENT_ERRORS, write_isolating
from adnomaly.tracing import DISABLED, Tracing

_log = logging.getLogger(__name__)

T = TypeVar("T")
WriteResult = tuple[int, list[tuple[int, Exception]]]  # (rows newly stored, [(refused row, error)])


class DeadLettersPending(RuntimeError):
    """Kafka has not acknowledged every dead letter of the batch yet."""


RETRYABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, DeadLettersPending)


class Consumer(Protocol):
    """The parts of confluent_kafka.Consumer the loop uses."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = ..., cached: bool = ...) -> Any: ...
    def close(self) -> None: ...


class Store(Protocol):
    """One database connection (see store.EventStore)."""

    def migrate(self) -> list[int]: ...
    def connect(self) -> None: ...
    def write(self, rows: Sequence[bytes]) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class LoopSettings:
    topic: str
    batch_size: int
    batch_timeout_s: float
    lag_interval_s: float = 5.0
    dlq_confirm_timeout_s: float = 5.0
    idle_slice_s: float = 1.0  # longest single consume() while paused
    revoke_wait_s: float = 10.0  # how long a revocation waits for each batch being written


@dataclass
class LoopStats:
    """Running totals of this process (for benchmarks and logs; Prometheus has the same as metrics)."""

    batches: int = 0
    messages: int = 0  # messages of committed batches, valid or not
    stored: int = 0
    invalid: int = 0
    first_batch_at: float | None = None  # clock() when the first non-empty batch was consumed
    last_commit_at: float | None = None  # clock() right after the last batch's offsets were committed


@dataclass
class _InFlight:
    batch: Batch
    started: float  # clock() when it was consumed
    store: Store  # the connection this batch is written through (retries included)
    future: Future[WriteResult] | None  # the first write attempt, running in a writer thread
    stored: int | None = None  # set once the write has succeeded
    span: Any = None  # the batch's trace span, ended at commit (tracing on only)


class Processor:
    def __init__(
        self,
        settings: LoopSettings,
        consumer: Consumer,
        stores: Sequence[Store],
        dlq: DeadLetterQueue,
        decode: Callable[[bytes], ValidEvent],
        metrics: ProcessorMetrics,
        *,
        backoff: Callable[[int], float] = backoff_delay,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,  # for Kafka timestamps (epoch seconds)
        tracing: Tracing = DISABLED,
    ) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self.tracing = tracing
        self._consumer = consumer
        if not stores:
            raise ValueError("a processor needs at least one store connection")
        self._stores = list(stores)  # one per batch that may be written at the same time
        self._dlq = dlq
        self._decode = decode
        self._metrics = metrics
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._writer = ThreadPoolExecutor(max_workers=len(self._stores), thread_name_prefix="adnomaly-pg-writer")
        self._stopping = False
        self._subscribed = False
        self._pauses = PartitionPause(consumer)
        self._finishing = False
        self._in_rebalance = False  # inside a rebalance callback (that is, inside consume())
        self._inflight: deque[_InFlight] = deque()  # oldest first
        self._carry: list[Message] = []
        self._owed = OwedOffsets(clock=clock)
        self._next_lag_update = 0.0
        self.stats = LoopStats()

    # -- lifecycle -------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the batch in hand, commit it and leave (safe to call from a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        """Prepare the database, then process batches until asked to stop; leaves the group on the way out."""
        try:
            if not self.start():
                return
            while not self._stopping:
                self.poll_once()
        finally:
            self.close()

    def start(self) -> bool:
        """Migrate and connect to the database (waiting for it), then join the consumer group.

        False when a stop was requested before the database could be reached.
        """
        if self._retrying(self._prepare_store, "preparing the database") is None:
            return False
        self._consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._subscribed = True
        return True

    def close(self) -> None:
        """Finish (or give up) the batch in hand, leave the group, flush the dead letters, disconnect."""
        try:
            if self._subscribed:
                self._finish_all(retry=True)
        except Exception:
            _log.exception("could not finish the last batch; it stays uncommitted and will be replayed")
        try:
            self._consumer.close()  # revokes our partitions and leaves the group at once
        finally:
            self._writer.shutdown(wait=True)
            self._dlq.close()
            for store in self._stores:
                store.close()

    def _prepare_store(self) -> bool:
        applied = self._stores[0].migrate()
        if applied:
            _log.info("schema migrations applied: %s", applied)
        for store in self._stores:
            store.connect()
        return True

    # -- batches ---------------------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Consume and decode the next batch, finish (commit) older ones to make room, start writing it.

        When nothing new arrives, everything in flight is finished. Returns True when nothing is left
        unfinished because of a stop request.
        """
        messages = self._next_messages()
        started = self._clock()
        batch = prepare_batch(messages, self._decode) if messages else None
        if batch is None:
            finished = self._finish_all(retry=True)
            self._owed.retry(self._consumer)  # an idle topic still gets the commit a refused one left owed
        else:
            finished = True
            while finished and self._free_store() is None:
                finished = self._finish_oldest(retry=True, commit=False)
            if finished:
                self._submit(batch, started)
                finished = self._commit_written()
            else:  # stopping while an older batch cannot be stored: this one is replayed later too
                _log.warning("dropping an uncommitted batch of %d messages; it will be replayed", batch.size)
        if self._clock() >= self._next_lag_update:
            self._next_lag_update = self._clock() + self.settings.lag_interval_s
            self._update_lag()
        return finished

    def process(self, batch: Batch) -> bool:
        """Store, dead-letter and commit one batch right away; False if a stop came before it was safe."""
        if not self._finish_all(retry=True):
            return False
        self._submit(batch, self._clock())
        return self._finish_all(retry=True)

    def _next_messages(self) -> list[Message]:
        """The next batch: messages kept from a pause first, else the first one to arrive within the batch
        timeout; then more, until the batch is full or its first message is `batch_timeout_s` old."""
        size = self.settings.batch_size
        if self._carry:
            wait = 0.0
        else:
            self._carry = self._consumer.consume(num_messages=1, timeout=self.settings.batch_timeout_s)
            if not self._carry:
                return []
            wait = linger_left(message_timestamp(self._carry[0]), self.settings.batch_timeout_s, self._wall_clock())
        if len(self._carry) < size:
            # Into a new name first: a revocation inside consume() replaces self._carry with the messages of
            # the partitions still ours.
            more = self._consumer.consume(num_messages=size - len(self._carry), timeout=wait)
            self._carry.extend(more)
        batch, self._carry = self._carry[:size], self._carry[size:]
        return batch

    def _free_store(self) -> Store | None:
        """A connection no batch is being written through (a written batch awaiting its commit holds none)."""
        busy = {id(entry.store) for entry in self._inflight if entry.stored is None}
        return next((store for store in self._stores if id(store) not in busy), None)

    def _submit(self, batch: Batch, started: float) -> None:
        store = self._free_store()
        assert store is not None, "a batch is submitted only once a connection is free"
        self._dlq.send(batch.dead)
        span = self._batch_span(batch) if self.tracing.enabled else None
        if batch.rows:
            if span is None:
                future = self._writer.submit(write_isolating, store.write, batch.rows)
            else:
                future = self._writer.submit(self._traced_write, store, batch.rows, span)
            self._inflight.append(_InFlight(batch, started, store, future, span=span))
        else:
            self._inflight.append(_InFlight(batch, started, store, None, stored=0, span=span))

    def _batch_span(self, batch: Batch) -> Any:
        """The batch's span (consumed → committed), linked to the spans that produced its events."""
        return self.tracing.start(
            "processor.batch",
            links=self.tracing.message_links(batch.row_messages),
            attributes={"messaging.batch.message_count": batch.size, "adnomaly.dead_letters": len(batch.dead)},
        )

    def _traced_write(self, store: Store, rows: list[bytes], span: Any) -> WriteResult:
        with self.tracing.span("db.write", parent=self.tracing.context_of(span), attributes={"db.rows": len(rows)}):
            return write_isolating(store.write, rows)

    def _finish_all(self, *, retry: bool) -> bool:
        """Finish every batch in flight, oldest first; True when none is left."""
        while self._inflight:
            if not self._finish_oldest(retry=retry):
                return False
        return True

    def _commit_written(self) -> bool:
        """Commit, oldest first, the batches whose write has already completed; wait for no other write."""
        while self._inflight:
            head = self._inflight[0]
            if head.stored is None and (head.future is None or not head.future.done()):
                return True
            if not self._finish_oldest(retry=True):
                return False
        return True

    def _finish_oldest(self, *, retry: bool, commit: bool = True) -> bool:
        """Wait for the oldest batch in flight, make sure its dead letters are acknowledged, commit it.

        With `retry`, failures are retried until they succeed (or a stop is requested); without (inside a
        rebalance callback), one bounded wait only. True when that batch is done. With `commit=False`,
        only the write of the oldest batch still being written is waited for: its connection is then free
        for the next batch, which starts its write before the older batch's offset commit (a broker round
        trip) holds it up; commits still go strictly in order.
        """
        if not self._inflight:
            return True
        inflight = self._inflight[0] if commit else next(e for e in self._inflight if e.stored is None)
        if self._finishing:  # re-entered from a rebalance callback while this batch is being retried
            return False
        self._finishing = True
        try:
            if inflight.stored is None:
                inflight.stored = self._collect_write(inflight, retry=retry)
                if inflight.stored is None:
                    return False
            if not commit:
                return True
            if retry:
                if self._retrying(self._confirm_dead_letters, "delivering dead letters") is None:
                    return False
            elif not self._dlq.confirm(self.settings.dlq_confirm_timeout_s):
                return False
            self._commit(inflight.batch.offsets)
            self._record(inflight.batch, inflight.stored, inflight.started)
            if inflight.span is not None:
                inflight.span.end()
            self._inflight.popleft()
            return True
        finally:
            self._finishing = False

    def _collect_write(self, inflight: _InFlight, *, retry: bool) -> int | None:
        """The outcome of the batch's write: the first attempt's (from the writer thread), else retries."""
        first_error: Exception | None = None
        future = inflight.future
        if future is not None:
            if not self._wait_for(future, None if retry else self.settings.revoke_wait_s):
                return None
            inflight.future = None
            try:
                return self._handle_write(inflight.batch, future.result())
            except TRANSIENT_ERRORS as exc:
                self._metrics.db_errors.inc()
                first_error = exc
        if not retry:
            return None
        return self._retrying(lambda: self._write_now(inflight), "writing to PostgreSQL", first_error)

    def _write_now(self, inflight: _InFlight) -> int:
        batch = inflight.batch
        try:
            result = write_isolating(inflight.store.write, batch.rows)
        except TRANSIENT_ERRORS:
            self._metrics.db_errors.inc()
            raise
        return self._handle_write(batch, result)

    def _handle_write(self, batch: Batch, result: WriteResult) -> int:
        stored, refused = result
        if refused:
            self._metrics.db_errors.inc()
            letters = [
                DeadLetter(batch.row_messages[index], UNSTORABLE, f"PostgreSQL refused it: {error}".strip())
                for index, error in refused
            ]
            batch.dead.extend(letters)
            self._dlq.send(letters)
        return stored

    def _confirm_dead_letters(self) -> bool:
        if not self._dlq.confirm(self.settings.dlq_confirm_timeout_s):
            raise DeadLettersPending("dead letters not yet acknowledged by Kafka")
        return True

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self._owed.commit(self._consumer, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        except CommitFailed as exc:
            # E.g. a rebalance in progress: the batch is stored and its offsets stay owed, retried with the
            # next commit or while idle; a new owner of the partitions replays from the previous commit and
            # the idempotent write skips what is stored.
            self._metrics.commit_failures.inc()
            _log.warning("offset commit failed (owed: retried with the next commit or while idle): %s", exc)

    def _record(self, batch: Batch, stored: int, started: float) -> None:
        now = self._clock()
        stats = self.stats
        stats.batches += 1
        stats.messages += batch.size
        stats.stored += stored
        stats.invalid += len(batch.dead)
        if stats.first_batch_at is None:
            stats.first_batch_at = started
        stats.last_commit_at = now
        metrics = self._metrics
        valid = batch.size - len(batch.dead)
        metrics.events.labels(STORED).inc(stored)
        metrics.events.labels(DUPLICATE).inc(max(0, valid - stored))
        metrics.events.labels(INVALID).inc(len(batch.dead))
        for code, count in batch.invalid_by_code().items():
            metrics.dlq_events.labels(code).inc(count)
        metrics.batch_size.observe(batch.size)
        metrics.batch_seconds.observe(now - started)

    # -- waiting and retrying while a dependency is slow or down ----------------------------------------

    def _wait_for(self, future: Future[Any], timeout: float | None) -> bool:
        """Wait for `future` (at most `timeout` s; None: as long as it takes). True when it is done.

        Between slices of waiting, partitions are paused and `consume` is called, so that a slow database
        does not get this consumer thrown out of its group.
        """
        deadline = None if timeout is None else self._clock() + timeout
        slice_s = self.settings.idle_slice_s
        try:
            while True:
                wait = slice_s if deadline is None else min(slice_s, deadline - self._clock())
                if wait <= 0:
                    return future.done()
                try:
                    future.exception(timeout=wait)
                    return True
                except TimeoutError:
                    pass
                if self._subscribed and not self._stopping and not self._in_rebalance:
                    self._pauses.pause()
                    self._carry.extend(self._consumer.consume(num_messages=self.settings.batch_size, timeout=0))
        finally:
            self._pauses.resume()

    def _retrying(self, attempt: Callable[[], T], what: str, first_error: Exception | None = None) -> T | None:
        """`attempt()` until it succeeds, backing off between tries with the partitions paused.

        `first_error` is a failure that already happened (the first try ran elsewhere). Returns None,
        leaving the batch uncommitted to be replayed, when a stop is requested meanwhile.
        """
        failures = 0
        error = first_error
        try:
            while True:
                if error is None:
                    try:
                        result = attempt()
                    except RETRYABLE as exc:
                        error = exc
                    else:
                        if failures:
                            _log.info("%s succeeded after %d failed attempts", what, failures)
                        return result
                failures += 1
                delay = self._backoff(failures - 1)
                if self._stopping:
                    _log.warning(
                        "stopping while %s is failing (%s); the batch stays uncommitted and will be replayed",
                        what,
                        _one_line(error),
                    )
                    return None
                _log.warning("%s failed (attempt %d), retrying in %.2fs: %s", what, failures, delay, _one_line(error))
                if isinstance(error, TRANSIENT_ERRORS):
                    self._metrics.db_retries.inc()
                error = None
                self._idle(delay)
        finally:
            if failures:
                self._pauses.resume()

    def _idle(self, seconds: float) -> None:
        """Wait `seconds` while staying in the consumer group: partitions paused, `consume` still called."""
        deadline = self._clock() + seconds
        while not self._stopping:
            left = deadline - self._clock()
            if left <= 0:
                return
            if not self._subscribed:
                self._sleep(min(left, self.settings.idle_slice_s))
                continue
            self._pauses.pause()  # every time: partitions assigned meanwhile must not deliver either
            late = self._consumer.consume(
                num_messages=self.settings.batch_size, timeout=min(left, self.settings.idle_slice_s)
            )
            self._carry.extend(late)

    # -- rebalances and lag ------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        _log.info("assigned %s", _describe(partitions))
        self._pauses.assigned(partitions)
        self._next_lag_update = min(self._next_lag_update, self._clock() + 1.0)  # gauges for the new ones soon

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Commit the batches being written while their partitions are still ours (a bounded wait, without
        # calling consume() again: we are inside it).
        self._in_rebalance = True
        try:
            self._finish_all(retry=False)
        finally:
            self._in_rebalance = False
        self._owed.release(self._consumer, partitions)
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        if self._carry:
            self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in revoked]
        for topic, partition in revoked:
            self._metrics.forget_partition(topic, partition)
        _log.info("revoked %s", _describe(partitions))

    def _update_lag(self) -> None:
        """Lag per assigned partition from the cached high watermark and our position (no broker round trip)."""
        assignment = self._consumer.assignment() if self._subscribed else []
        if not assignment:
            return
        try:
            for tp in self._consumer.position(assignment):
                if tp.offset < 0:
                    continue
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high is not None and high >= 0:
                    self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException as exc:
            _log.debug("lag update skipped: %s", exc)


def linger_left(record_ms: int, timeout_s: float, now_s: float) -> float:
    """Seconds a batch whose first record is stamped `record_ms` (epoch ms; 0: none) may still wait for more
    records at `now_s`: the batch timeout less the record's age, within [0, timeout_s]."""
    if record_ms <= 0:
        return timeout_s
    return min(timeout_s, max(0.0, timeout_s - (now_s - record_ms / 1000)))


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
