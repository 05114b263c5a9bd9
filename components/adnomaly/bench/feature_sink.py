"""`adnomaly bench feature-sink`: records/s of the feature sink's online path, with and without Feast's layout.

Starts a real Redis in a temporary directory and runs the sink's own per-batch work on `--records` feature
windows (the architecture's example view: 600 entities, 200 geos by 3 platforms, one window end per 600 records):
decode and check (`prepare`), then the last-write-wins Lua script per record, pipelined (`OnlineStore.write`),
in batches of `--batch`. Both variants run `--rounds` times, alternating, on fresh Redis databases, so a busy
machine weighs on both alike; the best round of each is reported, with the client's CPU per record.
`feast` is what the pipeline runs (the sink writes its own hash and Feast's in one script); `own_only` is the
sink without Feast's layout (the layout before it existed).
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
from adnomaly.sinks.features.batch import feast_targets, prepare
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


def one_round(client: Any, batch: list[HeldRecord], size: int, feast_project: str | None) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) to prepare and write every message."""
    views = {VIEW.name: VIEW}
    feast = feast_targets(views, feast_project)
    store = OnlineStore(client)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(batch), size):
        store.write(prepare(batch[start:start + size], views, "adnomaly:bench", feast).online)
    return time.perf_counter() - wall, time.process_time() - cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly.services.redis import RedisServer

    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-feature-sink-"))
    redis = RedisServer(root / "redis")
    best: dict[str, tuple[float, float]] = {}
    batch = messages(args.records)
    try:
        redis.start()
        with redis.client() as client:
            for _ in range(args.rounds):
                for variant, project in (("own_only", None), ("feast", "bench")):
                    client.flushdb()
                    wall, cpu = one_round(client, batch, args.batch, project)
                    if variant not in best or wall < best[variant][0]:
                        best[variant] = (wall, cpu)
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {"records": args.records}
    for variant, (wall, cpu) in best.items():
        result[f"{variant}_records_per_second"] = round(args.records / wall)
        result[f"{variant}_client_cpu_us_per_record"] = round(cpu / args.records * 1e6, 1)
    result["feast_vs_own_only"] = round(best["own_only"][0] / best["feast"][0], 3)
    return result


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "feature-sink", help="records/s of the feature sink's Redis path, with and without Feast's layout",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--records", type=int, default=60_000, help="feature windows per round")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch (the sink's default)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant, alternating")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
