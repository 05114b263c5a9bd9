"""`python -m adnomaly.sinks.features --config PATH`: run one feature sink process.

Reads the component config's `feature_sink` section (FeatureSinkConfig). The Redis URL comes from
$ADNOMALY_REDIS_URL and the PostgreSQL DSN from $ADNOMALY_POSTGRES_DSN (never from the config or the
command line, never logged). SIGTERM/SIGINT: the batch in hand is finished and committed, the consumer
leaves its group, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from types import FrameType

import redis as redis_py
from confluent_kafka import Consumer
from prometheus_client import REGISTRY, CollectorRegistry

from adnomaly.config import ComponentConfig, SecretEnv, secret_from_env
from adnomaly.kafka_client import CONSUMER_TUNING, consumer_config
from adnomaly.observability import serve_metrics
from adnomaly.sinks.config import FEATURE_SINK_SECTION, FeatureSinkConfig, load_section
from adnomaly.sinks.features.metrics import FeatureSinkMetrics
from adnomaly.sinks.features.runner import FeatureSink, FeatureSinkSettings
from adnomaly.sinks.features.stores import HistoryStore, OnlineStore

_log = logging.getLogger("adnomaly.sinks.features")


def redis_client(url: str) -> redis_py.Redis:
    return redis_py.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)


def build_feature_sink(
    config: ComponentConfig,
    section: FeatureSinkConfig,
    redis_url: str,
    dsn: str,
    registry: CollectorRegistry = REGISTRY,
) -> FeatureSink:
    consumer = Consumer(
        consumer_config(
            config.kafka.bootstrap_servers, section.group_id,
            **{"security.protocol": config.kafka.security_protocol, "client.id": f"{config.pipeline}-feature-sink"},
            **CONSUMER_TUNING,  # a crashed sink's partitions are taken over after 10 s, not librdkafka's 45 s
        )
    )  # fmt: skip
    settings = FeatureSinkSettings(
        topic=config.kafka.topics.features, feast_project=section.feast_project,
        batch_size=section.batch_size, batch_timeout_s=section.batch_timeout_s,
    )  # fmt: skip
    return FeatureSink(
        settings,
        {view.name: view for view in section.features},
        consumer,
        OnlineStore(redis_client(redis_url)),
        HistoryStore(dsn, section.db_schema),
        FeatureSinkMetrics.create(registry),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.sinks.features", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, section = load_section(args.config, FEATURE_SINK_SECTION, FeatureSinkConfig)
    redis_url = secret_from_env(SecretEnv.REDIS_URL)
    dsn = secret_from_env(SecretEnv.POSTGRES_DSN)
    assert redis_url is not None and dsn is not None
    sink = build_feature_sink(config, section, redis_url, dsn)

    def stop(signum: int, _frame: FrameType | None) -> None:
        _log.info("%s received: finishing the current batch", signal.Signals(signum).name)
        sink.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_metrics(config.metrics_port)
    _log.info(
        "feature sink for pipeline %s: %s → Redis (Feast project %s) and %s.feature_aggregates (group %s)",
        config.pipeline, config.kafka.topics.features, section.feast_project, section.db_schema, section.group_id,
    )  # fmt: skip
    sink.run()
    _log.info("feature sink stopped")
    return 0
