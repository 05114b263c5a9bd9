"""The detector loop: consume feature records, judge them, store and publish anomalies, commit.

Per batch: decode each record (undecodable ones are logged and counted, never judged), run the engine
(carrying the record's `traceparent`/`tracestate` headers and its topic/partition/offset into the
anomaly's context), upsert the anomalies into PostgreSQL, then, in one Kafka transaction, produce them to
the anomalies topic (key: anomaly id) and commit the consumed offsets. A crash before the transaction
commits replays the batch: the table is idempotent and the aborted messages are invisible to
read_committed consumers, so each anomaly appears once in both. At start, anomalies still open in the
table are re-adopted, so a restart does not open them twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from adnomaly.config import ComponentConfig
from adnomaly.detection.anomaly import ENCODER, Anomaly
from adnomaly.detection.engine import DetectionEngine
from adnomaly.detector import store
from adnomaly.detector.config import DetectorConfig
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.features.record import DECODER, FeatureRecord
from adnomaly.kafka_client import consumer_config, producer_config

_log = logging.getLogger(__name__)
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_context(message: Message) -> dict[str, Any]:
    """What links an anomaly back to its feature window: trace headers and the record's position."""
    context: dict[str, Any] = {
        "source": {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
    }
    for name, value in message.headers() or ():
        if name in TRACE_HEADERS and value is not None:
            context[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return context


class DetectorRunner:
    def __init__(self, config: ComponentConfig, section: DetectorConfig, dsn: str,
                 metrics: DetectorMetrics | None = None) -> None:  # fmt: skip
        self.config = config
        self.section = section
        self.metrics = metrics or DetectorMetrics()
        self.engine = DetectionEngine(
            pipeline=config.pipeline, detection=section.detection_spec(), resolve_after=section.resolve_after,
            threshold_min_count=section.threshold_min_count,
        )  # fmt: skip
        self.conn = psycopg.connect(dsn, autocommit=True)
        store.ensure_table(self.conn, section.db_schema)
        self.engine.restore(store.open_anomalies(self.conn, section.db_schema, config.pipeline))
        bootstrap = config.kafka.bootstrap_servers
        self.consumer = Consumer(consumer_config(bootstrap, section.group_id))
        self.producer = Producer(producer_config(bootstrap, transactional_id=section.transactional_id))
        self.producer.init_transactions(30)
        self.stopping = threading.Event()

    def judge(self, messages: list[Message]) -> list[tuple[Anomaly, list[tuple[str, bytes]]]]:
        out: list[tuple[Anomaly, list[tuple[str, bytes]]]] = []
        decoded: list[tuple[FeatureRecord, Message]] = []
        for message in messages:
            try:
                decoded.append((DECODER.decode(message.value() or b""), message))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.metrics.invalid.inc()
                _log.error("skipping an undecodable feature record at %s[%d]@%d: %s",
                           message.topic(), message.partition(), message.offset(), exc)  # fmt: skip
        # The features topic is keyed by (feature, key, window end), so one key's windows spread over
        # partitions: judge a batch in window order.
        decoded.sort(key=lambda item: item[0].window_end)
        for record, message in decoded:
            self.metrics.records.inc()
            context = trace_context(message)
            headers = [(k, v.encode()) for k, v in context.items() if k in TRACE_HEADERS]
            out.extend((a, headers) for a in self.engine.process(record, context))
        return out

    def handle(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        judged = self.judge(messages)
        store.write(self.conn, self.section.db_schema, [a for a, _ in judged])
        positions: dict[tuple[str, int], int] = {}
        for message in messages:
            positions[(message.topic(), message.partition())] = message.offset() + 1
        self.producer.begin_transaction()
        try:
            for anomaly, headers in judged:
                self.producer.produce(self.config.kafka.topics.anomalies, key=anomaly.id.encode(),
                                      value=ENCODER.encode(anomaly), headers=headers)  # fmt: skip
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except Exception:
            self.producer.abort_transaction(30)
            raise
        for anomaly, _ in judged:
            if anomaly.status == "open":
                self.metrics.anomalies.labels(anomaly.type, anomaly.severity).inc()
            else:
                self.metrics.resolved.labels(anomaly.type).inc()
        self.metrics.batch.observe(time.perf_counter() - started)

    def run(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.consumer.subscribe([self.config.kafka.topics.features])
        try:
            while not self.stopping.is_set():
                messages = self.consumer.consume(self.section.batch_size, self.section.batch_timeout_s)
                good = []
                for message in messages:
                    if message.error():
                        _log.warning("consumer error: %s", message.error())
                    else:
                        good.append(message)
                if good:
                    self.handle(good)
                    if on_batch is not None:
                        on_batch(len(good))
        finally:
            self.close()

    def close(self) -> None:
        self.producer.flush(30)
        self.consumer.close()
        self.conn.close()
