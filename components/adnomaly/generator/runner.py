"""The I/O part of the generator: pace the pure event stream against the wall clock and produce to Kafka.

Event time is the wall-clock time at which each event is due (the stream starts at "now"). Only events
the broker acknowledged count as produced (delivery callbacks). The stats file is refreshed four times a
second (what `adnomaly up` shows is at most that stale) and written a last time after the final flush;
SIGTERM/SIGINT stop production, flush, and exit 0.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import KafkaException, Producer

from adnomaly.config import ComponentConfig
from adnomaly.generator import metrics
from adnomaly.generator.pacing import Pacer
from adnomaly.generator.stats import DeliveryCounts, LabelWriter, stats_document, write_json_atomic
from adnomaly.generator.stream import EventStream, GeneratedEvent, GeneratorSettings
from adnomaly.kafka_client import producer_config

_log = logging.getLogger("adnomaly.generator")

HOUSEKEEPING_S = 0.25  # stats file, metrics, lag: refreshed this often (`adnomaly up` samples once a second)
FLUSH_TIMEOUT_S = 30.0
BUFFER_FULL_WAIT_S = 0.05
KAFKA_MESSAGE_OVERHEAD = 64 * 1024  # room above max_event_bytes for oversize test events and headers


@dataclass(frozen=True)
class RunOptions:
    stats_file: Path | None = None
    labels_file: Path | None = None
    max_events: int | None = None
    flush_timeout_s: float = FLUSH_TIMEOUT_S


class StopFlag:
    """Set by SIGTERM/SIGINT; the production loop checks it between batches."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)


def kafka_producer_config(config: ComponentConfig, on_delivery: Callable[[Any, Any], None]) -> dict[str, Any]:
    """The project's producer config, sized for oversize test events; the SASL login (if any) comes from the
    environment through `producer_config` (see adnomaly.kafka_client.security_settings)."""
    overrides: dict[str, Any] = {
        "client.id": f"{config.pipeline}-generator",
        "message.max.bytes": max(1_000_000, config.events.max_event_bytes * 2 + KAFKA_MESSAGE_OVERHEAD),
        "security.protocol": config.kafka.security_protocol,
        "on_delivery": on_delivery,
        "error_cb": _log_kafka_error,
    }
    return producer_config(config.kafka.bootstrap_servers, **overrides)


def _log_kafka_error(err: Any) -> None:
    _log.warning("kafka: %s", err)


def check_topic(producer: Producer, topic: str, timeout: float = 60.0, grace: float = 5.0) -> None:
    """Fail early and clearly when the broker stays unreachable or the topic does not exist.

    A topic that is reported missing is asked for again for `grace` seconds (a topic created a moment
    ago may not be in every broker's metadata yet).
    """
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        try:
            meta = producer.list_topics(topic=topic, timeout=min(5.0, timeout)).topics.get(topic)
        except KafkaException as exc:
            if waited > timeout:
                raise GeneratorError(f"no Kafka broker answered within {timeout:.0f}s: {exc}") from None
            time.sleep(0.5)
            continue
        if meta is not None and meta.error is None:
            return
        if waited > grace:
            raise GeneratorError(f"topic {topic!r} does not exist ({meta.error if meta else 'no metadata'})")
        time.sleep(0.5)


class GeneratorError(RuntimeError):
    """The generator cannot start (bad setup); the message says why."""


