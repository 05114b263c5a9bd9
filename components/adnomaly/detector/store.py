"""The PostgreSQL `anomalies` table: created once (under an advisory lock), written idempotently.

Rows are keyed by the anomaly's deterministic id. Writing the same anomaly again changes nothing; the
resolved copy of an open anomaly sets `status`, `severity` and `resolved_at`, and never the other way
round (a replayed `open` record cannot reopen a resolved row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from adnomaly.detection.anomaly import Anomaly

DDL = """
CREATE TABLE IF NOT EXISTS anomalies (
    id uuid PRIMARY KEY,
    pipeline text NOT NULL,
    type text NOT NULL,
    detector text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'critical')),
    status text NOT NULL CHECK (status IN ('open', 'resolved')),
    feature text NOT NULL,
    metric text NOT NULL,
    dimensions jsonb NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    observed double precision NOT NULL,
    expected double precision,
    score double precision NOT NULL,
    context jsonb NOT NULL,
    detected_at timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS anomalies_open_idx ON anomalies (pipeline, type) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS anomalies_detected_idx ON anomalies (detected_at);
"""

UPSERT = """
INSERT INTO anomalies (id, pipeline, type, detector, severity, status, feature, metric, dimensions,
    window_start, window_end, observed, expected, score, context, detected_at, resolved_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, severity = EXCLUDED.severity,
    resolved_at = EXCLUDED.resolved_at
WHERE anomalies.status = 'open' AND EXCLUDED.status = 'resolved'
"""

COLUMNS = ("id", "pipeline", "type", "detector", "severity", "status", "feature", "metric", "dimensions",
           "window_start", "window_end", "observed", "expected", "score", "context", "detected_at",
           "resolved_at")  # fmt: skip


def _lock_key(db_schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"adnomaly-anomalies:{db_schema}".encode()).digest()[:8], "big", signed=True)


def ensure_table(conn: psycopg.Connection, db_schema: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(db_schema),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db_schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(db_schema)))
        conn.execute(DDL)


def _row(a: Anomaly) -> tuple[object, ...]:
    return (a.id, a.pipeline, a.type, a.detector, a.severity, a.status, a.feature, a.metric, Jsonb(a.dimensions),
            a.window_start, a.window_end, a.observed, a.expected, a.score, Jsonb(a.context), a.detected_at,
            a.resolved_at)  # fmt: skip


def write(conn: psycopg.Connection, db_schema: str, anomalies: Sequence[Anomaly]) -> None:
    """Upsert `anomalies` in one transaction (in order: an anomaly's open copy before its resolved one)."""
    if not anomalies:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(db_schema)))
        cur.executemany(UPSERT, [_row(a) for a in anomalies])


def open_anomalies(conn: psycopg.Connection, db_schema: str, pipeline: str) -> list[Anomaly]:
    """Anomalies still open (re-adopted by the engine at start, so a restart does not duplicate them)."""
    query = sql.SQL("SELECT {} FROM {}.anomalies WHERE pipeline = %s AND status = 'open'").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(db_schema)
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(query, (pipeline,))
        rows = cur.fetchall()
    return [Anomaly(**{**dict(zip(COLUMNS, row, strict=True)), "id": str(row[0])}) for row in rows]
