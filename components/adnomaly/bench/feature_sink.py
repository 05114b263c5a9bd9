"""`adnomaly bench feature-sink`: records/s of the feature sink's online path (Feast's layout in Redis).

Starts a real Redis in a temporary directory and runs the sink's own per-batch work on `--records` feature
windows (the architecture's example view: 600 entities, 200 geos by 3 platforms, one window end per 600 records):
decode and check (`prepare`), then the last-write-wins Lua script per record, pipelined (`OnlineStore.write`),
in batches of `--batch`, `--rounds` times on fresh Redis databases; the best round is reported, with the
client's CPU per record. To compare two trees (e.g. before and after a layout change), alternate
`bench/feature_sink_ab.py` with either tree's `components/` on PYTHONPATH (bench/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adnomaly.bench.online import VIEW
from adnomaly.features.record import ENCODER, FeatureRecord
from adnomaly.kafka_record import HeldRecord
from adnomaly.sinks.features.batch import prepare
from adnomaly.sinks.features.online import feast_targets
from adnomaly.sinks.features.stores import OnlineStore


def messages(count: int) -> list[HeldRecord]:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    out = []
    for n in range(count):
        end = start + timedelta(minutes=n // 600)
        dims = {"geo": f"G{n % 200}", "platform": ("web", "ios", "android")[n % 3]}
        record = FeatureRecord(feature=VIEW.name, dimensions=dims, window_start=end - timedelta(minutes=5),
                               window_end=end, metrics={"ctr_avg": 0.03, "bounce_rate_avg": 0.4, "event_count": 100.0},
                               event_count=100)  # fmt: skip
        out.append(HeldRecord(ENCODER.encode(record), 0, n, "features"))
    return out


def one_round(client: Any, batch: list[HeldRecord], size: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) to prepare and write every message."""
    views = {VIEW.name: VIEW}
    targets = feast_targets(views, "bench")
    store = OnlineStore(client)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(batch), size):
        store.write(prepare(batch[start:start + size], views, targets).online)
    return time.perf_counter() - wall, time.process_time() - cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly.services.redis import RedisServer

    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-feature-sink-"))
    redis = RedisServer(root / "redis")
    rounds: list[tuple[float, float]] = []
    batch = messages(args.records)
    try:
        redis.start()
        with redis.client() as client:
            for _ in range(args.rounds):
                client.flushdb()
                rounds.append(one_round(client, batch, args.batch))
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    wall, cpu = min(rounds)
    return {
        "records": args.records,
        "records_per_second": round(args.records / wall),
        "client_cpu_us_per_record": round(cpu / args.records * 1e6, 1),
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "feature-sink", help="records/s of the feature sink's Redis path (Feast's layout)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--records", type=int, default=60_000, help="feature windows per round")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch (the sink's default)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the best is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
