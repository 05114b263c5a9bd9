"""The SQL that reads anomalies and feature history back (pure: builds statements, runs nothing).

Index use (see `adnomaly.detector.store` and `adnomaly.sinks.features.stores` for the DDL):
- `status=open` is written as the literal `status = 'open'` next to `pipeline = …`, so the planner can use the
  partial index `anomalies_open_idx (pipeline, type) WHERE status = 'open'` (a bound parameter would not
  match the index predicate in a generic plan); a detector filter narrows that index on `type`.
- everything else walks `anomalies_detected_idx (detected_at)` backwards: ORDER BY detected_at DESC, id DESC
  with LIMIT, the time range and the keyset cursor all bound `detected_at` (the cursor as
  `detected_at <= t AND (detected_at < t OR id < i)`, which keeps an index range a row comparison would lose).
- a feature's series is a range of the primary key (feature, entity_key, window_end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import sql

from adnomaly.anomalies.filters import AnomalyQuery, encode_cursor
from adnomaly.anomalies.models import AnomalyOut, AnomalyPage

# (column in the table, field of AnomalyOut)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"), ("type", "detector"), ("detector", "method"), ("severity", "severity"), ("status", "status"),
    ("feature", "feature"), ("metric", "metric"), ("dimensions", "key"), ("window_start", "window_start"),
    ("window_end", "window_end"), ("observed", "observed"), ("expected", "expected"), ("score", "score"),
    ("statistic", "statistic"), ("reason", "reason"), ("context", "context"), ("detected_at", "detected_at"),
    ("resolved_at", "resolved_at"),
)  # fmt: skip
_STATUS = {"open": sql.SQL("status = 'open'"), "resolved": sql.SQL("status = 'resolved'")}


@dataclass(frozen=True)
class Statement:
    query: sql.Composed
    params: tuple[Any, ...]


def build_query(q: AnomalyQuery, db_schema: str, pipeline: str) -> Statement:
    """One page (plus one row, to know whether another page follows) of the anomalies matching `q`."""
    where: list[sql.Composable] = [sql.SQL("pipeline = %s")]
    params: list[Any] = [pipeline]
    if q.status is not None:
        where.append(_STATUS[q.status])
    for column, value in (("type", q.detector), ("feature", q.feature)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if q.key:
        where.append(sql.SQL("dimensions @> %s::jsonb"))
        params.append(orjson.dumps(q.key).decode())
    if q.since is not None:
        where.append(sql.SQL("detected_at >= %s"))
        params.append(q.since)
    if q.until is not None:
        where.append(sql.SQL("detected_at < %s"))
        params.append(q.until)
    if q.after is not None:
        at, last_id = q.after
        where.append(sql.SQL("detected_at <= %s AND (detected_at < %s OR id < %s::uuid)"))
        params += [at, at, last_id]
    query = sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY detected_at DESC, id DESC LIMIT %s").format(
        columns=sql.SQL(", ").join(sql.Identifier(column) for column, _ in COLUMNS),
        table=sql.Identifier(db_schema, "anomalies"),
        where=sql.SQL(" AND ").join(where),
    )
    return Statement(query, (*params, q.limit + 1))


def to_page(rows: Sequence[Sequence[Any]], limit: int) -> AnomalyPage:
    """The page from the rows of `build_query` (at most limit + 1 of them)."""
    items = [AnomalyOut(**{name: value for (_, name), value in zip(COLUMNS, row, strict=True)} | {"id": str(row[0])})
             for row in rows[:limit]]  # fmt: skip
    last = items[-1] if len(rows) > limit and items else None
    return AnomalyPage(anomalies=items, next_cursor=encode_cursor(last.detected_at, last.id) if last else None)


def build_get(anomaly_id: str, db_schema: str, pipeline: str) -> Statement:
    query = sql.SQL("SELECT {columns} FROM {table} WHERE id = %s::uuid AND pipeline = %s").format(
        columns=sql.SQL(", ").join(sql.Identifier(column) for column, _ in COLUMNS),
        table=sql.Identifier(db_schema, "anomalies"),
    )
    return Statement(query, (anomaly_id, pipeline))


def build_series(db_schema: str, feature: str, entity_key: str, metric: str, start: datetime, end: datetime
                 ) -> Statement:  # fmt: skip
    """(window_end, value of `metric`, event_count) of one entity's windows in [start, end], oldest first."""
    query = sql.SQL(
        "SELECT window_end, CASE WHEN jsonb_typeof(metrics -> %s) = 'number' THEN (metrics ->> %s)::float8 END,"
        " event_count FROM {table} WHERE feature = %s AND entity_key = %s AND window_end BETWEEN %s AND %s"
        " ORDER BY window_end"
    ).format(table=sql.Identifier(db_schema, "feature_aggregates"))
    return Statement(query, (metric, metric, feature, entity_key, start, end))


def build_counts(db_schema: str, pipeline: str, since: datetime) -> Statement:
    """(open anomalies, anomalies detected since `since`)."""
    table = sql.Identifier(db_schema, "anomalies")
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {t} WHERE pipeline = %s AND status = 'open'),"
        " (SELECT count(*) FROM {t} WHERE pipeline = %s AND detected_at >= %s)"
    ).format(t=table)
    return Statement(query, (pipeline, pipeline, since))


def build_totals(db_schema: str, pipeline: str) -> Statement:
    """(anomalies ever opened, anomalies resolved) of the pipeline: what happened during a period is the
    difference of two readings (`adnomaly up` counts its run this way)."""
    query = sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE status = 'resolved') FROM {} WHERE pipeline = %s"
    ).format(sql.Identifier(db_schema, "anomalies"))
    return Statement(query, (pipeline,))


def build_throughput(db_schema: str, since: datetime) -> Statement:
    """Events stored with an event time since `since` (through the BRIN index `events_event_time_brin`)."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE event_time >= %s").format(sql.Identifier(db_schema, "events"))
    return Statement(query, (since,))