class GeneratorRunner:
    """Sends `stream`'s events to `topic` at the stream's rate until stopped or `max_events` are sent."""

    def __init__(
        self,
        stream: EventStream,
        producer: Producer,
        counts: DeliveryCounts,
        topic: str,
        options: RunOptions,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`producer` reports valid events' deliveries to `counts.on_valid` (its default callback)."""
        self.stream = stream
        self.counts = counts
        self.producer = producer
        self.topic = topic
        self.options = options
        self.clock = clock
        self.labels = LabelWriter(options.labels_file)
        self._feed = stream.labels()
        self.sent = 0
        self._t0 = 0.0
        self._last_send = 0.0
        self._reported = DeliveryCounts()

    def run(self, stop: Callable[[], bool], t0: float | None = None) -> int:
        """Produce until `stop()` or `max_events`; event i is due at clock reading `t0 + i / rate`
        (`t0` defaults to now; pass the reading taken when the stream's start time was read)."""
        rate = self.stream.settings.rate
        limit = self.options.max_events
        pacer = Pacer(rate, self.clock() if t0 is None else t0)
        self._t0 = pacer.t0
        metrics.TARGET_RATE.set(rate)
        self._housekeeping(pacer.t0, pacer, running=True)  # a stats file from the start
        events = iter(self.stream)
        produce, poll = self.producer.produce, self.producer.poll
        topic, on_invalid = self.topic, self.counts.on_invalid
        next_housekeeping = pacer.t0 + HOUSEKEEPING_S
        while not stop():
            now = self.clock()
            due = pacer.due(now) if limit is None else min(pacer.due(now), limit)
            if limit is not None and self.sent >= limit:
                break
            if now >= next_housekeeping:
                self._housekeeping(now, pacer, running=True)
                next_housekeeping = now + HOUSEKEEPING_S
            if self.sent >= due:
                poll(pacer.wait(self.sent, now))  # sleeps, but serves delivery callbacks meanwhile
                continue
            sent, last_time_us = self.sent, -1
            for _ in range(min(due - sent, pacer.batch)):
                event = next(events)
                try:
                    if event.malformed is None:
                        produce(topic, event.value, event.key)
                    else:
                        produce(topic, event.value, event.key, on_delivery=on_invalid)
                except BufferError:
                    if not self._produce_when_room(event, stop):
                        break  # stopped while the queue was full: this event is not sent
                last_time_us = event.time_us
                sent += 1
            self.sent = sent
            self._last_send = self.clock()
            poll(0)
            self._labels_started_by(last_time_us)
        return self._finish(pacer)

    def _produce_when_room(self, event: GeneratedEvent, stop: Callable[[], bool]) -> bool:
        """Wait (serving delivery callbacks) until the producer's queue takes `event`; False if stopped."""
        while not stop():
            metrics.BUFFER_FULL.inc()
            self.producer.poll(BUFFER_FULL_WAIT_S)
            try:
                self._send(event)
            except BufferError:
                continue
            return True
        return False

    def _send(self, event: GeneratedEvent) -> None:
        """Hand one event to the producer (the hot loop in `run` inlines exactly this)."""
        if event.malformed is None:
            self.producer.produce(self.topic, event.value, event.key)
        else:
            self.producer.produce(self.topic, event.value, event.key, on_delivery=self.counts.on_invalid)

    def _labels_started_by(self, time_us: int) -> None:
        started = self._feed.started_by(time_us)
        if started:
            self.labels.write(started)
            for label in started:
                metrics.SCENARIOS.labels(scenario=label.scenario).inc()

    def _finish(self, pacer: Pacer) -> int:
        deadline = self.clock() + self.options.flush_timeout_s
        while len(self.producer) > 0 and self.clock() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - self.clock())))
        undelivered = len(self.producer)
        self._housekeeping(self.clock(), pacer, running=False)
        self.labels.close()
        c = self.counts
        _log.info(
            "stopped: %d events produced (%d valid, %d invalid), %d failed, %d undelivered, %.0f/s",
            c.produced, c.valid, c.invalid, c.failed, undelivered, self._rate(running=False),
        )  # fmt: skip
        if undelivered or c.failed:
            _log.error("%d events were not delivered (last error: %s)", undelivered + c.failed, c.last_error)
            return 1
        return 0

    def achieved_rate(self) -> float:
        """Acknowledged events per second over the production window (after `run` returned)."""
        return self._rate(running=False)

    def _elapsed(self, running: bool) -> float:
        if running:
            return max(0.0, self.clock() - self._t0)
        if self.sent == 0:
            return 0.0
        return self._last_send - self._t0 + 1.0 / self.stream.settings.rate  # the last event's own slot

    def _rate(self, running: bool) -> float:
        elapsed = self._elapsed(running)
        return self.counts.produced / elapsed if elapsed > 0 else 0.0

    def _housekeeping(self, now: float, pacer: Pacer, running: bool) -> None:
        c, r = self.counts, self._reported
        metrics.EVENTS.labels(kind="valid").inc(c.valid - r.valid)
        metrics.EVENTS.labels(kind="invalid").inc(c.invalid - r.invalid)
        metrics.DELIVERY_FAILURES.inc(c.failed - r.failed)
        self._reported = DeliveryCounts(c.valid, c.invalid, c.failed)
        metrics.RATE.set(self._rate(running))
        metrics.LAG.set(pacer.lag(self.sent, now))
        if self.options.stats_file is not None:
            document = stats_document(
                c, elapsed_s=self._elapsed(running), generated=self.sent,
                target_rate=self.stream.settings.rate, labels=self.labels.count, running=running,
            )  # fmt: skip
            write_json_atomic(self.options.stats_file, document)


def run_generator(config: ComponentConfig, options: RunOptions, **setting_overrides: Any) -> int:
    """Entry for `python -m adnomaly.generator`: start at "now", produce until stopped."""
    stop = StopFlag()
    stop.install()
    settings = GeneratorSettings.from_config(config, datetime.now(UTC), **setting_overrides)  # validates
    counts = DeliveryCounts()
    producer = Producer(kafka_producer_config(config, counts.on_valid))
    check_topic(producer, config.kafka.topics.raw)
    t0, start = time.perf_counter(), datetime.now(UTC)  # the same instant on both clocks
    stream = EventStream(dataclasses.replace(settings, start=start))
    runner = GeneratorRunner(stream, producer, counts, config.kafka.topics.raw, options)
    _log.info(
        "producing %s events to %s at %g/s (seed %d, invalid rate %g, scenarios %s)",
        settings.schema, config.kafka.topics.raw, settings.rate, settings.seed, settings.invalid_rate,
        ",".join(settings.scenarios) or "none",
    )  # fmt: skip
    try:
        return runner.run(stop, t0)
    except KafkaException as exc:
        _log.error("kafka: %s", exc)
        return 1
