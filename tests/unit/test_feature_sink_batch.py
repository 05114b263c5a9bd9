"""Feature records → online writes (Feast's layout) and history rows, and the online readers' decoding
(adnomaly.sinks.features.batch / online)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from adnomaly.feast import layout
from adnomaly.features.record import ENCODER, FeatureRecord
from adnomaly.kafka_record import HeldRecord
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.batch import BAD_DIMENSIONS, BAD_VALUES, MALFORMED, UNKNOWN_FEATURE, prepare
from adnomaly.sinks.features.online import OnlineWrite, feast_targets, online_write, read_fields, read_latest

VIEW = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg"], ttl_s=120)
VIEWS = {VIEW.name: VIEW}
TARGETS = feast_targets(VIEWS, "p")
TARGET = TARGETS[VIEW.name]
END = datetime(2026, 5, 1, 12, 5, tzinfo=UTC)


def msg(raw: bytes, part: int = 0, off: int = 0) -> HeldRecord:
    return HeldRecord(raw, part, off, "features")

def rec(end: datetime = END, ctr: float | None = 0.5, count: int = 10, **dims: str) -> FeatureRecord:
    return FeatureRecord(feature="traffic", dimensions=dims or {"geo": "US", "platform": "ios"},
                         window_start=end - timedelta(minutes=5), window_end=end, metrics={"ctr_avg": ctr},
                         event_count=count)  # fmt: skip


def test_online_write_layout() -> None:
    write = online_write(TARGET, rec())
    assert write.key == layout.redis_key("p", {"geo": "US", "platform": "ios"})  # Feast's hash of the entity
    end_ms = int(END.timestamp() * 1000)
    assert write.expire_at_ms == end_ms + 120_000  # ttl after the window's end
    assert write.fields == (
        (b"_adnomaly_end_ms:traffic", str(end_ms).encode()),  # first: the script compares it
        (b"_adnomaly_window:traffic",
         b'{"window_start":"2026-05-01T12:00:00Z","window_end":"2026-05-01T12:05:00Z","event_count":10}'),
        (b"_ts:traffic", layout.timestamp(end_ms)),
        (layout.feature_field("traffic", "ctr_avg"), layout.double_value(0.5)),
    )  # fmt: skip
    assert write.args()[:3] == [end_ms + 120_000, b"_adnomaly_end_ms:traffic", str(end_ms).encode()]


def test_the_key_is_the_entitys_whatever_the_record_order() -> None:
    write = online_write(TARGET, rec(platform="web", geo="DE"))
    assert write.key == layout.redis_key("p", {"geo": "DE", "platform": "web"})
    assert layout.entity_of(write.key, "p") == {"geo": "DE", "platform": "web"}


def test_times_are_utc_whatever_the_record_says() -> None:
    plus_two = timezone(timedelta(hours=2))
    naive = online_write(TARGET, rec(end=datetime(2026, 5, 1, 12, 5)))
    shifted = online_write(TARGET, rec(end=datetime(2026, 5, 1, 14, 5, tzinfo=plus_two)))
    assert naive.fields == shifted.fields and naive.fields[0][1] == str(int(END.timestamp() * 1000)).encode()


def stored(write: OnlineWrite, view: FeatureView = VIEW) -> list[bytes | None]:
    """What HMGET of `read_fields(view)` answers from the hash `write` leaves."""
    fields = dict(write.fields)
    return [fields.get(name) for name in read_fields(view)]


def test_read_latest_round_trips_and_keeps_undefined_metrics() -> None:
    end_ms = int(END.timestamp() * 1000)
    assert read_latest(VIEW, stored(online_write(TARGET, rec(ctr=None))), end_ms) == {
        "window_start": "2026-05-01T12:00:00Z", "window_end": "2026-05-01T12:05:00Z", "event_count": 10,
        "metrics": {"ctr_avg": None},
    }  # fmt: skip
    assert read_latest(VIEW, stored(online_write(TARGET, rec(ctr=0.25))), end_ms)["metrics"] == {  # type: ignore[index]
        "ctr_avg": 0.25
    }
    assert read_latest(VIEW, [None, None, None], end_ms) is None  # no window of the view in the hash


def test_read_latest_types_counts_and_leaves_out_metrics_written_before_they_existed() -> None:
    view = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg", "n", "new"], ttl_s=120,
                       int64_metrics=["n"])  # fmt: skip
    target = feast_targets({view.name: view}, "p")[view.name]
    record = FeatureRecord(feature="traffic", dimensions={"geo": "US", "platform": "ios"},
                           window_start=END - timedelta(minutes=5), window_end=END,
                           metrics={"ctr_avg": 0.5, "n": 7.0}, event_count=7)  # fmt: skip
    answer = read_latest(view, stored(online_write(target, record), view), int(END.timestamp() * 1000))
    assert answer is not None and answer["metrics"] == {"ctr_avg": 0.5, "n": 7}
    assert isinstance(answer["metrics"]["n"], int)


def test_read_latest_enforces_the_views_ttl() -> None:
    """Feast's hash is shared by the views of the same dimensions and outlives this view's TTL: the reader
    answers a window until ttl after its end, and none after."""
    values = stored(online_write(TARGET, rec()))
    end_ms = int(END.timestamp() * 1000)
    assert read_latest(VIEW, values, end_ms + 120_000) is not None
    assert read_latest(VIEW, values, end_ms + 120_001) is None


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
    batch = prepare(messages, VIEWS, TARGETS)
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
    batch = prepare(messages, VIEWS, TARGETS)
    assert [(row.window_end, row.metrics["ctr_avg"]) for row in batch.history] == [
        (END - timedelta(minutes=1), 0.2), (END, 0.3),
    ]  # fmt: skip
    assert len(batch.online) == 3  # Redis sees every record in order; its script keeps the newest
    assert batch.history[1].entity_key == "geo=US|platform=ios"
    assert batch.history[1].dimensions == {"geo": "US", "platform": "ios"}


def test_read_latest_answers_only_the_configured_metrics() -> None:
    wider = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg", "dropped"], ttl_s=120)
    record = FeatureRecord(feature="traffic", dimensions={"geo": "US", "platform": "ios"},
                           window_start=END - timedelta(minutes=5), window_end=END,
                           metrics={"ctr_avg": 0.5, "dropped": 1.0}, event_count=3)  # fmt: skip
    write = online_write(feast_targets({wider.name: wider}, "p")[wider.name], record)
    assert read_fields(VIEW) == read_fields(wider)[:3]  # the narrower view never asks for the dropped field
    assert read_latest(VIEW, stored(write, VIEW), 0)["metrics"] == {"ctr_avg": 0.5}  # type: ignore[index]
    assert read_latest(wider, stored(write, wider), 0)["metrics"] == {"ctr_avg": 0.5, "dropped": 1.0}  # type: ignore[index]
