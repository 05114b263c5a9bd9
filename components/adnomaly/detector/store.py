"""The PostgreSQL `anomalies` table: created once (under an advisory lock), written idempotently.

Rows are keyed by the anomaly's deterministic id. Writing the same anomaly again changes nothing; the
resolved copy of an open anomaly sets `status`, `severity` and `resolved_at`, and never the other way
round (a replayed `open` record cannot reopen a resolved row).

`detector_checkpoints` holds the detector's state (baselines, open anomalies with their normal-window
streaks, `_dlq` windows) tagged with the consumed offsets it reflects, written in the same transaction as
the batch's anomalies. The last two are kept: the newest, and the one before it for a crash between this
transaction and the Kafka transaction that commits the same offsets (see `adnomaly.detector.checkpoint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

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
-- added with anomaly scores in [0, 1]: the raw statistic behind the score and a one-line reason
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS statistic double precision;
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS reason text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS anomalies_open_idx ON anomalies (pipeline, type) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS anomalies_detected_idx ON anomalies (detected_at);
CREATE TABLE IF NOT EXISTS detector_checkpoints (
    group_id text NOT NULL,
    seq bigint NOT NULL,
    offsets jsonb NOT NULL,
    state bytea NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, seq)
);
"""

SAVE_CHECKPOINT = """
INSERT INTO detector_checkpoints (group_id, seq, offsets, state) VALUES (%s, %s, %s, %s)
ON CONFLICT (group_id, seq) DO UPDATE SET offsets = EXCLUDED.offsets, state = EXCLUDED.state, saved_at = now()
"""
KEEP_CHECKPOINTS = 2

UPSERT = """
INSERT INTO anomalies (id, pipeline, type, detector, severity, status, feature, metric, dimensions,
    window_start, window_end, observed, expected, score, statistic, reason, context, detected_at, resolved_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, severity = EXCLUDED.severity,
    resolved_at = EXCLUDED.resolved_at
WHERE anomalies.status = 'open' AND EXCLUDED.status = 'resolved'
"""

COLUMNS = ("id", "pipeline", "type", "detector", "severity", "status", "feature", "metric", "dimensions",
           "window_start", "window_end", "observed", "expected", "score", "statistic", "reason", "context",
           "detected_at", "resolved_at")  # fmt: skip


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
            a.window_start, a.window_end, a.observed, a.expected, a.score, a.statistic, a.reason, Jsonb(a.context),
            a.detected_at, a.resolved_at)  # fmt: skip


def write(conn: psycopg.Connection, db_schema: str, anomalies: Sequence[Anomaly],
          checkpoint: tuple[str, int, dict[str, int], bytes] | None = None) -> None:  # fmt: skip
    """Upsert `anomalies` (in order: an anomaly's open copy before its resolved one) and save `checkpoint`
    (group id, sequence number, offsets, encoded state), all in one transaction."""
    if not anomalies and checkpoint is None:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(db_schema)))
        if anomalies:
            cur.executemany(UPSERT, [_row(a) for a in anomalies])
        if checkpoint is not None:
            group_id, seq, offsets, state = checkpoint
            cur.execute(SAVE_CHECKPOINT, (group_id, seq, Jsonb(offsets), state))
            cur.execute("DELETE FROM detector_checkpoints WHERE group_id = %s AND seq <= %s",
                        (group_id, seq - KEEP_CHECKPOINTS))  # fmt: skip


def drop_checkpoints(conn: psycopg.Connection, db_schema: str, group_id: str, after: int = -1) -> None:
    """Forget the checkpoints of `group_id` newer than `after` (all by default): they reflect batches whose
    Kafka transaction never committed, so no restart may resume from them."""
    query = sql.SQL("DELETE FROM {}.detector_checkpoints WHERE group_id = %s AND seq > %s").format(
        sql.Identifier(db_schema)
    )
    with conn.transaction():
        conn.execute(query, (group_id, after))


def checkpoints(conn: psycopg.Connection, db_schema: str, group_id: str) -> list[tuple[int, dict[str, Any], bytes]]:
    """The kept checkpoints of `group_id` as (seq, offsets, state), newest first."""
    query = sql.SQL(
        "SELECT seq, offsets, state FROM {}.detector_checkpoints WHERE group_id = %s ORDER BY seq DESC LIMIT %s"
    ).format(sql.Identifier(db_schema))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(query, (group_id, KEEP_CHECKPOINTS))
        return [(int(seq), dict(offsets), bytes(state)) for seq, offsets, state in cur.fetchall()]


def open_anomalies(conn: psycopg.Connection, db_schema: str, pipeline: str) -> list[Anomaly]:
    """Anomalies still open (re-adopted by the engine at start, so a restart does not duplicate them)."""
    query = sql.SQL("SELECT {} FROM {}.anomalies WHERE pipeline = %s AND status = 'open'").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(db_schema)
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(query, (pipeline,))
        rows = cur.fetchall()
    return [Anomaly(**{**dict(zip(COLUMNS, row, strict=True)), "id": str(row[0])}) for row in rows]
