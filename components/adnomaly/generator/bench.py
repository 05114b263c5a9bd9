"""`adnomaly bench generator`: events/s of the pure generator per schema, and produced/s to a real broker.

Wire-up: `components/adnomaly/bench/generator.py` re-exports `register` (and "generator" joins BENCHMARKS).
Without `--bootstrap` a private Kafka broker is started in a temporary directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from adnomaly.config import ComponentConfig, TopicNames
from adnomaly.events.schemas import SCHEMA_NAMES
from adnomaly.generator.runner import GeneratorRunner, RunOptions, check_topic, kafka_producer_config
from adnomaly.generator.stats import DeliveryCounts
from adnomaly.generator.stream import EventStream, GeneratorSettings
from adnomaly.kafka_client import TopicSettings, ensure_topics
from adnomaly.plan import Endpoints, plan
from adnomaly.spec import parse_pipeline


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("generator", help="synthetic event generator throughput")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=100_000, help="events per schema for the pure run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the broker run (0: skip it)")
    parser.add_argument("--rate", type=float, default=1_000_000.0, help="target rate of the broker run")
    parser.add_argument("--schema", choices=SCHEMA_NAMES, default="clickstream", help="schema of the broker run")
    parser.add_argument("--invalid-rate", type=float, default=0.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="an existing broker (default: start a private one)")
    parser.set_defaults(func=run)


def pure_rate(schema: str, events: int, invalid_rate: float = 0.0) -> dict[str, float]:
    """Events/s of the pure stream (wall clock and CPU time), pools built beforehand."""
    settings = GeneratorSettings(
        schema=schema, seed=1, rate=50_000.0, start=datetime.now(UTC), invalid_rate=invalid_rate
    )
    iterator = iter(EventStream(settings))
    wall, cpu = time.perf_counter(), time.process_time()
    size = 0
    for _ in range(events):
        size += len(next(iterator).value)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events_per_s": round(events / wall), "events_per_cpu_s": round(events / cpu),
            "avg_bytes": round(size / events)}  # fmt: skip


def bench_config(bootstrap: str, topic: str, schema: str, rate: float, invalid_rate: float) -> ComponentConfig:
    pipeline = parse_pipeline({
        "metadata": {"name": "bench"},
        "spec": {"events": {"schema": schema},
                 "source": {"generator": {"eventsPerSecond": rate, "invalidRate": invalid_rate}}},
    })  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap=bootstrap)).components["generator"].config
    topics = TopicNames(raw=topic, dlq=f"{topic}-dlq", features=f"{topic}-f", anomalies=f"{topic}-a")
    return config.model_copy(update={"kafka": config.kafka.model_copy(update={"topics": topics})})


def broker_rate(config: ComponentConfig, partitions: int, seconds: float) -> dict[str, Any]:
    """Run the real runner for `seconds` against the broker; produced/s counts acknowledged events only."""
    topic = config.kafka.topics.raw
    ensure_topics(config.kafka.bootstrap_servers, {topic: TopicSettings(partitions)})
    counts = DeliveryCounts()
    producer = Producer(kafka_producer_config(config, counts.on_valid))
    check_topic(producer, topic)
    settings = GeneratorSettings.from_config(config, datetime.now(UTC))
    t0, start = time.perf_counter(), datetime.now(UTC)
    runner = GeneratorRunner(
        EventStream(dataclasses.replace(settings, start=start)), producer, counts, topic, RunOptions()
    )
    cpu = time.process_time()
    deadline = t0 + seconds
    code = runner.run(lambda: time.perf_counter() >= deadline, t0)
    wall = time.perf_counter() - t0
    return {
        "schema": settings.schema, "target_rate": settings.rate, "seconds": round(seconds, 1),
        "produced": counts.produced, "failed": counts.failed, "exit_code": code,
        "produced_per_s": round(runner.achieved_rate(), 1),
        "produced_per_s_incl_flush": round(counts.produced / wall, 1),
        "cpu_s": round(time.process_time() - cpu, 2),
    }  # fmt: skip


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from adnomaly.services.kafka import KafkaBroker

    with tempfile.TemporaryDirectory(prefix="adnomaly-bench-") as tmp, KafkaBroker(Path(tmp)) as broker:
        yield broker.bootstrap_servers


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "pure": {schema: pure_rate(schema, args.events, args.invalid_rate) for schema in SCHEMA_NAMES}
    }
    if args.seconds > 0:
        with _broker(args.bootstrap) as bootstrap:
            topic = f"bench-generator-{uuid.uuid4().hex[:8]}"
            config = bench_config(bootstrap, topic, args.schema, args.rate, args.invalid_rate)
            result["broker"] = broker_rate(config, args.partitions, args.seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.generator.bench")
    register(parser.add_subparsers(dest="benchmark", required=True))
    args = parser.parse_args(["generator", *sys.argv[1:]])
    print(json.dumps(args.func(args), indent=2))


if __name__ == "__main__":
    main()
