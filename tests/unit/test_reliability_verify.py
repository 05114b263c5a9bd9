"""The fault suite's verdict: ids against stores, and features recomputed from the lake against the stores."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from adnomaly.reliability.verify import WindowValue, check_events, check_features, lake_id_counts, recompute
from adnomaly.spec import FeatureSpec

T0 = int(datetime(2026, 1, 5, 10, 0, tzinfo=UTC).timestamp() * 1_000_000)  # µs
S = 1_000_000


def test_every_id_stored_once_and_in_one_lake_file_is_a_clean_result() -> None:
    produced = {"a", "b", "c"}
    lake = lake_id_counts({"t+0+0-1.parquet": ["a", "b"], "t+1+0-0.parquet": ["c"]})
    report = check_events(produced, set(), Counter({"a": 1, "b": 1, "c": 1}), lake)
    assert report.events == 3 and report.lost == [] and report.duplicated == [] and report.unexpected == 0


def test_an_id_missing_from_postgres_or_from_the_lake_is_lost() -> None:
    produced = {"a", "b", "c"}
    report = check_events(produced, set(), Counter({"a": 1, "b": 1}), Counter({"a": 1, "c": 1}))
    assert report.lost == ["b", "c"]
    assert (report.missing_in_postgres, report.missing_in_lake) == (1, 1)


def test_an_id_in_two_lake_files_or_twice_in_one_is_duplicated() -> None:
    lake = lake_id_counts({"t+0+0-9.parquet": ["a", "b", "b"], "t+0+5-12.parquet": ["a"]})
    report = check_events({"a", "b"}, set(), Counter({"a": 1, "b": 1}), lake)
    assert report.duplicated == ["a", "b"] and report.lost == []


def test_a_duplicate_in_postgres_counts_too() -> None:
    report = check_events({"a"}, set(), Counter({"a": 2}), Counter({"a": 1}))
    assert report.duplicated == ["a"]


def test_ambiguous_ids_may_be_absent_or_present_but_unknown_ids_are_reported() -> None:
    stored = Counter({"a": 1, "m1": 1, "zz": 1})
    lake = Counter({"a": 1, "m1": 1})
    report = check_events({"a"}, {"m1", "m2"}, stored, lake)
    assert report.lost == [] and report.ambiguous_found == 1 and report.unexpected == 1


def test_an_ambiguous_id_stored_twice_is_still_a_duplicate() -> None:
    report = check_events(set(), {"m"}, Counter({"m": 1}), Counter({"m": 2}))
    assert report.duplicated == ["m"]


# -- features ------------------------------------------------------------------------------------------------

FEATURE = FeatureSpec.model_validate({
    "name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "10s"},
    "allowedLateness": "5s",
    "metrics": [{"name": "n", "agg": "count"}, {"name": "ctr", "agg": "avg", "field": "CTR"}],
})  # fmt: skip


def ms(t_us: int) -> int:
    return t_us // 1000


def test_recompute_counts_every_event_whatever_its_order() -> None:
    events = [
        (T0 + 12 * S, {"geo": "US", "CTR": 0.5}),
        (T0 + 1 * S, {"geo": "US", "CTR": 0.1}),
        (T0 + 30 * S, {"geo": "US", "CTR": 0.2}),  # would make the first window fire (lateness 5 s) ...
        (T0 + 2 * S, {"geo": "US", "CTR": 0.3}),  # ... before this one in arrival order: still counted
        (T0 + 3 * S, {"geo": "FR", "CTR": 1.0}),
    ]
    windows = recompute([FEATURE], events)
    first = ("traffic", "geo=US", ms(T0 + 10 * S))
    assert windows[first].event_count == 2 and windows[first].metrics["ctr"] == 0.2
    assert windows[("traffic", "geo=FR", ms(T0 + 10 * S))] == WindowValue(1, {"n": 1.0, "ctr": 1.0})
    assert windows[("traffic", "geo=US", ms(T0 + 20 * S))].event_count == 1
    assert len(windows) == 4


Key = tuple[str, str, int]


def window(end_s: int, count: int, ctr: float | None = 0.5, geo: str = "US") -> tuple[Key, WindowValue]:
    return ("traffic", f"geo={geo}", ms(T0 + end_s * S)), WindowValue(count, {"n": float(count), "ctr": ctr})


def test_features_equal_to_the_lake_pass() -> None:
    expected = dict([window(10, 3), window(20, 4), window(30, 1)])
    stored = dict([window(10, 3), window(20, 4)])  # the last window has not fired yet: not due
    online = {("traffic", "geo=US"): (ms(T0 + 20 * S), WindowValue(4, {"n": 4.0, "ctr": 0.5 + 1e-13}))}
    report = check_features(expected, stored, online, cutoff_ms=ms(T0 + 20 * S))
    assert report.ok, report
    assert report.windows_expected == 2 and report.windows_stored == 2


def test_a_window_with_other_values_than_the_lake_is_reported() -> None:
    expected = dict([window(10, 3)])
    report = check_features(expected, dict([window(10, 2)]), {}, cutoff_ms=ms(T0))
    assert len(report.mismatched) == 1 and not report.ok
    report = check_features(expected, dict([window(10, 3, ctr=0.6)]), {}, cutoff_ms=ms(T0))
    assert len(report.mismatched) == 1
    report = check_features(expected, dict([window(10, 3, ctr=None)]), {}, cutoff_ms=ms(T0))
    assert len(report.mismatched) == 1


def test_a_stored_window_the_lake_knows_nothing_of_is_reported() -> None:
    report = check_features({}, dict([window(10, 3)]), {}, cutoff_ms=ms(T0))
    assert len(report.mismatched) == 1


def test_a_due_window_missing_from_postgres_is_reported() -> None:
    expected = dict([window(10, 3), window(20, 4)])
    report = check_features(expected, dict([window(10, 3)]), {}, cutoff_ms=ms(T0 + 20 * S))
    assert len(report.missing) == 1 and not report.ok


def test_redis_must_hold_each_entitys_latest_postgres_window() -> None:
    stored = dict([window(10, 3), window(20, 4), window(10, 1, geo="FR")])
    old = {("traffic", "geo=US"): (ms(T0 + 10 * S), WindowValue(3, {"n": 3.0, "ctr": 0.5}))}
    report = check_features(dict(stored), stored, old, cutoff_ms=ms(T0))
    assert len(report.redis_mismatched) == 2  # US is stale, FR is missing
    wrong = {
        ("traffic", "geo=US"): (ms(T0 + 20 * S), WindowValue(5, {"n": 5.0, "ctr": 0.5})),
        ("traffic", "geo=FR"): (ms(T0 + 10 * S), WindowValue(1, {"n": 1.0, "ctr": 0.5})),
    }
    report = check_features(dict(stored), stored, wrong, cutoff_ms=ms(T0))
    assert len(report.redis_mismatched) == 1
