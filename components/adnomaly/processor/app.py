"""`python -m adnomaly.processor --config PATH`: run one processor process.

The PostgreSQL DSN comes from $ADNOMALY_POSTGRES_DSN (never from the config or the command line, never
logged). SIGTERM/SIGINT: the batch in hand is finished and committed, the consumer leaves its group, and
the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, Producer
from prometheus_client import REGISTRY, CollectorRegistry

from adnomaly.config import ComponentConfig, SecretEnv, load_config, secret_from_env
from adnomaly.events.codec import codec_for_events
from adnomaly.kafka_client import CONSUMER_TUNING, consumer_config, producer_config
from adnomaly.observability import serve_metrics
from adnomaly.processor.dlq import DeadLetterQueue
from adnomaly.processor.metrics import ProcessorMetrics
from adnomaly.processor.runner import LoopSettings, Processor
from adnomaly.processor.store import EventStore
from adnomaly.tracing import Tracing, configure

_log = logging.getLogger("adnomaly.processor")

# A crashed processor's partitions move to the others after 10 s instead of librdkafka's default 45 s
# (heartbeats come from librdkafka's own thread, so a busy batch does not miss them).
# PostgreSQL connections writing batches at the same time: with two, one batch is copied and inserted
# while the previous one waits for its commit to be flushed to disk (see runner's module docstring).
WRITER_CONNECTIONS = 2


def kafka_clients(config: ComponentConfig) -> tuple[Consumer, Producer]:
    assert config.processor is not None
    common: dict[str, Any] = {"security.protocol": config.kafka.security_protocol}
    consumer = Consumer(
        consumer_config(
            config.kafka.bootstrap_servers, config.processor.group_id,
            **common, **CONSUMER_TUNING, **{"client.id": f"{config.pipeline}-processor"},
        )
    )  # fmt: skip
    producer = Producer(
        producer_config(
            config.kafka.bootstrap_servers,
            **common, **{"client.id": f"{config.pipeline}-processor-dlq", "allow.auto.create.topics": False},
        )
    )  # fmt: skip
    return consumer, producer


def build_processor(
    config: ComponentConfig, dsn: str, registry: CollectorRegistry = REGISTRY, tracing: Tracing | None = None
) -> Processor:
    """A processor wired to real Kafka and PostgreSQL clients, as described by `config`; `tracing` defaults
    to what the OTEL_* environment asks for (off when unset)."""
    if config.processor is None:
        raise SystemExit("the component config has no `processor` section")
    section = config.processor
    codec = codec_for_events(config.events)
    consumer, producer = kafka_clients(config)
    return Processor(
        LoopSettings(
            topic=config.kafka.topics.raw, batch_size=section.batch_size, batch_timeout_s=section.batch_timeout_s
        ),
        consumer=consumer,
        stores=[EventStore(dsn, section.db_schema, config.events.time_field) for _ in range(WRITER_CONNECTIONS)],
        dlq=DeadLetterQueue(producer, config.kafka.topics.dlq, config.pipeline),
        decode=codec.decode,
        metrics=ProcessorMetrics.create(registry),
        tracing=tracing if tracing is not None else configure("adnomaly-processor"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.processor", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    dsn = secret_from_env(SecretEnv.POSTGRES_DSN)
    assert dsn is not None
    processor = build_processor(config, dsn)

    def stop(signum: int, _frame: FrameType | None) -> None:
        _log.info("%s received: finishing the current batch", signal.Signals(signum).name)
        processor.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_metrics(config.metrics_port)
    assert config.processor is not None
    _log.info(
        "processor for pipeline %s: %s → schema %s (group %s, batches of %d)", config.pipeline,
        config.kafka.topics.raw, config.processor.db_schema, config.processor.group_id, config.processor.batch_size,
    )  # fmt: skip
    processor.run()
    processor.tracing.shutdown()  # export the last spans (no-op when tracing is off)
    _log.info("processor stopped")
    return 0
