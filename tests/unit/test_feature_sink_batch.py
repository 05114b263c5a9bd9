"""Feature records → online writes and history rows (adnomaly.sinks.features.batch / online)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from adnomaly.features.record import ENCODER, FeatureRecord
from adnomaly.kafka_record import HeldRecord
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.batch import BAD_DIMENSIONS, BAD_VALUES, MALFORMED, UNKNOWN_FEATURE, prepare
from adnomaly.sinks.features.online import online_write, read_latest

VIEW = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg"], ttl_s=120)
VIEWS = {VIEW.name: VIEW}
END = datetime(2026, 5, 1, 12, 5, tzinfo=UTC)


def msg(raw: bytes, part: int = 0, off: int = 0) -> HeldRecord:
    return HeldRecord(raw, part, off, "features")

def rec(end: datetime = END, ctr: float | None = 0.5, count: int = 10, **dims: str) -> FeatureRecord:
    return FeatureRecord(feature="traffic", dimensions=dims or {"geo": "US", "platform": "ios"},
                         window_start=end - timedelta(minutes=5), window_end=end, metrics={"ctr_avg": ctr},
                         event_count=count)  # fmt: skip


def test_online_write_layout() -> None:
    write = online_write("adnomaly:p", rec(), VIEW.dimensions, VIEW.ttl_s)
    assert write.key == "adnomaly:p:traffic:geo=US|platform=ios"
    end_ms = int(END.timestamp() * 1000)
    assert write.window_end_ms == end_ms
    assert write.expire_at_ms == end_ms + 120_000  # ttl after the window's end
    assert dict(write.fields) == {
        "window_start": "2026-05-01T12:00:00Z", "window_end": "2026-05-01T12:05:00Z",
        "window_end_ms": str(end_ms), "event_count": "10", "metric:ctr_avg": "0.5",
    }  # fmt: skip
    assert write.args()[:2] == [end_ms, end_ms + 120_000]


def test_entity_key_follows_the_view_order_not_the_record_order() -> None:
    write = online_write("k", rec(platform="web", geo="DE"), VIEW.dimensions, VIEW.ttl_s)
    assert write.key == "k:traffic:geo=DE|platform=web"


def test_times_are_utc_whatever_the_record_says() -> None:
    plus_two = timezone(timedelta(hours=2))
    naive = online_write("k", rec(end=datetime(2026, 5, 1, 12, 5)), VIEW.dimensions, 60)
    shifted = online_write("k", rec(end=datetime(2026, 5, 1, 14, 5, tzinfo=plus_two)), VIEW.dimensions, 60)
    assert naive.window_end_ms == shifted.window_end_ms == int(END.timestamp() * 1000)


def test_read_latest_round_trips_and_keeps_undefined_metrics() -> None:
    write = online_write("k", rec(ctr=None), VIEW.dimensions, 60)
    stored = {name.encode(): value.encode() for name, value in write.fields}
    assert read_latest(stored) == {
        "window_start": "2026-05-01T12:00:00Z", "window_end": "2026-05-01T12:05:00Z", "event_count": 10,
        "metrics": {"ctr_avg": None},
    }  # fmt: skip
    assert read_latest({}) is None


def test_prepare_skips_what_cannot_be_stored_and_still_commits_past_it() -> None:
    messages = [
        msg(ENCODER.encode(rec()), 0, 5),
        msg(b"{not json", 0, 6),
        msg(msgspec.json.encode({"feature": "traffic"}), 1, 3),
        msg(ENCODER.encode(FeatureRecord(feature="other", dimensions={}, window_start=END, window_end=END,
                                         metrics={}, event_count=0)), 1, 4),
        msg(ENCODER.encode(rec(geo="US")), 1, 5),
        msg(ENCODER.encode(rec(count=2**64)), 1, 6),  # would not fit PostgreSQL's bigint
        msg(ENCODER.encode(rec(count=-1)), 1, 7),
    ]
    batch = prepare(messages, VIEWS, "k")
    assert batch.skipped == {MALFORMED: 2, UNKNOWN_FEATURE: 1, BAD_DIMENSIONS: 1, BAD_VALUES: 2}
    assert len(batch.online) == 1 and len(batch.history) == 1
    assert batch.offsets == {("features", 0): 7, ("features", 1): 8}
    assert batch.size == 7


def test_history_rows_are_unique_by_key_and_the_later_one_wins() -> None:
    messages = [
        msg(ENCODER.encode(rec(ctr=0.1)), 0, 0),
        msg(ENCODER.encode(rec(end=END - timedelta(minutes=1), ctr=0.2)), 0, 1),
        msg(ENCODER.encode(rec(ctr=0.3)), 0, 2),
    ]
    batch = prepare(messages, VIEWS, "k")
    assert [(row.window_end, row.metrics["ctr_avg"]) for row in batch.history] == [
        (END - timedelta(minutes=1), 0.2), (END, 0.3),
    ]  # fmt: skip
    assert len(batch.online) == 3  # Redis sees every record in order; its script keeps the newest
    assert batch.history[1].entity_key == "geo=US|platform=ios"
    assert batch.history[1].dimensions == {"geo": "US", "platform": "ios"}


def test_read_latest_answers_only_the_configured_metrics() -> None:
    stored = {"window_start": "s", "window_end": "e", "event_count": "3", "metric:ctr_avg": "0.5",
              "metric:dropped": "1.0"}  # fmt: skip
    assert read_latest(stored, ["ctr_avg"])["metrics"] == {"ctr_avg": 0.5}  # type: ignore[index]
    assert read_latest(stored)["metrics"] == {"ctr_avg": 0.5, "dropped": 1.0}  # type: ignore[index]
