"""One fault-suite run, end to end: start the pipeline, load it, break it on schedule, drain, verify."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adnomaly.durations import parse_duration
from adnomaly.reliability.chaos import ChaosDriver, caught_up
from adnomaly.reliability.harness import Harness
from adnomaly.reliability.load import Load, LoadSettings, Produced
from adnomaly.reliability.readers import online_windows, read_lake, stored_ids, stored_windows
from adnomaly.reliability.schedule import ALL_TARGETS, build_schedule
from adnomaly.reliability.spec import reliability_pipeline
from adnomaly.reliability.verify import check_events, check_features, lake_id_counts, recompute
from adnomaly.sinks.lake.storage import LakeStore, S3Credentials
from adnomaly.sinks.sections import feast_project, feature_views

DRAIN_TIMEOUT_S = 300.0
FEATURE_FIELDS = ["geo", "platform", "CTR", "CPC"]


@dataclass(frozen=True)
class RunSettings:
    minutes: float = 3.0
    seed: int = 1
    faults: int | None = None  # default: one per ~15 s of load
    rate: float = 2000.0
    targets: tuple[str, ...] = ALL_TARGETS
    state_dir: Path | None = None  # default: a fresh temporary directory, removed afterwards
    lake_flush_interval_s: float = 10.0

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    @property
    def fault_count(self) -> int:
        return self.faults if self.faults is not None else max(1, int((self.duration_s - 10) // 15))


def run_reliability(settings: RunSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    schedule = build_schedule(settings.seed, settings.duration_s, settings.fault_count, targets=settings.targets)
    pipeline = reliability_pipeline(settings.seed)
    state = settings.state_dir or Path(tempfile.mkdtemp(prefix="adnomaly-reliability-"))
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    try:
        with Harness(pipeline, state, say, lake_flush_interval_s=settings.lake_flush_interval_s) as harness:
            say(f"pipeline up; {len(schedule)} faults over {settings.duration_s:.0f}s at {settings.rate:.0f} events/s")
            load = Load(
                LoadSettings(seed=settings.seed, rate=settings.rate), harness.bootstrap,
                harness.pipe.plan.topics["raw"].name, harness.ingest_url(), harness.ingest_token(),
            )  # fmt: skip
            load.start()
            records = ChaosDriver(harness, schedule, say).run(load.started_at, settings.duration_s)
            produced = load.stop()
            say(f"load stopped: {len(produced.ids)} events acknowledged; draining")
            drain_s, stuck = drain(harness, say)
            say(f"drained in {drain_s:.1f}s; verifying")
            verdict = verify(harness, produced)
            crashes = list(harness.crashes)
    finally:
        if settings.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)
    recoveries = [r.recovery_s for r in records]
    unrecovered = any(r is None for r in recoveries)
    return {
        **verdict,
        "kills": len(records),
        "max_recovery_s": None if unrecovered else round(max((r or 0.0 for r in recoveries), default=0.0), 2),
        "seed": settings.seed,
        "minutes": settings.minutes,
        "rate": settings.rate,
        "drain_s": round(drain_s, 2),
        "not_drained": stuck,
        "faults": [r.as_dict() for r in records],
        "self_restarts": crashes,
        "ingest": {"requests": produced.ingest_requests, "retried": produced.ingest_retries,
                   "accepted_events": len(produced.ingested), "ambiguous_events": len(produced.ambiguous)},
    }  # fmt: skip


def drain(harness: Harness, say: Callable[[str], None]) -> tuple[float, list[str]]:
    """After the load: wait until the processor and the lake sink have committed everything in the raw topic,
    then until the feature sink has taken everything the features job emitted (its output stops growing).
    Returns the time it took and what did not drain (verified anyway: what is missing counts as lost)."""
    began = time.monotonic()
    stuck = []
    for component in ("processor", "lake-sink"):
        if not harness.wait_for(lambda c=component: harness.lag(c, "raw") == 0, DRAIN_TIMEOUT_S):  # type: ignore[misc]
            stuck.append(component)
            say(f"{component} did not drain the raw topic within {DRAIN_TIMEOUT_S:.0f}s")
    previous: dict[int, int] = {}
    committed: dict[int, int] = {}

    def features_settled() -> bool:
        # Not the high watermark: after the features job's producer failed over (a Kafka restart), a partition
        # can end in aborted records no consumer ever gets, so a drained group commits short of it for good.
        ends = harness.readable_ends("features")
        committed.clear()
        committed.update(harness.committed("feature-sink", "features"))
        settled = ends == previous and caught_up(committed, ends, slack=0)
        previous.clear()
        previous.update(ends)
        return settled

    # The features job commits its output every checkpoint (10 s): two unchanged looks 15 s apart.
    if not harness.wait_for(features_settled, DRAIN_TIMEOUT_S, interval=15.0):
        stuck.append("feature-sink")
        say(f"the feature sink did not settle within {DRAIN_TIMEOUT_S:.0f}s: readable ends {previous}, "
            f"committed {committed}, high watermarks {harness.high_watermarks('features')}")
    return time.monotonic() - began, stuck


def verify(harness: Harness, produced: Produced) -> dict[str, Any]:
    pipe = harness.pipe
    services = pipe.services
    assert services.minio is not None and services.redis is not None
    lake_section = pipe.plan.components["lake-sink"].config.lake
    assert lake_section is not None
    store = LakeStore(
        lake_section.uri, endpoint=lake_section.s3_endpoint, region=lake_section.s3_region,
        credentials=S3Credentials(services.minio.access_key, services.minio.secret_key),
    )  # fmt: skip
    time_field = pipe.plan.components["processor"].config.events.time_field
    lake = read_lake(store, time_field, FEATURE_FIELDS)
    events = check_events(
        produced.ids, produced.ambiguous, stored_ids(services.postgres.dsn, pipe.plan.db_schema),
        lake_id_counts(lake.ids_by_file),
    )  # fmt: skip
    features = harness.pipeline.spec.features
    expected = recompute(features, lake.events)
    last_ms = max((t for t, _ in lake.events), default=0) // 1000
    margin_ms = max(int((parse_duration(f.allowed_lateness) + parse_duration(f.window.size)) * 1000) for f in features)
    report = check_features(
        expected, stored_windows(services.postgres.dsn, pipe.plan.db_schema),
        online_windows(services.redis.url, feast_project(pipe.name), feature_views(harness.pipeline),
                       round(time.time() * 1000)),
        cutoff_ms=last_ms - margin_ms,
    )  # fmt: skip
    return {
        "events": events.events,
        "lost": len(events.lost),
        "duplicated": len(events.duplicated),
        "missing_in_postgres": events.missing_in_postgres,
        "missing_in_lake": events.missing_in_lake,
        "unexpected": events.unexpected,
        "ambiguous_found": events.ambiguous_found,
        "resent": produced.resent,  # copies of accepted events sent again: each must still count once
        "lake_files": len(lake.ids_by_file),
        "features": {
            "ok": report.ok, "windows_stored": report.windows_stored, "windows_expected": report.windows_expected,
            "mismatched": len(report.mismatched), "missing": len(report.missing),
            "redis_entities": report.redis_entities, "redis_mismatched": len(report.redis_mismatched),
            "examples": (report.mismatched + report.missing + report.redis_mismatched)[:5],
        },
        "lost_examples": events.lost[:5],
        "duplicated_examples": events.duplicated[:5],
    }  # fmt: skip
