"""`adnomaly bench features`: events/s of the Flink features job consuming a pre-filled raw topic.

Starts a private Kafka broker in a temporary directory (or uses `--bootstrap`), fills the raw topic with N
clickstream events from the generator (seeded, simulated time at `--rate` events per simulated second,
so N events span N/rate seconds of event time), then starts the features job in a local Flink (PyFlink
mini-cluster, parallelism `--parallelism`, exactly-once Kafka sink) and times it consuming all N events.

The rate is measured from the job's own source counter (REST metrics, refreshed every 0.2 s): from the first
poll that sees records flowing to the poll that sees all N, so the JVM start (~20-60 s here) is reported
separately as `startup_seconds`. `events_per_cpu_second` divides by the CPU time the job's processes used in
that interval: on a shared machine it is the comparable per-core figure.

The ceiling, measured in the same run right after the features job: a second job on the same local Flink
(same JVM options, heap, parallelism and Flink configuration) whose only work is `SELECT COUNT(*)` over the
features job's own source tables, built by the same code (`adnomaly.features.sql.compile_source_count`:
Kafka connector, JSON format, computed event time and id, watermark), reading the same pre-filled topic
under a consumer group of its own; timed the same way. `ratio` = features / ceiling: the share of what
reading and decoding the raw topic alone allows that the whole job (dedup, filters, windows, percentile,
exactly-once sink) keeps. Load slows both alike, so the ratio is the steadier figure on a shared machine.

The pipeline computes the architecture's example feature (5 min hopping
windows sliding by 1 min, by geo and platform: avg CTR, avg bounce rate, count) plus a 1 min tumbling
feature with a p95 of CPC (exact percentile), so windowing, percentile state and the Kafka sink all work.
At the end the committed feature windows are counted (read_committed) as a sanity check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from adnomaly.bench.ceiling import machine_load, with_ceiling
from adnomaly.kafka_client import TopicSettings, ensure_topics, producer_config
from adnomaly.spec import Pipeline, parse_pipeline

PIPELINE = "bench"
DRAIN_TIMEOUT_S = 1800.0
# The source counter is read through the REST metrics cache: both refresh every 0.2 s, so a rate is off by
# at most ~0.2 s at each end; that matters for the ceiling, which reads 100k events in a couple of seconds.
POLL_S = 0.2
METRICS_CONFIGURATION = {"metrics.fetcher.update-interval": "200 ms"}


def bench_pipeline(name: str, raw_partitions: int) -> Pipeline:
    return parse_pipeline({
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {
            "events": {"schema": "clickstream"},
            "kafka": {"topics": {"raw": {"partitions": raw_partitions, "retention": "1d"},
                                 "features": {"partitions": 1, "retention": "1d"}}},
            "features": [
                {"name": "traffic_5m_by_geo_platform", "dimensions": ["geo", "platform"],
                 "window": {"type": "hopping", "size": "5m", "slide": "1m"}, "allowedLateness": "30s",
                 "metrics": [{"name": "ctr_avg", "agg": "avg", "field": "CTR"},
                             {"name": "bounce_rate_avg", "agg": "avg", "field": "bounce_rate"},
                             {"name": "event_count", "agg": "count"}]},
                {"name": "cpc_1m_by_geo", "dimensions": ["geo"],
                 "window": {"type": "tumbling", "size": "1m"}, "allowedLateness": "30s",
                 "metrics": [{"name": "cpc_p95", "agg": "p95", "field": "CPC"},
                             {"name": "conversion_rate", "agg": "ratio", "numerator": "conversion",
                              "denominator": "CTR"}]},
            ],
        },
    })  # fmt: skip


def generated_events(count: int, rate: float, seed: int) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) of `count` valid clickstream events from the generator, starting 2 days ago."""
    from adnomaly.generator.stream import EventStream, GeneratorSettings

    start = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
    stream = EventStream(GeneratorSettings(schema="clickstream", seed=seed, rate=rate, start=start))
    for i, event in enumerate(stream):
        if i >= count:
            return
        yield event.key, event.value


def fill(bootstrap: str, topic: str, events: Iterator[tuple[bytes | None, bytes]]) -> int:
    failures: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(producer_config(bootstrap, linger_ms=20))
    count = 0
    for key, value in events:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) or failures:
        raise RuntimeError(f"filling {topic}: {len(failures)} failed deliveries ({failures[:1]})")
    return count


