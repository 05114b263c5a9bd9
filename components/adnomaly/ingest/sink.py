"""Produce a request's events to Kafka and wait, without blocking the event loop, until Kafka has them.

Valid events go to the raw topic keyed by event id; rejected lines go to the dead-letter topic with their
original bytes and the reason in headers. One `produce` call per message, no await per message: each
request gets one `_Delivery` whose counter the delivery callbacks (run by a poll thread) advance, and one
asyncio future that is resolved when the last message of the request is acknowledged or has failed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaException

from adnomaly.events.codec import DLQ_MAX_VALUE_BYTES, ValidEvent
from adnomaly.events.dead_letter import INGEST, dead_letter_headers
from adnomaly.ingest.batch import Batch, Rejection
from adnomaly.tracing import DISABLED, Tracing

DEFAULT_DELIVERY_TIMEOUT_S = 10.0
_BUFFER_FULL_PAUSE_S = 0.005

_log = logging.getLogger(__name__)


class Producer(Protocol):
    """The part of confluent_kafka.Producer the ingest API uses."""

    def produce(self, topic: str, value: bytes | None = ..., key: str | bytes | None = ..., **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any: ...


class DeliveryFailed(Exception):
    """Kafka did not acknowledge every message of a request (in time)."""


def dlq_headers(rejection: Rejection, pipeline: str) -> list[tuple[str, bytes]]:
    """Headers of a dead-lettered line, by the contract every dead letter follows (source `ingest`)."""
    return dead_letter_headers(code=rejection.code, detail=rejection.detail, source=INGEST,
                               position=(("source_line", str(rejection.line)),), pipeline=pipeline,
                               value_length=len(rejection.raw))


class _Delivery:
    """Counts the delivery reports of one request's messages; resolves `future` when all are in."""

    __slots__ = ("_done", "_expected", "_lock", "_loop", "error", "fatal", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._done = 0
        self._expected: int | None = None
        self.error: str | None = None
        self.fatal = False
        self.future: asyncio.Future[None] = loop.create_future()

    def on_delivery(self, err: Any, _msg: Any) -> None:  # runs on the poll thread
        with self._lock:
            if err is not None and self.error is None:
                self.error = str(err)
                self.fatal = bool(err.fatal())
            self._done += 1
            finished = self._done == self._expected
        if finished:
            self._loop.call_soon_threadsafe(self._resolve)

    def refused(self, exc: KafkaException) -> None:  # runs on the event loop: produce() raised
        error = exc.args[0] if exc.args else None
        with self._lock:
            if self.error is None:
                self.error = str(error or exc)
                self.fatal = bool(getattr(error, "fatal", lambda: False)())

    def seal(self, expected: int) -> None:  # runs on the event loop, after the last produce
        with self._lock:
            self._expected = expected
            finished = self._done == expected
        if finished:
            self._resolve()

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class KafkaSink:
    def __init__(
        self,
        producer: Producer,
        raw_topic: str,
        dlq_topic: str,
        *,
        pipeline: str = "",
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        owns_producer: bool = False,
        tracing: Tracing = DISABLED,
    ) -> None:
        self.producer = producer
        self.tracing = tracing  # raw-topic messages carry the request's trace context in their headers
        self.owns_producer = owns_producer  # close it (not just flush it) on close()
        self.raw_topic = raw_topic
        self.dlq_topic = dlq_topic
        self.pipeline = pipeline  # named in every dead letter's headers
        self.delivery_timeout_s = delivery_timeout_s
        self.fatal_error: str | None = None  # set once the producer reported a fatal error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="ingest-kafka-poll", daemon=True)
            self._thread.start()

    def _poll_loop(self) -> None:
        poll = self.producer.poll
        while not self._stop.is_set():
            poll(0.05)

    def close(self, timeout: float = 30.0) -> int:
        """Stop polling and flush what is still queued; return how many messages were left undelivered."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        left = self.producer.flush(timeout)
        if left:
            _log.error("%d messages were still undelivered after %.0fs of flushing", left, timeout)
        close = getattr(self.producer, "close", None)
        if self.owns_producer and close is not None:
            close()
        return left

    # -- sending --------------------------------------------------------------------------------------

    async def send(self, batch: Batch) -> None:
        """Produce `batch` (events to the raw topic, rejections to the DLQ) and wait for every ack.

        Raises DeliveryFailed when any message failed or the acks did not all come within the delivery
        timeout. Messages produced before a failure may have reached Kafka anyway (see the API docs).
        """
        if batch.empty:
            return
        delivery = _Delivery(asyncio.get_running_loop())
        deadline = time.monotonic() + self.delivery_timeout_s
        with self.tracing.span("kafka.produce", attributes={"messaging.batch.message_count": len(batch.events)}):
            produced = await self._produce_events(batch.events, delivery, deadline, self.tracing.headers())
            if produced == len(batch.events):
                produced += await self._produce_rejections(batch.rejections, delivery, deadline)
            delivery.seal(produced)
            try:
                await asyncio.wait_for(delivery.future, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise DeliveryFailed(f"Kafka did not acknowledge within {self.delivery_timeout_s:.0f}s") from None
        if delivery.fatal and self.fatal_error is None:
            self.fatal_error = delivery.error
            _log.critical("the Kafka producer hit a fatal error: %s", delivery.error)
        if delivery.error is not None:
            raise DeliveryFailed(f"Kafka did not take a message: {delivery.error}")
        if produced < len(batch.events) + len(batch.rejections):
            raise DeliveryFailed("the producer queue stayed full; Kafka is not keeping up")

    async def _produce_events(
        self,
        events: Sequence[ValidEvent],
        delivery: _Delivery,
        deadline: float,
        trace_headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        """Produce `events` in order; return how many the producer took (all, unless it refused or stayed
        full until `deadline`). `trace_headers` (tracing on) go on every message."""
        produce = self.producer.produce
        topic = self.raw_topic
        on_delivery = delivery.on_delivery
        extra: dict[str, Any] = {} if trace_headers is None else {"headers": trace_headers}
        index = 0
        while index < len(events):
            try:
                for event in events[index:] if index else events:
                    produce(topic, event.payload, event.event_id, on_delivery=on_delivery, **extra)
                    index += 1
            except BufferError:
                if not await self._wait_for_room(deadline):
                    break
            except KafkaException as exc:  # refused at once (e.g. after a fatal producer error)
                delivery.refused(exc)
                break
        return index

    async def _produce_rejections(self, rejections: Sequence[Rejection], delivery: _Delivery, deadline: float) -> int:
        index = 0
        while index < len(rejections):
            rejection = rejections[index]
            try:
                self.producer.produce(
                    self.dlq_topic, rejection.raw[:DLQ_MAX_VALUE_BYTES], None,
                    headers=dlq_headers(rejection, self.pipeline), on_delivery=delivery.on_delivery,
                )  # fmt: skip
            except BufferError:
                if not await self._wait_for_room(deadline):
                    break
                continue
            except KafkaException as exc:
                delivery.refused(exc)
                break
            index += 1
        return index

    @staticmethod
    async def _wait_for_room(deadline: float) -> bool:
        """The producer queue is full: give the poll thread time to drain it, until `deadline`."""
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_BUFFER_FULL_PAUSE_S)
        return True
