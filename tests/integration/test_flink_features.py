"""The features job on a real local Flink (PyFlink mini-cluster) against the real Kafka broker.

Expected windows are computed here in plain Python from the same events, with Flink's event-time rules:
the watermark of a source is (newest event time seen) - allowedLateness; a window [start, end) fires once
the watermark reaches end - 1 ms; an event counts in each of its windows that has not fired when it
arrives, and is dropped from the others. Events arrive in the order produced (one raw partition).

Flink emits watermarks periodically, so at any moment its watermark may lag behind the one computed
here. The event set is built so that this cannot change the outcome: an event is expected to be dropped
from a window only after the test has seen that window's (or a later window's) output of the same
feature, which proves the watermark has passed it.

Each test is one or two job runs (a JVM start takes 20-60 s on this machine): they group many assertions.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from adnomaly.features.record import DECODER, FeatureRecord, record_key
from adnomaly.features.sql import JobOptions, compile_pipeline
from adnomaly.services.flink import FeaturesJob, ensure_flink
from adnomaly.services.kafka import KafkaBroker
from adnomaly.spec import FeatureSpec, Pipeline, parse_pipeline
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # event time origin (in the past: not rejected as future)


@pytest.fixture(scope="module", autouse=True)
def flink_installed() -> None:
    ensure_flink()


# -- events --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One raw record: `at` (seconds after T0) is None for records Flink must not count at all."""

    raw: bytes
    at: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def click(
    at: float,
    geo: str = "US",
    platform: str = "web",
    cpc: float = 1.0,
    ctr: float = 0.1,
    conversion: int = 0,
    *,
    time_text: str | None = None,
    **overrides: Any,
) -> Event:
    when = T0 + timedelta(seconds=at)
    body = {
        "timestamp": time_text or when.isoformat().replace("+00:00", "Z"),
        "user_id_hash": "u1",
        "ad_id": "ad-1",
        "campaign_id": "c-1",
        "geo": geo,
        "platform": platform,
        "user_agent": "test",
        "CPC": cpc,
        "CTR": ctr,
        "conversion": conversion,
        "bounce_rate": 0.5,
    }
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    return Event(json.dumps(body).encode(), at, body)


def invalid(raw: bytes | dict[str, Any]) -> Event:
    return Event(raw if isinstance(raw, bytes) else json.dumps(raw).encode())