def committed_records(bootstrap: str, topic: str, partitions: int) -> int:
    """Records a read_committed consumer sees in `topic` (its last stable offsets, minus control records)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        seen = 0
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3.0:
            batch = consumer.consume(10_000, timeout=0.5)
            real = [m for m in batch if m.error() is None]
            if real:
                seen += len(real)
                idle_since = time.monotonic()
        return seen
    finally:
        consumer.close()


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the processes of process group `pgid` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process has gone
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...; utime/stime at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def measure(job: Any, expected: int) -> dict[str, float]:
    """Poll the job's source counter until it reaches `expected`; rate between first and last sighting.

    Also the CPU time the job's processes used meanwhile: events per CPU-second is the figure that stays
    comparable when other work shares the cores (wall-clock rate falls with the machine's load)."""
    started = time.monotonic()
    job.wait_running(timeout=300)
    running_at = time.monotonic()
    pgid = job.process.pid
    first: tuple[float, int, float] | None = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job did not consume {expected} events in {DRAIN_TIMEOUT_S:.0f}s")
        job.process.check_alive()
        seen = job.source_records()
        now = time.monotonic()
        if seen:
            if first is None:
                first = (now, seen, group_cpu_seconds(pgid))
            if seen >= expected:
                break
        time.sleep(POLL_S)
    assert first is not None
    cpu_seconds = group_cpu_seconds(pgid) - first[2]
    if seen == first[1]:  # everything was consumed before the first sighting: too few events to measure
        raise RuntimeError(f"all {expected} events were consumed within one poll: use more --events")
    return {
        "startup_seconds": running_at - started,
        "seconds": now - first[0],
        "measured_events": seen - first[1],
        "cpu_seconds": cpu_seconds,
    }


def rates(timing: dict[str, float]) -> tuple[float, float]:
    """(events/s wall, events per CPU-second) of one `measure`."""
    return timing["measured_events"] / timing["seconds"], timing["measured_events"] / timing["cpu_seconds"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the services need Java and the Flink environment only when a benchmark actually runs.
    from adnomaly.features.sql import FlinkJob, JobOptions, compile_pipeline, compile_pipeline_source_count
    from adnomaly.services.flink import FLINK_VERSION, FeaturesJob, ensure_flink
    from adnomaly.services.kafka import KafkaBroker

    ensure_flink()
    load_before = machine_load()
    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-features-"))
    kafka = None if args.bootstrap else KafkaBroker(root / "kafka")
    jobs: list[FeaturesJob] = []

    def timed(definition: FlinkJob, state_dir: Path) -> tuple[FeaturesJob, dict[str, float]]:
        """Start a job on the same local Flink settings (heap, metrics refresh) and time it to all events."""
        job = FeaturesJob(definition, state_dir, heap=args.heap, extra_configuration=METRICS_CONFIGURATION)
        jobs.append(job)
        job.start()
        return job, measure(job, produced)

    try:
        if kafka is not None:
            kafka.start()
        bootstrap = args.bootstrap or kafka.bootstrap_servers  # type: ignore[union-attr]
        name = f"{PIPELINE}-{uuid.uuid4().hex[:6]}"
        pipeline = bench_pipeline(name, args.partitions)
        options = JobOptions(
            checkpoint_dir=(root / "flink" / "checkpoints").as_uri(), parallelism=args.parallelism
        )
        raw, features = f"{name}-raw", f"{name}-features"
        ensure_topics(bootstrap, {raw: TopicSettings(args.partitions), features: TopicSettings(1)})
        fill_started = time.monotonic()
        produced = fill(bootstrap, raw, generated_events(args.events, args.rate, args.seed))
        fill_seconds = time.monotonic() - fill_started

        job, timing = timed(compile_pipeline(pipeline, bootstrap, options), root / "flink")
        checkpoints_before = job.completed_checkpoints()
        job.wait_checkpoints(checkpoints_before + 1, timeout=120)  # the last windows committed
        written = committed_records(bootstrap, features, 1)
        job.stop()  # before the ceiling starts: the two never share the cores

        # Same options (FeaturesJob puts each job's checkpoints under its own state dir).
        _, ceiling = timed(compile_pipeline_source_count(pipeline, bootstrap, options), root / "ceiling")
    finally:
        for started in jobs:
            started.stop()
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(root, ignore_errors=True)
    events_per_second, events_per_cpu_second = rates(timing)
    ceiling_per_second, ceiling_per_cpu_second = rates(ceiling)
    return {
        "events": produced,
        **with_ceiling("events_per_second", round(events_per_second), round(ceiling_per_second)),
        "events_per_cpu_second": round(events_per_cpu_second),
        "ceiling_events_per_cpu_second": round(ceiling_per_cpu_second),
        # The same ratio per CPU-second: what the job costs on top of its source when the cores are shared.
        "cpu_ratio": round(events_per_cpu_second / ceiling_per_cpu_second, 3),
        "cpu_seconds": round(timing["cpu_seconds"], 1),
        "seconds": round(timing["seconds"], 2),
        "measured_events": int(timing["measured_events"]),
        "startup_seconds": round(timing["startup_seconds"], 1),
        "ceiling_cpu_seconds": round(ceiling["cpu_seconds"], 1),
        "ceiling_seconds": round(ceiling["seconds"], 2),
        "ceiling_measured_events": int(ceiling["measured_events"]),
        "fill_seconds": round(fill_seconds, 1),
        "feature_records": written,
        "parallelism": args.parallelism,
        "partitions": args.partitions,
        "flink_version": FLINK_VERSION,
        "anchor": "Nexmark sliding-window query: ~22k events/s per core on Flink 1.13",
        **load_before,
        "load_average_1m_after": machine_load()["load_average_1m"],
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "features", help="events/s of the Flink features job (Kafka → windows → Kafka, exactly-once)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--events", type=int, default=500_000, help="events to pre-fill and consume")
    parser.add_argument("--rate", type=float, default=500.0, help="generated events per simulated second")
    parser.add_argument("--seed", type=int, default=42, help="generator seed")
    parser.add_argument("--partitions", type=int, default=2, help="raw topic partitions")
    parser.add_argument("--parallelism", type=int, default=1, help="Flink parallelism")
    parser.add_argument("--heap", default="1g", help="JVM heap of the mini-cluster")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a private broker")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
