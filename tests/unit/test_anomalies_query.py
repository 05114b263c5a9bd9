"""The anomaly filters and the SQL built from them (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from adnomaly.anomalies.filters import (
    AnomalyFilters,
    AnomalyQuery,
    BadFilter,
    decode_cursor,
    encode_cursor,
    resolve,
)
from adnomaly.anomalies.query import COLUMNS, build_query, build_series, to_page
from pydantic import ValidationError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ID = "5b0f6a1e-8d2c-4b7e-9a51-0d6f3c2e9b10"


def sql_text(statement) -> str:  # type: ignore[no-untyped-def]
    return " ".join(statement.query.as_string(None).split())


def test_durations_and_iso_times_resolve_against_now() -> None:
    q = resolve(AnomalyFilters(since="1h", until="2026-03-01T11:30:00Z"), NOW)
    assert q.since == NOW - timedelta(hours=1)
    assert q.until == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    naive = resolve(AnomalyFilters(since="2026-03-01T10:00:00"), NOW)
    assert naive.since == datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "5 minutes"}, "until"),
        ({"since": "99999999999999d"}, "since"),
        ({"since": "1h", "until": "2h"}, "until"),  # until before since
        ({"key": ["geo"]}, "key"),
        ({"key": ["geo:US", "geo:DE"]}, "key"),
        ({"key": [":US"]}, "key"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"detector": ""}, "detector"),
        ({"feature": "a\x00b"}, "feature"),
    ],
)
def test_bad_filters_name_their_field(filters: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadFilter) as caught:
        resolve(AnomalyFilters(**filters), NOW)
    assert caught.value.field == field


def test_unknown_parameters_and_bad_values_are_refused_by_the_model() -> None:
    with pytest.raises(ValidationError):
        AnomalyFilters.model_validate({"stauts": "open"})
    with pytest.raises(ValidationError):
        AnomalyFilters.model_validate({"status": "closed"})
    with pytest.raises(ValidationError):
        AnomalyFilters.model_validate({"limit": 0})


def test_cursor_round_trips() -> None:
    at = datetime(2026, 3, 1, 11, 59, 1, 250000, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, ID)) == (at, ID)


def test_keys_split_on_the_first_colon() -> None:
    q = resolve(AnomalyFilters(key=["geo:US", "url:http://x:80"]), NOW)
    assert q.key == {"geo": "US", "url": "http://x:80"}


def test_open_anomalies_use_the_partial_index_predicate_literally() -> None:
    statement = build_query(AnomalyQuery(status="open", detector="ctr-spike", limit=10), "p_demo", "demo")
    text = sql_text(statement)
    assert 'FROM "p_demo"."anomalies"' in text
    assert "WHERE pipeline = %s AND status = 'open' AND \"type\" = %s" in text
    assert text.endswith("ORDER BY detected_at DESC, id DESC LIMIT %s")
    assert statement.params == ("demo", "ctr-spike", 11)  # one extra row: is there a next page?


def test_every_filter_becomes_a_bound_parameter() -> None:
    since, until = NOW - timedelta(hours=2), NOW
    q = AnomalyQuery(status="resolved", feature="traffic", key={"geo": "US"}, since=since, until=until,
                     limit=5, after=(NOW - timedelta(minutes=1), ID))  # fmt: skip
    statement = build_query(q, "p_demo", "demo")
    text = sql_text(statement)
    for clause in ("status = 'resolved'", '"feature" = %s', "dimensions @> %s::jsonb", "detected_at >= %s",
                   "detected_at < %s", "detected_at <= %s AND (detected_at < %s OR id < %s::uuid)"):  # fmt: skip
        assert clause in text, clause
    assert statement.params == ("demo", "traffic", '{"geo":"US"}', since, until, q.after[0], q.after[0], ID, 6)  # type: ignore[index]
    assert "'US'" not in text and "traffic" not in text  # values never spliced into the SQL


def test_a_page_knows_whether_another_follows() -> None:
    def row(minute: int, anomaly_id: str) -> tuple[object, ...]:
        at = NOW - timedelta(minutes=minute)
        values = {"id": anomaly_id, "type": "ctr-spike", "detector": "auto", "severity": "warning", "status": "open",
                  "feature": "traffic", "metric": "ctr_avg", "dimensions": {"geo": "US"}, "window_start": at,
                  "window_end": at, "observed": 0.5, "expected": 0.1, "score": 0.9, "statistic": 7.0,
                  "reason": "high", "context": {}, "detected_at": at, "resolved_at": None}  # fmt: skip
        return tuple(values[column] for column, _ in COLUMNS)

    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
    full = to_page([row(i, ids[i]) for i in range(3)], limit=2)
    assert [a.id for a in full.anomalies] == ids[:2]
    assert full.anomalies[0].detector == "ctr-spike" and full.anomalies[0].method == "auto"
    assert full.anomalies[0].key == {"geo": "US"}
    assert full.next_cursor is not None and decode_cursor(full.next_cursor) == (NOW - timedelta(minutes=1), ids[1])
    assert to_page([row(0, ids[0])], limit=2).next_cursor is None


def test_the_series_is_a_primary_key_range() -> None:
    statement = build_series("p_demo", "traffic", "geo=US", "ctr_avg", NOW - timedelta(hours=1), NOW)
    text = sql_text(statement)
    assert "WHERE feature = %s AND entity_key = %s AND window_end BETWEEN %s AND %s ORDER BY window_end" in text
    assert statement.params[2:4] == ("traffic", "geo=US")
