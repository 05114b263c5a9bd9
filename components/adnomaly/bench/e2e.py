"""`adnomaly bench e2e`: latency from produce to row committed in PostgreSQL, at a fixed rate.

Each event's own timestamp is its produce time; PostgreSQL records each row's commit time
(`track_commit_timestamp`), so the latency of every event is read exactly, in the database, with no
sampling and no clock other than this machine's. The clock starts once one primer event has gone all the
way (`prime`); then events go at the full rate for `--warmup` seconds before the `--seconds` that are
measured, as load-testing harnesses warm up (the OpenMessaging Benchmark for Kafka: a minute). The freshly
started broker's JVM compiles its hot paths once traffic flows: at 10,000/s its C2 compiler thread used
~23 CPU-seconds over the first ~45 s (70 % of a core at its peak, on two cores shared with PostgreSQL, the
processor and this producer) and almost nothing after; Kafka's own produce → consume p99, measured alone
in 5 s buckets, was 133-228 ms in the first five seconds and 27-41 ms from the fifteenth. So the default
warm-up is 40 s: shorter runs measure the broker's JIT, not the path.

The ceiling, measured in the same run on the same PostgreSQL: an event produced just after the processor
started waiting for a batch waits out the batch timeout, and its row is visible once one transaction
commits; so `ceiling_p99_ms` is the processor's `batchTimeout` plus the p99 of `--commits` one-row INSERT
commits (fsync included) timed from this process, and `ratio` is that ceiling over the measured p99.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from confluent_kafka import Producer

from adnomaly.bench.ceiling import machine_load, percentile, with_ceiling
from adnomaly.config import SecretEnv
from adnomaly.events.schemas import Clickstream
from adnomaly.kafka_client import TopicSettings, ensure_topics, producer_config
from adnomaly.plan import Endpoints, plan
from adnomaly.processor.store import count_stored
from adnomaly.services.base import ManagedProcess, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline

TICK_S = 0.01


def _event(i: int, now: float) -> bytes:
    return msgspec.json.encode(
        Clickstream(
            event_id=f"e2e-{i}", timestamp=datetime.fromtimestamp(now, UTC), user_id_hash=f"u{i % 5000:05d}",
            ad_id=f"ad-{i % 300}", campaign_id=f"c-{i % 30}", geo="US", platform="web",
            user_agent="Mozilla/5.0 (bench)", CPC=0.5, CTR=0.02, conversion=0, bounce_rate=0.4,
        )
    )


def prime(producer: Producer, topic: str, dsn: str, db_schema: str, timeout: float = 60.0) -> None:
    """One event through the whole path before the clock starts: the producer has its idempotence id (the
    broker's coordinator loads on first use) and the processor's consumer has its partitions and has stored
    a row, so the timed events measure the path, not the start-up of either end."""
    producer.produce(topic, _event(-1, time.time()), key=b"primer")
    if producer.flush(timeout) != 0:
        raise RuntimeError("the primer event was not delivered")
    wait_until(lambda: count_stored(dsn, db_schema) >= 1, timeout, "the primer event to be stored")


def produce_at_rate(producer: Producer, topic: str, rate: float, seconds: float) -> int:
    """Produce `rate` events/s for `seconds`, each stamped with its own produce time."""
    total = int(rate * seconds)
    sent = 0
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            try:
                producer.produce(topic, _event(sent, time.time()), key=str(sent % 64).encode())
                sent += 1
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        time.sleep(TICK_S)
    if producer.flush(30) != 0:
        raise RuntimeError("producer could not deliver every event")
    return sent


def latency_percentiles(dsn: str, db_schema: str, since_epoch: float) -> dict[str, float]:
    query = f"""
        SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lat),
               max(lat), count(*)
        FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - event_time) * 1000 AS lat
              FROM "{db_schema}".events WHERE event_time >= to_timestamp(%s)) AS t
    """
    with psycopg.connect(dsn) as conn:
        (p50, p99), worst, count = conn.execute(query, (since_epoch,)).fetchone()  # type: ignore[misc]
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1), "max_ms": round(float(worst), 1),
            "measured": int(count)}


def commit_seconds(dsn: str, commits: int) -> list[float]:
    """Seconds for each of `commits` autocommitted one-row INSERTs (a round trip and a WAL flush each)."""
    timings: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_ceiling (n integer)")
        for n in range(commits):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit_ceiling VALUES (%s)", (n,))
            timings.append(time.perf_counter() - started)
    return timings


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = machine_load()
    with tempfile.TemporaryDirectory(prefix="adnomaly-bench-e2e-", dir=args.work_dir) as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        with KafkaBroker(root / "kafka") as kafka, PostgresServer(root / "postgres") as postgres:
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
            postgres.restart()
            pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "bench"}, "spec": {}})
            the_plan = plan(pipeline, Endpoints(kafka_bootstrap=kafka.bootstrap_servers))
            ensure_topics(kafka.bootstrap_servers, {
                t.name: TopicSettings(partitions=t.partitions, replication_factor=1) for t in the_plan.topics.values()
            })
            component = the_plan.components["processor"]
            assert component.config.processor is not None
            config_path = root / "processor.json"
            config_path.write_text(component.config.model_copy(update={"metrics_port": None}).to_json())
            processor = ManagedProcess(
                "processor", [sys.executable, "-m", "adnomaly.processor", "--config", str(config_path)],
                root / "processor.log", env={**os.environ, SecretEnv.POSTGRES_DSN: postgres.dsn},
            )
            processor.start()
            db_schema = component.config.processor.db_schema
            try:
                processor.wait_ready(lambda: _table_exists(postgres.dsn, db_schema), timeout=60)
                producer = Producer(producer_config(kafka.bootstrap_servers))
                raw = the_plan.topics["raw"].name
                prime(producer, raw, postgres.dsn, db_schema)
                started = time.time()
                sent = produce_at_rate(producer, raw, args.rate, args.warmup + args.seconds)
                wait_until(lambda: count_stored(postgres.dsn, db_schema) >= sent + 1, 120, "every event to be stored")
                figures = latency_percentiles(postgres.dsn, db_schema, started + args.warmup)
            finally:
                processor.stop()
            commit_p99_ms = percentile(commit_seconds(postgres.dsn, args.commits), 0.99) * 1000
    ceiling_ms = round(component.config.processor.batch_timeout_s * 1000 + commit_p99_ms, 1)
    p99_ms = figures.pop("p99_ms")
    return {"rate": args.rate, "seconds": args.seconds, "warmup_seconds": args.warmup, "events": sent,
            "achieved_rate": round(sent / (args.warmup + args.seconds), 1), **figures,
            **with_ceiling("p99_ms", p99_ms, ceiling_ms, higher_is_better=False),
            "batch_timeout_ms": round(component.config.processor.batch_timeout_s * 1000, 1),
            "commit_p99_ms": round(commit_p99_ms, 2), **load,
            "load_average_1m_after": machine_load()["load_average_1m"]}  # fmt: skip


def _table_exists(dsn: str, db_schema: str) -> bool:
    try:
        count_stored(dsn, db_schema)
    except psycopg.Error:
        return False
    return True


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("e2e", help="produce → row committed latency at a fixed rate")
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second (default 5000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to measure (default 30)")
    parser.add_argument("--warmup", type=float, default=40.0,
                        help="seconds at the rate before the measured ones (default 40: the broker's JIT)")
    parser.add_argument("--commits", type=int, default=500, help="timed commits for the ceiling (default 500)")
    parser.add_argument("--work-dir", default=None, help="where the temporary services live (default: system tmp)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