def produce(bootstrap: str, topic: str, events: Iterable[Event]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for event in events:
        producer.produce(topic, event.raw)
    assert producer.flush(30) == 0


# -- expected windows, in plain Python -----------------------------------------------------------------------


def windows_of(at_ms: int, size_ms: int, slide_ms: int) -> list[tuple[int, int]]:
    last_start = at_ms - at_ms % slide_ms
    starts = range(last_start, at_ms - size_ms, -slide_ms)
    return sorted((s, s + size_ms) for s in starts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def aggregate(agg: str, rows: list[dict[str, Any]], metric: Any) -> float | None:
    if agg == "count":
        return float(len(rows))
    if agg == "ratio":
        den = sum(float(r[metric.denominator]) for r in rows)
        return None if den == 0 else sum(float(r[metric.numerator]) for r in rows) / den
    values = [float(r[metric.field]) for r in rows]
    if agg in ("p50", "p90", "p95", "p99"):
        return percentile(values, int(agg[1:]) / 100)
    return {"sum": sum, "avg": lambda v: sum(v) / len(v), "min": min, "max": max}[agg](values)


def ms(duration: str) -> int:
    from adnomaly.durations import duration_ms

    return duration_ms(duration)


def expected_records(feature: FeatureSpec, events: list[Event]) -> dict[str, FeatureRecord]:
    """The records of every window that has fired after all `events`, keyed by record_key."""
    size = ms(feature.window.size)
    slide = ms(feature.window.slide) if feature.window.slide else size
    lateness = ms(feature.allowed_lateness)
    watermark = -(10**15)
    rows: dict[tuple[int, int, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.at is None:
            continue
        at = round(event.at * 1000)
        dims = tuple(str(event.fields[d]) for d in feature.dimensions)
        for start, end in windows_of(at, size, slide):
            if end - 1 > watermark:  # not fired yet: the event counts here
                rows[(start, end, dims)].append(event.fields)
        watermark = max(watermark, at - lateness)
    records = {}
    for (start, end, dims), window_rows in rows.items():
        if end - 1 > watermark:
            continue  # never fired
        record = FeatureRecord(
            feature=feature.name,
            dimensions=dict(zip(feature.dimensions, dims, strict=True)),
            window_start=T0 + timedelta(milliseconds=start),
            window_end=T0 + timedelta(milliseconds=end),
            metrics={m.name: aggregate(m.agg, window_rows, m) for m in feature.metrics},
            event_count=len(window_rows),
        )
        records[record_key(record, feature.dimensions).decode()] = record
    return records


# -- reading the features topic ------------------------------------------------------------------------------


def read_features(
    bootstrap: str,
    topic: str,
    *,
    isolation: str = "read_committed",
    until: Callable[[list[tuple[str, FeatureRecord]]], bool] | None = None,
    timeout: float = 120.0,
    quiet: float = 3.0,
) -> list[tuple[str, FeatureRecord]]:
    """All (key, record) in `topic` from the start, read until `until(records)` holds and nothing new came
    for `quiet` seconds (or, without `until`, just until quiet). Raises on timeout."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "isolation.level": isolation, "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, 0)])
    records: list[tuple[str, FeatureRecord]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while True:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    continue
                records.append((msg.key().decode(), DECODER.decode(msg.value())))
                last_new = time.monotonic()
            done = until is None or until(records)
            if done and time.monotonic() - last_new >= quiet:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records so far: {records}")
    finally:
        consumer.close()


def has_keys(*keys: str) -> Callable[[list[tuple[str, FeatureRecord]]], bool]:
    return lambda records: set(keys) <= {k for k, _ in records}


def assert_records_equal(got: dict[str, FeatureRecord], want: dict[str, FeatureRecord]) -> None:
    assert sorted(got) == sorted(want)
    for key, expected in want.items():
        actual = got[key]
        assert actual.event_count == expected.event_count, key
        assert (actual.feature, actual.dimensions) == (expected.feature, expected.dimensions), key
        assert (actual.window_start, actual.window_end) == (expected.window_start, expected.window_end), key
        assert actual.metrics == pytest.approx(expected.metrics, rel=1e-9, abs=1e-12), key


# -- harness -------------------------------------------------------------------------------------------------


def make_pipeline(name: str, features: list[dict[str, Any]]) -> Pipeline:
    return parse_pipeline({
        "metadata": {"name": name},
        "spec": {"events": {"schema": "clickstream"}, "features": features,
                 "kafka": {"topics": {"raw": {"partitions": 1, "retention": "1d"},
                                      "features": {"partitions": 1, "retention": "1d"}}}},
    })  # fmt: skip


def features_job(
    pipeline: Pipeline, kafka: KafkaBroker, state_dir: Path, checkpoint_interval: str
) -> FeaturesJob:
    options = JobOptions(
        checkpoint_dir=(state_dir / "checkpoints").as_uri(), checkpoint_interval=checkpoint_interval
    )
    job = compile_pipeline(pipeline, kafka.bootstrap_servers, options)
    return FeaturesJob(
        job, state_dir, heap="512m", extra_configuration={"metrics.fetcher.update-interval": "500 ms"}
    )


def key(feature: str, dims: dict[str, str], end_s: float) -> str:
    end = (T0 + timedelta(seconds=end_s)).isoformat()
    return f"{feature}|" + "|".join(f"{k}={v}" for k, v in dims.items()) + f"|{end}"


# -- tests ---------------------------------------------------------------------------------------------------

TUMBLING = {
    "name": "t1",
    "dimensions": ["geo", "platform"],
    "window": {"type": "tumbling", "size": "1m"},
    "allowedLateness": "10s",
    "metrics": [
        {"name": "n", "agg": "count"},
        {"name": "cpc_sum", "agg": "sum", "field": "CPC"},
        {"name": "ctr_avg", "agg": "avg", "field": "CTR"},
        {"name": "cpc_min", "agg": "min", "field": "CPC"},
        {"name": "cpc_max", "agg": "max", "field": "CPC"},
        {"name": "conv_per_cpc", "agg": "ratio", "numerator": "conversion", "denominator": "CPC"},
        {"name": "cpc_p50", "agg": "p50", "field": "CPC"},
        {"name": "cpc_p90", "agg": "p90", "field": "CPC"},
    ],
}
HOPPING = {
    "name": "h2",
    "dimensions": ["geo"],
    "window": {"type": "hopping", "size": "2m", "slide": "1m"},
    "allowedLateness": "20s",
    "metrics": [
        {"name": "n", "agg": "count"},
        {"name": "cpc_p99", "agg": "p99", "field": "CPC"},
        {"name": "cpc_p95", "agg": "p95", "field": "CPC"},
        {"name": "ctr_max", "agg": "max", "field": "CTR"},
    ],
}


def test_windows_exact_with_out_of_order_late_and_invalid_events(
    kafka: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    name = f"fx-{uuid.uuid4().hex[:8]}"
    pipeline = make_pipeline(name, [TUMBLING, HOPPING])
    raw, features = topic_factory(name=f"{name}-raw"), topic_factory(name=f"{name}-features")
    t1, h2 = pipeline.spec.features
    phase_a = [
        click(5, cpc=1.0, ctr=0.1),
        click(10.25, cpc=2.0, ctr=0.2, conversion=1),
        click(7, platform="ios", cpc=3.0, ctr=0.05),  # out of order, within lateness
        click(20, geo="DE", cpc=0.5),
        click(30, cpc=4.0, ctr=0.3, time_text="2026-01-05T12:00:30.000+02:00"),  # another UTC offset
        click(8, geo="GB", platform="ios", cpc=2.0, time_text="2026-01-05T08:30:08-01:30"),  # negative offset
        click(
            9.5, geo="GB", platform="ios", cpc=4.0, time_text="2026-01-05t10:00:09.5004z"
        ),  # lower case, µs
        invalid(b"this is not json"),
        invalid(click(31, CTR="abc").fields),  # wrong JSON type for a used field
        invalid(click(32, ctr=5.0).fields),  # out of range
        invalid(click(33, geo=None).fields),  # missing dimension
        invalid(click(34, time_text="2236-01-05T10:00:00Z").fields),  # far future: must not move event time
        invalid(click(35, time_text="yesterday").fields),  # unparsable time
        click(50, geo="FR", platform="android", cpc=7.0, ctr=0.4, conversion=1),
        click(59.999, cpc=10.0, ctr=0.15),  # last millisecond of the first minute
        click(60, cpc=5.0, ctr=0.1),  # first millisecond of the second
        click(45, cpc=6.0, ctr=0.25),  # 15 s behind: beyond t1's lateness, yet its window is still open
        click(75, geo="DE", cpc=1.5),
        click(135, cpc=2.5, ctr=0.2),  # closes t1 up to 2 min, h2 up to 1 min
    ]
    phase_b = [
        click(30, cpc=100.0, ctr=0.9),  # t1: its window has fired (dropped); h2: still counts in [0, 2m)
        click(118, cpc=50.0, ctr=0.8),  # 17 s behind: dropped by t1 (window fired), counted by h2 (20 s)
        click(128, cpc=3.0, ctr=0.1, conversion=1),  # 7 s behind: counted by both
        click(200, geo="DE", cpc=2.0),
        click(260, geo="FR", platform="android", cpc=9.0),
    ]
    produce(kafka.bootstrap_servers, raw, phase_a)
    job = features_job(pipeline, kafka, tmp_path / "flink", checkpoint_interval="2s")
    job.start()
    try:
        job.wait_running()
        # Proof that both watermarks passed the windows phase B's late events fall into (see module doc).
        read_features(
            kafka.bootstrap_servers, features, quiet=0,
            until=has_keys(key("t1", {"geo": "US", "platform": "web"}, 120), key("h2", {"geo": "US"}, 60)),
        )  # fmt: skip
        produce(kafka.bootstrap_servers, raw, phase_b)
        want = {**expected_records(t1, phase_a + phase_b), **expected_records(h2, phase_a + phase_b)}
        records = read_features(kafka.bootstrap_servers, features, until=has_keys(*want), quiet=0)
        checkpoints = job.completed_checkpoints()
        job.wait_checkpoints(checkpoints + 2)  # anything else the job had would be committed by now
        records = read_features(kafka.bootstrap_servers, features)
    finally:
        job.stop()
    keys = [k for k, _ in records]
    assert len(keys) == len(set(keys)), "a window was written twice"
    got = dict(records)
    for k, record in got.items():  # the Kafka key is record_key() of the value
        spec = t1 if record.feature == "t1" else h2
        assert record_key(record, spec.dimensions).decode() == k
    assert_records_equal(got, want)
    # Spot checks of the expectations themselves (the Flink semantics this test pins):
    first = want[key("t1", {"geo": "US", "platform": "web"}, 60)]
    assert first.event_count == 5  # 5, 10.25, 30 (+02:00), 45 (late but open), 59.999; not the late 30 s
    assert first.metrics["cpc_p50"] == 4.0 and first.metrics["cpc_max"] == 10.0
    assert want[key("h2", {"geo": "US"}, 120)].event_count == 9  # includes both phase-B late events
    assert key("t1", {"geo": "FR", "platform": "android"}, 300) not in want  # the last window never fired


def test_restart_from_checkpoint_writes_every_window_once(
    kafka: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    name = f"fr-{uuid.uuid4().hex[:8]}"
    feature = {
        "name": "r1",
        "dimensions": ["geo", "platform"],
        "window": {"type": "tumbling", "size": "1m"},
        "allowedLateness": "5s",
        "metrics": [{"name": "n", "agg": "count"}, {"name": "ctr_avg", "agg": "avg", "field": "CTR"}],
    }
    pipeline = make_pipeline(name, [feature])
    raw, features = topic_factory(name=f"{name}-raw"), topic_factory(name=f"{name}-features")
    [spec] = pipeline.spec.features
    geos, platforms = ("US", "DE", "FR"), ("web", "ios")

    def minute(m: int, per_key: int = 3) -> list[Event]:
        return [
            click(m * 60 + 1 + i * 7 + j, geo=g, platform=p, ctr=round(0.01 * (i + j + m), 3))
            for j, (g, p) in enumerate((g, p) for g in geos for p in platforms)
            for i in range(per_key)
        ]

    phase1 = [e for m in range(0, 3) for e in minute(m)] + [click(3 * 60 + 30)]  # closes minutes 0-2
    phase2 = [e for m in range(3, 6) for e in minute(m)] + [click(6 * 60 + 30)]  # closes 3-5
    phase3 = [e for m in range(6, 8) for e in minute(m)] + [click(8 * 60 + 30)]  # closes 6-7
    job = features_job(pipeline, kafka, tmp_path / "flink", checkpoint_interval="4s")
    produce(kafka.bootstrap_servers, raw, phase1)
    job.start()
    try:
        job.wait_running()
        first = expected_records(spec, phase1)
        read_features(kafka.bootstrap_servers, features, until=has_keys(*first), quiet=0)  # committed
        produce(kafka.bootstrap_servers, raw, phase2)
        # Kill as soon as phase 2 is read: its windows are then most likely in an open transaction.
        produced = len(phase1) + len(phase2)
        assert job.process is not None
        job.process.wait_ready(lambda: (job.source_records() or 0) >= produced, timeout=60)
        time.sleep(0.5)
        job.kill()
        uncommitted = read_features(kafka.bootstrap_servers, features, isolation="read_uncommitted", quiet=2)

        produce(kafka.bootstrap_servers, raw, phase3)
        job.start()
        assert job.restored_from is not None and (job.restored_from / "_metadata").is_file()
        job.wait_running()
        want = expected_records(spec, phase1 + phase2 + phase3)
        read_features(kafka.bootstrap_servers, features, until=has_keys(*want), quiet=0)
        job.wait_checkpoints(job.completed_checkpoints() + 2)
        committed = read_features(kafka.bootstrap_servers, features)
        everything = read_features(kafka.bootstrap_servers, features, isolation="read_uncommitted")
    finally:
        job.stop()
    keys = [k for k, _ in committed]
    assert len(keys) == len(set(keys)), "read_committed: a feature window was delivered twice"
    assert_records_equal(dict(committed), want)
    # Without read_committed a reader may also see the aborted attempt; deduplicated by key it is the same.
    assert_records_equal(dict(everything), want)
    print(f"records visible uncommitted right after the kill: {len(uncommitted)}; "
          f"read_uncommitted total {len(everything)} vs committed {len(committed)}")  # fmt: skip


def explain_plan(pipeline: Pipeline, tmp_path: Path) -> tuple[str, str]:
    """(optimized physical plan, optimized execution plan) of `pipeline`'s compiled features job."""
    from adnomaly.services.flink import JOB_SCRIPT

    install = ensure_flink()
    job = compile_pipeline(pipeline, "localhost:9", JobOptions(checkpoint_dir=(tmp_path / "c").as_uri()))
    config = tmp_path / f"{pipeline.name}.json"
    config.write_bytes(job.to_json())
    out = subprocess.run(
        [str(install.python), str(JOB_SCRIPT), "--config", str(config), "--explain",
         "--set", f"pipeline.jars={install.pipeline_jars}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    physical = out.stdout.split("== Optimized Physical Plan ==")[1].split("== Optimized Execution Plan ==")[0]
    return physical, out.stdout.split("== Optimized Execution Plan ==")[1]


def dedup_lines(execution: str) -> list[str]:
    return [line for line in execution.splitlines() if "Deduplicate(" in line]


def test_planner_deduplicates_insert_only_before_the_windows(tmp_path: Path) -> None:
    """The compiled dedup is the planner's insert-only keep-first `Deduplicate` and every operator after it,
    windows and exactly-once sink included, stays insert-only (`[I]`): a form producing updates would fail
    the Kafka sink, one losing the time attribute would fail the window TVFs."""
    physical, execution = explain_plan(make_pipeline("fe", [TUMBLING, HOPPING]), tmp_path)
    dedups = dedup_lines(execution)
    assert dedups and all(
        "Deduplicate(keep=[FirstRow], key=[__event_id], order=[PROCTIME], outputInsertOnly=[true])" in line
        for line in dedups
    ), dedups
    assert len(dedups) == 2, dedups  # one per source: the features' latenesses (10 s, 20 s) differ
    modes = set(re.findall(r"changelogMode=\[([A-Z,]+)\]", physical))
    assert modes == {"I", "NONE"}, modes  # NONE: the sinks
    assert "GlobalWindowAggregate" in physical or "WindowAggregate" in physical


def test_features_of_one_source_share_one_dedup(tmp_path: Path) -> None:
    """Two features with the same lateness read one source and one Deduplicate: each INSERT expands the
    source's distinct view on its own, and without the job's digest block reuse the planner built one
    dedup (with its own state and shuffle) per feature, doubling the job's per-event work."""
    same_source = [TUMBLING, {**HOPPING, "allowedLateness": TUMBLING["allowedLateness"]}]
    physical, execution = explain_plan(make_pipeline("fs", same_source), tmp_path)
    assert len(dedup_lines(execution)) == 1, execution
    assert "Reused(reference_id=" in execution  # the one dedup's output feeds both windows
    assert physical.count("GlobalWindowAggregate") == 2


def test_resent_ids_give_the_same_features_across_a_restart(
    kafka: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """Copies of events (same id, same bytes, as a client retry re-sends them) change no window, also when
    the job is killed between an event and its copy: the dedup state comes back from the checkpoint."""
    name = f"fd-{uuid.uuid4().hex[:8]}"
    feature = {
        "name": "d1",
        "dimensions": ["geo"],
        "window": {"type": "tumbling", "size": "1m"},
        "allowedLateness": "5s",
        "metrics": [{"name": "n", "agg": "count"}, {"name": "cpc_sum", "agg": "sum", "field": "CPC"}],
    }
    pipeline = make_pipeline(name, [feature])
    raw, features = topic_factory(name=f"{name}-raw"), topic_factory(name=f"{name}-features")
    [spec] = pipeline.spec.features

    def minute(m: int) -> list[Event]:
        return [
            click(m * 60 + 1 + i * 9, geo=geo, cpc=float(i + 1), event_id=f"{name}-{m}-{geo}-{i}")
            for geo in ("US", "DE")
            for i in range(6)
        ]

    m0, m1, m2 = minute(0), minute(1), minute(2)
    closer = click(3 * 60 + 30, event_id=f"{name}-closer")  # closes minutes 0-2
    # Phase 1: minute 0 with every other event re-sent at once, minute 1 (its window stays open).
    phase1 = m0 + m0[::2] + m1
    # Phase 2, after a kill: copies of minute 1 (its window still open: counted twice without the restored
    # dedup state), minute 2 with copies, the closer and a copy of it.
    phase2 = m1 + m1[::3] + m2 + m2[1::2] + [closer, closer]
    want = expected_records(spec, m0 + m1 + m2 + [closer])
    job = features_job(pipeline, kafka, tmp_path / "flink", checkpoint_interval="2s")
    produce(kafka.bootstrap_servers, raw, phase1)
    job.start()
    try:
        job.wait_running()
        assert job.process is not None
        job.process.wait_ready(lambda: (job.source_records() or 0) >= len(phase1), timeout=60)
        job.wait_checkpoints(job.completed_checkpoints() + 1)  # phase 1's ids are in a checkpoint
        job.kill()
        produce(kafka.bootstrap_servers, raw, phase2)
        job.start()
        assert job.restored_from is not None
        job.wait_running()
        read_features(kafka.bootstrap_servers, features, until=has_keys(*want), quiet=0)
        job.wait_checkpoints(job.completed_checkpoints() + 2)
        committed = read_features(kafka.bootstrap_servers, features)
    finally:
        job.stop()
    keys = [k for k, _ in committed]
    assert len(keys) == len(set(keys)), "a feature window was delivered twice"
    assert_records_equal(dict(committed), want)
    assert want[key("d1", {"geo": "US"}, 60)].event_count == 6  # the expectation counts each id once
