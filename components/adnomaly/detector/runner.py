"""The detector loop: consume feature records, judge them, store and publish anomalies, commit.

Per batch: decode each feature record (undecodable ones are logged and counted, never judged); when a
detector watches the reserved feature `_dlq`, also count the raw and dead-letter topics' record
timestamps into `_dlq` windows; run the engine in window order (carrying a record's `traceparent`/
`tracestate` headers and its topic/partition/offset into the anomaly's context). Then, in one PostgreSQL
transaction, upsert the anomalies and save a checkpoint (the engine's and the windows' state with the
consumed offsets); then, in one Kafka transaction, produce the anomalies to the anomalies topic (key:
anomaly id) and commit the same offsets. At start the checkpoint matching Kafka's committed offsets is
loaded (`adnomaly.detector.checkpoint`), so a restart, even after kill -9, judges on from exactly the state
of an uninterrupted run: each anomaly, its escalation and its resolution appear once in the topic and the
table. Without a matching checkpoint (first start of an older deployment, expired group offsets), the
anomalies still open in the table are re-adopted instead, so they are at least not opened twice.

With `notify` configured, a committed batch's anomalies are handed to a background sender for
Alertmanager (`adnomaly.notify`); the notices it keeps are part of the checkpoint, so a restart neither
loses a notification nor sends a resolved anomaly as firing again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message, Producer, TopicPartition

from adnomaly.config import ComponentConfig
from adnomaly.detection.anomaly import ENCODER, Anomaly
from adnomaly.detection.dlq import InvalidShareWindows
from adnomaly.detection.engine import DetectionEngine
from adnomaly.detector import checkpoint, store
from adnomaly.detector.config import DetectorConfig
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.durations import parse_duration
from adnomaly.features.record import DECODER, FeatureRecord
from adnomaly.kafka_client import CONSUMER_TUNING, consumer_config, producer_config
from adnomaly.notify import state as notify_state
from adnomaly.notify.sender import AlertmanagerClient, Notifier, auth_from_env
from adnomaly.spec import DLQ_FEATURE

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
        detection = section.detection_spec()
        self.engine = DetectionEngine(
            pipeline=config.pipeline, detection=detection, resolve_after=section.resolve_after,
            threshold_min_count=section.threshold_min_count,
        )  # fmt: skip
        topics = config.kafka.topics
        self.dlq: InvalidShareWindows | None = None
        self.topics = [topics.features]
        if any(d.feature == DLQ_FEATURE for d in detection.detectors):
            self.dlq = InvalidShareWindows(int(parse_duration(detection.dlq.window) * 1_000_000),
                                           int(parse_duration(detection.dlq.allowed_lateness) * 1_000_000))  # fmt: skip
            self.topics += [topics.raw, topics.dlq]
        self.conn = psycopg.connect(dsn, autocommit=True)
        store.ensure_table(self.conn, section.db_schema)
        bootstrap = config.kafka.bootstrap_servers
        security = {"security.protocol": config.kafka.security_protocol}
        self.consumer = Consumer(consumer_config(bootstrap, section.group_id, **security, **CONSUMER_TUNING))
        self.producer = Producer(producer_config(bootstrap, transactional_id=section.transactional_id, **security))
        # Fences a killed predecessor and settles its open transaction: the committed offsets read next are final.
        self.producer.init_transactions(30)
        self.positions: dict[str, int] = {}
        self.seq = 0
        self.notifier: Notifier | None = None
        if section.notify is not None:
            client = AlertmanagerClient(section.notify.url, auth_from_env(), section.notify.timeout_s)
            self.notifier = Notifier(section.notify, client, self.metrics)
        self.resume()
        self.stopping = threading.Event()

    def committed(self) -> dict[str, int]:
        """The offsets Kafka holds for this group on the consumed topics (partitions never committed: absent)."""
        partitions = []
        for topic in self.topics:
            meta = self.consumer.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None:
                raise RuntimeError(f"cannot read the partitions of topic {topic!r}: {meta and meta.error}")
            partitions += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        out: dict[str, int] = {}
        for tp in self.consumer.committed(partitions, timeout=30):
            if tp.error is not None:
                raise RuntimeError(f"cannot read the committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            if tp.offset >= 0:
                out[checkpoint.offset_key(tp.topic, tp.partition)] = tp.offset
        return out

    def resume(self) -> None:
        """Load the checkpoint matching Kafka's committed offsets, else re-adopt the open anomalies."""
        committed = self.committed()
        schema, group = self.section.db_schema, self.section.group_id
        saved = store.checkpoints(self.conn, schema, group)
        found = checkpoint.matching(saved, committed, self.topics)
        if found is None:
            if saved or committed:
                _log.warning("no checkpoint matches the committed offsets %s: judging on with fresh baselines, "
                             "re-adopting the open anomalies", committed)  # fmt: skip
            store.drop_checkpoints(self.conn, schema, group)
            self.engine.restore(store.open_anomalies(self.conn, schema, self.config.pipeline))
            self.positions, self.seq = committed, 0
            self.resume_notices(None)
            return
        seq, self.positions, state = found
        store.drop_checkpoints(self.conn, schema, group, after=seq)  # a batch Kafka never saw committed
        self.seq = seq
        cp = checkpoint.DECODER.decode(state)
        self.engine.load(cp.engine)
        dlq = self.dlq
        if dlq is not None and cp.dlq is not None and (cp.dlq.size_us, cp.dlq.lateness_us) == (
            dlq.size_us, dlq.lateness_us
        ):  # fmt: skip
            self.dlq = InvalidShareWindows.from_state(dlq.size_us, dlq.lateness_us, cp.dlq.windows)
        self.resume_notices(cp.notify)
        _log.info("resumed from checkpoint %d (%d open anomalies)", seq, len(self.engine.open))

    def resume_notices(self, saved: notify_state.Notices | None) -> None:
        """The saved notices, plus a firing one for each open anomaly they lack (the checkpoint predates
        notifications, or there was none), minus open ones no detector tracks any more."""
        if self.notifier is None:
            return
        opened = [o.anomaly for o in self.engine.open.values()]
        notices = notify_state.observe(saved or {}, opened, self.notifier.config.alertname)
        self.notifier.load(notify_state.keep_open(notices, (a.id for a in opened)))

    def encoded_state(self, notices: notify_state.Notices | None = None) -> bytes:
        dlq = None
        if self.dlq is not None:
            dlq = checkpoint.DlqState(self.dlq.size_us, self.dlq.lateness_us, self.dlq.state())
        return checkpoint.ENCODER.encode(
            checkpoint.Checkpoint(engine=self.engine.snapshot(), dlq=dlq, notify=notices)
        )

    def judge(self, messages: list[Message]) -> list[tuple[Anomaly, list[tuple[str, bytes]]]]:
        out: list[tuple[Anomaly, list[tuple[str, bytes]]]] = []
        decoded: list[tuple[FeatureRecord, Message | None]] = []
        topics = self.config.kafka.topics
        for message in messages:
            if message.topic() != topics.features:
                self.count_dlq(message)
                continue
            try:
                decoded.append((DECODER.decode(message.value() or b""), message))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.metrics.invalid.inc()
                _log.error("skipping an undecodable feature record at %s[%d]@%d: %s",
                           message.topic(), message.partition(), message.offset(), exc)  # fmt: skip
        if self.dlq is not None:
            decoded.extend((record, None) for record in self.dlq.fire(self.dlq.watermark(self.lagging())))
        # The features topic is keyed by (feature, key, window end), so one key's windows spread over
        # partitions: judge a batch in window order.
        decoded.sort(key=lambda item: item[0].window_end)
        for record, message in decoded:
            self.metrics.records.inc()
            context = trace_context(message) if message is not None else {}
            headers = [(k, v.encode()) for k, v in context.items() if k in TRACE_HEADERS]
            out.extend((a, headers) for a in self.engine.process(record, context))
        return out

    def count_dlq(self, message: Message) -> None:
        """Count a raw or dead-letter record into the `_dlq` windows (by its Kafka timestamp)."""
        kind, ms = message.timestamp()
        if self.dlq is None or kind == TIMESTAMP_NOT_AVAILABLE:
            return
        source = checkpoint.offset_key(message.topic(), message.partition())
        if message.topic() == self.config.kafka.topics.dlq:
            counted = self.dlq.count_invalid(ms * 1000, source)
        else:
            counted = self.dlq.count_raw(ms * 1000, source)
        if not counted:
            self.metrics.late.inc()

    def lagging(self) -> list[str]:
        """The raw and dead-letter partitions with records left to read (by the cached high watermarks)."""
        topics = self.config.kafka.topics
        assigned = [tp for tp in self.consumer.assignment() if tp.topic in (topics.raw, topics.dlq)]
        out = []
        for tp in self.consumer.position(assigned) if assigned else []:
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            position = tp.offset if tp.offset >= 0 else max(low, 0)
            if high < 0 or position < high:
                out.append(checkpoint.offset_key(tp.topic, tp.partition))
        return out

    def handle(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        judged = self.judge(messages)
        for message in messages:
            self.positions[checkpoint.offset_key(message.topic(), message.partition())] = message.offset() + 1
        self.seq += 1
        anomalies = [a for a, _ in judged]
        notices = self.notifier.preview(anomalies) if self.notifier is not None else None
        store.write(self.conn, self.section.db_schema, anomalies,
                    (self.section.group_id, self.seq, self.positions, self.encoded_state(notices)))  # fmt: skip
        self.producer.begin_transaction()
        try:
            for anomaly, headers in judged:
                self.producer.produce(self.config.kafka.topics.anomalies, key=anomaly.id.encode(),
                                      value=ENCODER.encode(anomaly), headers=headers)  # fmt: skip
            offsets = []
            for key, offset in self.positions.items():
                topic, partition = key.rsplit(":", 1)
                offsets.append(TopicPartition(topic, int(partition), offset))
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except Exception:
            self.producer.abort_transaction(30)
            raise
        if self.notifier is not None:  # only now: a restart resumes from this batch's checkpoint or a later one
            self.notifier.observe(anomalies)
        for anomaly, _ in judged:
            if anomaly.status == "open":
                self.metrics.anomalies.labels(anomaly.type, anomaly.severity).inc()
            else:
                self.metrics.resolved.labels(anomaly.type).inc()
        self.metrics.batch.observe(time.perf_counter() - started)

    def run(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.consumer.subscribe(self.topics)
        if self.notifier is not None:
            self.notifier.start()
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
        if self.notifier is not None:
            self.notifier.close()
        self.producer.flush(30)
        self.consumer.close()
        self.conn.close()
