"""`adnomaly bench processor`: events/s of one processor process draining the raw topic into PostgreSQL.

Starts a real Kafka broker and PostgreSQL server in a temporary directory, fills the raw topic with N
generated clickstream events, then runs the processor loop in this process (one process, as deployed)
and measures from the first consumed batch to the last offset commit: decode + validation + COPY into
staging + INSERT ... ON CONFLICT DO NOTHING + commit, everything included. A naive baseline (one message
per poll, one INSERT per event in autocommit mode, as straightforward code does) runs on a sample of the
same topic for comparison. The run checks that every event was stored exactly once.

The ceiling, measured in the same run on the same PostgreSQL: the same rows (decoded and formatted before
the clock starts, written to a file and read back), stored through the same number of connections in
batches of the same size by PostgreSQL's own COPY into the staging table + `INSERT ... ON CONFLICT DO
NOTHING` (`EventStore.write`), into an empty schema migrated like the processor's. No Kafka, no decoding:
`ratio` is the share of what PostgreSQL alone can take that the whole processor reaches.

The bound the CPU sets, from the same run: the processor's, its PostgreSQL backends' and the broker's CPU
seconds per event, summed, over the machine's CPUs (`cpu_bound_fields`). The ceiling spends the machine on
PostgreSQL alone, while the processor's run also pays for consuming and decoding; on 2 cores that sum, not
waiting, is what limits the processor, and `reachable_ratio` says how high `ratio` can go at these costs.
"""

from __future__ import annotations

import argparse
import queue
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from adnomaly.bench.ceiling import cpu_bound, machine_load, process_cpu_seconds, ratio, with_ceiling
from adnomaly.config import ComponentConfig
from adnomaly.events.codec import codec_for_events
from adnomaly.events.schemas import Clickstream
from adnomaly.kafka_client import TopicSettings, consumer_config, ensure_topics, producer_config
from adnomaly.plan import Endpoints, plan
from adnomaly.processor.app import WRITER_CONNECTIONS, build_processor
from adnomaly.processor.batch import copy_row
from adnomaly.processor.store import EventStore, connect, count_stored
from adnomaly.spec import parse_pipeline

PIPELINE = "bench"
DRAIN_TIMEOUT_S = 600.0

_GEOS = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA")
_PLATFORMS = ("web", "ios", "android")
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
)


def sample_events(count: int, *, prefix: str = "bench", start: int = 0, seed: int = 7) -> Iterator[bytes]:
    """`count` valid clickstream events (JSON bytes) with ids `<prefix>-<n>`, n from `start`; reproducible."""
    rng = random.Random(seed * 1_000_003 + start)
    encode = msgspec.json.Encoder().encode
    base = datetime.now(UTC) - timedelta(hours=1)
    for n in range(start, start + count):
        yield encode(
            Clickstream(
                event_id=f"{prefix}-{n}",
                timestamp=base + timedelta(milliseconds=n),
                user_id_hash=f"u{rng.randrange(100_000):05d}",
                ad_id=f"ad-{rng.randrange(500)}",
                campaign_id=f"c-{rng.randrange(40)}",
                geo=rng.choice(_GEOS),
                platform=rng.choice(_PLATFORMS),  # type: ignore[arg-type]
                user_agent=rng.choice(_AGENTS),
                CPC=round(rng.uniform(0.05, 3.0), 4),
                CTR=round(rng.random() * 0.2, 5),
                conversion=int(rng.random() < 0.03),
                bounce_rate=round(rng.random(), 4),
            )
        )


def fill_topic(bootstrap: str, topic: str, values: Iterator[bytes]) -> int:
    """Produce every value (keys spread over partitions); returns the count once all are acknowledged."""
    failures: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(producer_config(bootstrap, linger_ms=20))
    count = 0
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=str(count % 997).encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"filling {topic}: {len(failures)} failed deliveries ({failures[:1]})")
    return count


def bench_config(bootstrap: str, *, partitions: int, batch_size: int) -> ComponentConfig:
    pipeline = parse_pipeline({
        "kind": "Pipeline",
        "metadata": {"name": PIPELINE},
        "spec": {
            "events": {"schema": "clickstream"},
            "lake": {"enabled": False},  # the processor needs no lake (and the bench runs no MinIO)
            "kafka": {"topics": {"raw": {"partitions": partitions, "retention": "1d"}}},
            "components": {"processor": {"batchSize": batch_size}},
        },
    })  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap=bootstrap)).components["processor"].config
    return config.model_copy(update={"metrics_port": None})


