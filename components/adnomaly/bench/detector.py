"""`adnomaly bench detector`: feature records/s one detector process judges, next to decoding them alone.

The detector's per-record work, without Kafka and PostgreSQL (their cost is per batch, not per record):
decode each feature record with the detector's own decoder, sort the batch by window end as the detector
does, and pass each record through a `DetectionEngine` with the default method (`auto`) on one metric, so
every record is judged by the detector the examples use. The records are prepared (encoded) before the
clock starts: `--keys` entities (geo and platform), one window each per minute, a reproducible noisy CTR.

The ceiling, measured in the same run on the same records: decoding them alone (the same decoder, the
same batches, each batch decoded alone just before it is judged). `ratio` is the judging path's rate over
it.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from adnomaly import detection
from adnomaly.bench.ceiling import machine_load, with_ceiling
from adnomaly.detection.engine import DetectionEngine
from adnomaly.features.record import DECODER, ENCODER, FeatureRecord
from adnomaly.spec import DetectionSpec

FEATURE = "traffic_1m_by_geo_platform"
PLATFORMS = ("web", "ios", "android")


def feature_records(count: int, keys: int, seed: int = 7) -> list[bytes]:
    """`count` encoded feature records: `keys` entities, one window per minute each, in window order."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    dims = [{"geo": f"G{n // len(PLATFORMS):03d}", "platform": PLATFORMS[n % len(PLATFORMS)]} for n in range(keys)]
    out: list[bytes] = []
    for n in range(count):
        window_end = start + timedelta(minutes=1 + n // keys)
        record = FeatureRecord(
            feature=FEATURE, dimensions=dims[n % keys], window_start=window_end - timedelta(minutes=1),
            window_end=window_end, event_count=100 + rng.randrange(50),
            metrics={"ctr_avg": max(0.0, rng.gauss(0.02, 0.004)), "bounce_rate_avg": rng.random()},
        )  # fmt: skip
        out.append(ENCODER.encode(record))
    return out


def engine() -> DetectionEngine:
    detection = DetectionSpec.model_validate(
        {"detectors": [{"name": "ctr", "feature": FEATURE, "metric": "ctr_avg", "auto": {}}]}
    )
    return DetectionEngine(pipeline="bench", detection=detection)


def decode_batch(batch: Sequence[bytes]) -> float:
    """Seconds to decode one batch (the ceiling's share of it)."""
    decode = DECODER.decode
    started = time.perf_counter()
    for raw in batch:
        decode(raw)
    return time.perf_counter() - started


def judge_batch(batch: Sequence[bytes], judge: DetectionEngine) -> tuple[float, int]:
    """Seconds to decode, order and judge one batch as the detector does; and the anomalies raised."""
    decode = DECODER.decode
    started = time.perf_counter()
    records = [decode(raw) for raw in batch]
    records.sort(key=lambda record: record.window_end)
    raised = 0
    for record in records:
        raised += len(judge.process(record, {}))
    return time.perf_counter() - started, raised


def measure(batches: Sequence[Sequence[bytes]], judge: DetectionEngine) -> tuple[float, float, int]:
    """Seconds of the ceiling (decoding alone) and of judging, batch by batch in turn, and the anomalies.

    Interleaved rather than one after the other: on a shared machine a neighbour's burst then slows both
    sides alike, so their ratio holds still while the absolute rates move."""
    ceiling_s = seconds = 0.0
    raised = 0
    for batch in batches:
        ceiling_s += decode_batch(batch)
        spent, anomalies = judge_batch(batch, judge)
        seconds += spent
        raised += anomalies
    return ceiling_s, seconds, raised


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = machine_load()
    records = feature_records(args.records, args.keys)
    batches = [records[i : i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    for batch in batches[:2]:  # warm up
        decode_batch(batch)
    ceiling_s, seconds, raised = measure(batches, engine())
    return {
        "records": args.records,
        "keys": args.keys,
        "batch_size": args.batch_size,
        **with_ceiling("records_per_second", round(args.records / seconds), round(args.records / ceiling_s)),
        "us_per_record": round(seconds / args.records * 1e6, 2),
        "anomalies": raised,
        # `sources`: mypyc's extensions were not built (`make compiled`); 54.6k vs 178k records/s (2026-12-08).
        "detector_code": detection.RUNNING,
        **load,
        "load_average_1m_after": machine_load()["load_average_1m"],
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "detector", help="feature records/s judged by one detector process vs decoding them alone",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--records", type=int, default=200_000, help="feature records to judge")
    parser.add_argument("--keys", type=int, default=300, help="entities (geo and platform)")
    parser.add_argument("--batch-size", type=int, default=500, help="records per consumed batch")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
