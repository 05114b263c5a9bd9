"""`adnomaly bench lake`: events/s and MB/s of one lake sink process writing Parquet to MinIO (or a directory).

Starts a real Kafka broker and, for `--target minio`, a real MinIO server (built from its Go module by
tools/minio/build.sh) in a temporary directory, fills the raw topic with N generated clickstream events
spread over a few hours of event time, then runs the lake sink loop in this process and measures from
the first consumed message to the last offset commit: decode + validation + Arrow conversion + Parquet
(zstd) + upload + commits, everything included. The lake is then read back with pyarrow.dataset and
must hold every event exactly once.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as ds
from prometheus_client import CollectorRegistry

from adnomaly.bench.processor import fill_topic, sample_events
from adnomaly.config import ComponentConfig
from adnomaly.kafka_client import TopicSettings, ensure_topics
from adnomaly.plan import Endpoints, plan
from adnomaly.sinks.config import LakeConfig
from adnomaly.sinks.lake.app import build_lake_sink
from adnomaly.sinks.lake.runner import LakeSink
from adnomaly.sinks.lake.storage import LakeStore, S3Credentials
from adnomaly.spec import parse_pipeline

PIPELINE = "bench"
DRAIN_TIMEOUT_S = 900.0
SPREAD_HOURS = 3


def spread_events(count: int) -> Any:
    """`sample_events` with their event times spread evenly over SPREAD_HOURS (several hour partitions)."""
    base = datetime.now(UTC) - timedelta(hours=SPREAD_HOURS + 1)
    step = SPREAD_HOURS * 3600 / max(count, 1)
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()
    for n, raw in enumerate(sample_events(count)):
        event = decoder.decode(raw)
        event["timestamp"] = (base + timedelta(seconds=n * step)).isoformat()
        yield encoder.encode(event)


def bench_config(bootstrap: str, partitions: int) -> ComponentConfig:
    pipeline = parse_pipeline({
        "kind": "Pipeline", "metadata": {"name": PIPELINE},
        "spec": {"events": {"schema": "clickstream"},
                 "kafka": {"topics": {"raw": {"partitions": partitions, "retention": "1d"}}}},
    })  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap=bootstrap)).components["processor"].config
    return config.model_copy(update={"metrics_port": None, "component": "lake-sink", "processor": None})


def drain(sink: LakeSink, expected: int) -> None:
    """Consume everything (flushing full buffers on the way), then stop: the rest is flushed on the way out."""
    if not sink.start():
        raise RuntimeError("the lake sink did not start")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    try:
        while sink.stats.messages + sink.buffered < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumed only {sink.stats.messages + sink.buffered} of {expected}")
            sink.poll_once()
        sink.request_stop()
    finally:
        sink.close()
    if sink.stats.messages != expected:
        raise RuntimeError(f"committed {sink.stats.messages} of {expected} messages")


def count_once(store: LakeStore, expected: int) -> int:
    dataset = ds.dataset(store.root, filesystem=store.filesystem, format="parquet", partitioning="hive")
    ids = dataset.to_table(columns=["event_id"]).column("event_id").to_pylist()
    duplicated = [event_id for event_id, n in Counter(ids).items() if n > 1]
    if len(ids) != expected or duplicated:
        raise RuntimeError(f"the lake holds {len(ids)} rows ({len(duplicated)} duplicated ids), expected {expected}")
    return len(ids)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly.services.kafka import KafkaBroker
    from adnomaly.services.minio import MinioServer

    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-lake-"))
    kafka = KafkaBroker(root / "kafka")
    minio = MinioServer(root / "minio") if args.target == "minio" else None
    try:
        kafka.start()
        credentials = None
        if minio is not None:
            minio.start()
            credentials = S3Credentials(minio.access_key, minio.secret_key)
            lake = LakeConfig(group_id="bench-lake", uri="s3://adnomaly-data/bench/events", s3_endpoint=minio.endpoint,
                              flush_events=args.flush_events, flush_interval_s=600.0)  # fmt: skip
        else:
            lake = LakeConfig(group_id="bench-lake", uri=f"file://{root / 'lake'}", flush_events=args.flush_events,
                              flush_interval_s=600.0)  # fmt: skip
        config = bench_config(kafka.bootstrap_servers, args.partitions)
        ensure_topics(kafka.bootstrap_servers, {config.kafka.topics.raw: TopicSettings(args.partitions)})
        fill_topic(kafka.bootstrap_servers, config.kafka.topics.raw, spread_events(args.events))
        sink = build_lake_sink(config, lake, credentials, registry=CollectorRegistry())
        drain(sink, args.events)
        stats = sink.stats
        assert stats.first_message_at is not None and stats.last_commit_at is not None
        seconds = stats.last_commit_at - stats.first_message_at
        store = LakeStore(lake.uri, endpoint=lake.s3_endpoint, credentials=credentials)
        count_once(store, args.events)
    finally:
        if minio is not None:
            minio.stop()
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "events": args.events,
        "target": args.target,
        "events_per_second": round(args.events / seconds),
        "mb_per_second": round(stats.bytes_written / seconds / 1e6, 3),
        "input_mb_per_second": round(stats.raw_bytes / seconds / 1e6, 3),
        "parquet_bytes_per_event": round(stats.bytes_written / args.events, 1),
        "duplicates": stats.duplicates,  # copies of an event id left out (dedup window); none are produced here
        "files": stats.files,
        "flushes": stats.flushes,
        "partitions": args.partitions,
        "flush_events": args.flush_events,
        "seconds": round(seconds, 3),
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "lake", help="events/s and MB/s of one lake sink process (Kafka → Parquet in MinIO)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--events", type=int, default=200_000, help="events to pre-fill and drain")
    parser.add_argument("--partitions", type=int, default=6, help="raw topic partitions")
    parser.add_argument("--flush-events", type=int, default=50_000, help="messages per flush per partition")
    parser.add_argument("--target", choices=("minio", "file"), default="minio", help="where the lake is")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