def _backend_cpu_seconds(pids: list[int]) -> float | None:
    """CPU time (user + system) used so far by these local PostgreSQL backends; None where /proc is missing."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            return None
    return total


def _processor_backends(dsn: str) -> list[int]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'adnomaly-processor' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def measure_processor(config: ComponentConfig, dsn: str, expected: int, broker_pid: int | None = None
                      ) -> dict[str, float]:  # fmt: skip
    """Drain `expected` messages with one processor; seconds from the first batch to the last commit.

    Also the CPU time per event of this process (all its threads), of its PostgreSQL backends and of the
    Kafka broker serving the fetches (`broker_pid`): unlike wall-clock rates they hardly depend on what else
    the machine is doing, and their sum says how fast the machine could go at all (`ceiling.cpu_bound`).
    """
    processor = build_processor(config, dsn, registry=CollectorRegistry())
    if not processor.start():
        raise RuntimeError("the processor did not start")
    backends = _processor_backends(dsn)
    cpu_start, backend_start = time.process_time(), _backend_cpu_seconds(backends)
    broker_start = process_cpu_seconds(broker_pid) if broker_pid else None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    try:
        while processor.stats.messages < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"drained only {processor.stats.messages} of {expected} in {DRAIN_TIMEOUT_S}s")
            processor.poll_once()
        cpu, backend_end = time.process_time() - cpu_start, _backend_cpu_seconds(backends)
        broker_end = process_cpu_seconds(broker_pid) if broker_pid else None
    finally:
        processor.close()
    stats = processor.stats
    assert stats.first_batch_at is not None and stats.last_commit_at is not None
    result = {
        "seconds": stats.last_commit_at - stats.first_batch_at,
        "batches": stats.batches,
        "processor_cpu_us_per_event": cpu / expected * 1e6,
    }
    if backend_start is not None and backend_end is not None:
        result["postgres_cpu_us_per_event"] = (backend_end - backend_start) / expected * 1e6
    if broker_start is not None and broker_end is not None:
        result["broker_cpu_us_per_event"] = (broker_end - broker_start) / expected * 1e6
    return result


def prepare_rows(values: Iterator[bytes], config: ComponentConfig, path: Path, partitions: int) -> int:
    """Decode and format every event as the processor would (COPY rows), into the file `path`; the count."""
    decode = codec_for_events(config.events).decode
    count = 0
    with path.open("wb") as out:
        for offset, raw in enumerate(values):
            event = decode(raw)
            out.write(copy_row(event.event_id, event.payload, offset % partitions, offset))
            count += 1
    return count


def read_batches(path: Path, batch_size: int) -> list[list[bytes]]:
    """The prepared rows of `path`, in batches of `batch_size` (a row is one line: newlines are escaped)."""
    rows = path.read_bytes().splitlines(keepends=True)
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def measure_ceiling(dsn: str, db_schema: str, time_field: str, batches: Sequence[list[bytes]]) -> dict[str, float]:
    """Seconds for PostgreSQL alone to store the prepared batches (COPY to staging + ON CONFLICT DO NOTHING),
    through as many connections as the processor writes with, and its backends' CPU time per event."""
    stores = [EventStore(dsn, db_schema, time_field) for _ in range(WRITER_CONNECTIONS)]
    stores[0].migrate()
    for store in stores:
        store.connect()
    idle: queue.SimpleQueue[EventStore] = queue.SimpleQueue()
    for store in stores:
        idle.put(store)

    def write(rows: list[bytes]) -> int:
        store = idle.get()
        try:
            return store.write(rows)
        finally:
            idle.put(store)

    events = sum(len(rows) for rows in batches)
    backends = _processor_backends(dsn)
    backend_start = _backend_cpu_seconds(backends)
    try:
        with ThreadPoolExecutor(max_workers=len(stores)) as pool:
            started = time.perf_counter()
            stored = sum(pool.map(write, batches))
            seconds = time.perf_counter() - started
        backend_end = _backend_cpu_seconds(backends)
    finally:
        for store in stores:
            store.close()
    if stored != events:
        raise RuntimeError(f"the ceiling run stored {stored} of {events} rows")
    result = {"seconds": seconds}
    if backend_start is not None and backend_end is not None:
        result["postgres_cpu_us_per_event"] = (backend_end - backend_start) / events * 1e6
    return result


