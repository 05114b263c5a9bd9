"""`python -m adnomaly.sinks.lake --config PATH`: run one lake sink process.

Reads the component config's `lake` section (LakeConfig). S3 credentials come from $ADNOMALY_S3_ACCESS_KEY
and $ADNOMALY_S3_SECRET_KEY (never from the config or the command line, never logged); without them an
s3:// lake uses the AWS SDK's default credential chain. SIGTERM/SIGINT: what may be flushed is flushed
and committed, the consumer leaves its group, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Sequence
from types import FrameType

from confluent_kafka import Consumer
from prometheus_client import REGISTRY, CollectorRegistry

from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.events.codec import codec_for_events
from adnomaly.kafka_client import CONSUMER_TUNING, consumer_config
from adnomaly.observability import serve_metrics
from adnomaly.sinks.config import LAKE_SECTION, LakeConfig, load_section
from adnomaly.sinks.lake.buffer import FlushPolicy
from adnomaly.sinks.lake.history import TopicHistory
from adnomaly.sinks.lake.metrics import LakeMetrics
from adnomaly.sinks.lake.runner import LakeSettings, LakeSink
from adnomaly.sinks.lake.storage import LakeStore, S3Credentials
from adnomaly.sinks.lake.table import converter_for

_log = logging.getLogger("adnomaly.sinks.lake")


def s3_credentials_from_env() -> S3Credentials | None:
    access, secret = os.environ.get(SecretEnv.S3_ACCESS_KEY), os.environ.get(SecretEnv.S3_SECRET_KEY)
    if bool(access) != bool(secret):
        raise SystemExit(f"set both {SecretEnv.S3_ACCESS_KEY} and {SecretEnv.S3_SECRET_KEY}, or neither")
    return S3Credentials(access, secret) if access and secret else None


def build_lake_sink(
    config: ComponentConfig,
    lake: LakeConfig,
    credentials: S3Credentials | None,
    registry: CollectorRegistry = REGISTRY,
) -> LakeSink:
    """A lake sink wired to a real Kafka consumer and store, as described by the config."""
    events = config.events
    codec = codec_for_events(events)
    security = {"security.protocol": config.kafka.security_protocol}
    consumer = Consumer(
        consumer_config(
            config.kafka.bootstrap_servers, lake.group_id,
            **{**security, "client.id": f"{config.pipeline}-lake-sink"},
            **CONSUMER_TUNING,  # a crashed sink's partitions are taken over after 10 s, not librdkafka's 45 s
        )
    )  # fmt: skip
    # Reads partitions back to rebuild the dedup state (assigned, never committing: the group is untouched).
    history = TopicHistory(consumer_config(
        config.kafka.bootstrap_servers, f"{lake.group_id}-history",
        **{**security, "client.id": f"{config.pipeline}-lake-sink-history"},
    ), codec.decode)  # fmt: skip
    store = LakeStore(lake.uri, endpoint=lake.s3_endpoint, region=lake.s3_region, credentials=credentials)
    settings = LakeSettings(
        topic=config.kafka.topics.raw,
        partitioning=lake.partitioning,
        policy=FlushPolicy(events=lake.flush_events, bytes=lake.flush_bytes, interval_s=lake.flush_interval_s),
        max_buffer_bytes=lake.max_buffer_bytes,
        consume_batch=lake.consume_batch,
        compression=lake.compression,
        dedup_window_ms=round(events.dedup_window_s * 1000),
    )
    converter = converter_for(events.schema_name, events.json_schema, events.time_field)
    return LakeSink(
        settings, consumer, store, codec.decode, converter, LakeMetrics.create(registry), history=history
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.sinks.lake", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, lake = load_section(args.config, LAKE_SECTION, LakeConfig)
    sink = build_lake_sink(config, lake, s3_credentials_from_env())

    def stop(signum: int, _frame: FrameType | None) -> None:
        _log.info("%s received: flushing and leaving", signal.Signals(signum).name)
        sink.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_metrics(config.metrics_port)
    _log.info(
        "lake sink for pipeline %s: %s → %s (%s, group %s)", config.pipeline, config.kafka.topics.raw, lake.uri,
        lake.partitioning, lake.group_id,
    )  # fmt: skip
    sink.run()
    _log.info("lake sink stopped")
    return 0