def measure_naive(config: ComponentConfig, dsn: str, sample: int) -> float:
    """Events/s of the straightforward loop: poll one message, decode it, INSERT it (autocommit)."""
    db_schema = "naive_baseline"
    store = EventStore(dsn, db_schema, config.events.time_field)
    store.migrate()
    decode = codec_for_events(config.events).decode
    consumer = Consumer(consumer_config(config.kafka.bootstrap_servers, "bench-naive", enable_auto_commit=True))
    consumer.subscribe([config.kafka.topics.raw])
    insert = (
        f'INSERT INTO "{db_schema}".events (event_id, event_time, payload, kafka_partition, kafka_offset)'
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
    )
    done = 0
    started: float | None = None
    try:
        with connect(dsn) as conn:
            while done < sample:
                msg = consumer.poll(1.0)
                if msg is None or msg.error() is not None:
                    continue
                if started is None:
                    started = time.perf_counter()
                event = decode(msg.value() or b"")
                conn.execute(
                    insert, (event.event_id, event.event_time, event.payload.decode(), msg.partition(), msg.offset())
                )
                done += 1
    finally:
        consumer.close()
    assert started is not None
    return done / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the services need Java/PostgreSQL only when a benchmark actually runs.
    from adnomaly.services.kafka import KafkaBroker
    from adnomaly.services.postgres import PostgresServer

    load_before = machine_load()  # how busy the machine was before we started (other work skews rates)
    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-processor-"))
    root.chmod(0o711)  # PostgreSQL runs as `postgres` when we are root and must reach its state dir
    kafka = KafkaBroker(root / "kafka")
    postgres = PostgresServer(root / "postgres")
    try:
        kafka.start()
        postgres.start()
        config = bench_config(kafka.bootstrap_servers, partitions=args.partitions, batch_size=args.batch_size)
        ensure_topics(kafka.bootstrap_servers, {
            config.kafka.topics.raw: TopicSettings(args.partitions),
            config.kafka.topics.dlq: TopicSettings(1),
        })  # fmt: skip
        fill_topic(kafka.bootstrap_servers, config.kafka.topics.raw, sample_events(args.events))
        rows_file = root / "ceiling-rows.copy"
        prepare_rows(sample_events(args.events), config, rows_file, args.partitions)
        assert config.processor is not None
        fast = measure_processor(config, postgres.dsn, args.events, kafka.pid)
        stored = count_stored(postgres.dsn, config.processor.db_schema)
        if stored != args.events:
            raise RuntimeError(f"stored {stored} events, expected {args.events}")
        ceiling = measure_ceiling(postgres.dsn, "bench_ceiling", config.events.time_field,
                                  read_batches(rows_file, args.batch_size))  # fmt: skip
        naive_sample = min(args.naive_sample, args.events)
        naive = measure_naive(config, postgres.dsn, naive_sample) if naive_sample > 0 else None
    finally:
        for service in (kafka, postgres):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)
    events_per_second = args.events / fast["seconds"]
    cpu = {key: round(fast[key], 1) for key in CPU_FIGURES if key in fast}
    ceiling_cpu = ceiling.get("postgres_cpu_us_per_event")
    ceiling_rate = round(args.events / ceiling["seconds"])
    return {
        "events": args.events,
        **with_ceiling("events_per_second", round(events_per_second), ceiling_rate),
        **cpu_bound_fields(events_per_second, ceiling_rate, load_before["nproc"], cpu),
        "naive_events_per_second": round(naive) if naive is not None else None,
        "speedup": round(events_per_second / naive, 1) if naive is not None else None,
        "batch_size": args.batch_size,
        "partitions": args.partitions,
        "seconds": round(fast["seconds"], 3),
        "batches": fast["batches"],
        "naive_sample": naive_sample,
        **cpu,
        "ceiling_postgres_cpu_us_per_event": round(ceiling_cpu, 1) if ceiling_cpu is not None else None,
        **load_before,
        "load_average_1m_after": machine_load()["load_average_1m"],
    }


CPU_FIGURES = ("processor_cpu_us_per_event", "postgres_cpu_us_per_event", "broker_cpu_us_per_event")


def cpu_bound_fields(events_per_second: float, ceiling: float, nproc: int, cpu: dict[str, float]) -> dict[str, Any]:
    """What this run's CPU per event allows on `nproc` CPUs, next to the rate reached and the ceiling.

    `cpu_bound_events_per_second`: the rate at which the processor, its PostgreSQL backends and the broker
    would keep every CPU busy (`ceiling.cpu_bound`); `cpu_bound_ratio`: the rate reached over it (near 1: the
    run was limited by CPU, not by waiting); `reachable_ratio`: the bound over the PostgreSQL-alone ceiling,
    i.e. the highest `ratio` this machine allows at these CPU costs. Empty unless all three were measured."""
    if any(key not in cpu for key in CPU_FIGURES):
        return {}
    bound = cpu_bound(nproc, [cpu[key] for key in CPU_FIGURES])
    if bound is None:
        return {}
    return {
        "cpu_bound_events_per_second": round(bound),
        "cpu_bound_ratio": ratio(events_per_second, bound),
        "reachable_ratio": ratio(min(bound, ceiling), ceiling),
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "processor", help="events/s of one processor process (Kafka → PostgreSQL, idempotent)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--events", type=int, default=200_000, help="events to pre-fill and drain")
    parser.add_argument("--batch-size", type=int, default=5000, help="processor batch size")
    parser.add_argument("--partitions", type=int, default=6, help="raw topic partitions")
    parser.add_argument("--naive-sample", type=int, default=5000, help="events for the naive baseline (0: skip it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
