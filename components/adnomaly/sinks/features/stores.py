"""The feature sink's two stores: Redis (latest window per entity) and PostgreSQL (every window).

Both writes are idempotent, so a batch replayed after a crash or a rebalance changes nothing:
- Redis: the last-write-wins Lua script of `online.py` (Feast's hash of the entity), one call per record,
  pipelined;
- PostgreSQL: `<schema>.feature_aggregates`, primary key (feature, entity_key, window_end), one
  `INSERT ... ON CONFLICT DO UPDATE` per batch that only touches rows whose values changed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import msgspec
import psycopg
import redis as redis_py
from psycopg import sql

from adnomaly.sinks.features.batch import HistoryRow
from adnomaly.sinks.features.online import WRITE_LATEST_LUA, OnlineWrite

_log = logging.getLogger(__name__)

REDIS_ERRORS: tuple[type[Exception], ...] = (redis_py.exceptions.ConnectionError, redis_py.exceptions.TimeoutError)
POSTGRES_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

TABLE = "feature_aggregates"

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    feature      text        NOT NULL,
    entity_key   text        NOT NULL,
    dimensions   jsonb       NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    metrics      jsonb       NOT NULL,
    event_count  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feature, entity_key, window_end)
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (feature, window_end);
"""

_UPSERT = """
INSERT INTO {table} AS t (feature, entity_key, dimensions, window_start, window_end, metrics, event_count)
SELECT * FROM unnest(%s::text[], %s::text[], %s::jsonb[], %s::timestamptz[], %s::timestamptz[], %s::jsonb[],
                     %s::bigint[])
ON CONFLICT (feature, entity_key, window_end) DO UPDATE
SET window_start = EXCLUDED.window_start, metrics = EXCLUDED.metrics, event_count = EXCLUDED.event_count,
    dimensions = EXCLUDED.dimensions, updated_at = now()
WHERE (t.window_start, t.metrics, t.event_count, t.dimensions)
      IS DISTINCT FROM (EXCLUDED.window_start, EXCLUDED.metrics, EXCLUDED.event_count, EXCLUDED.dimensions)
"""

_json = msgspec.json.Encoder()


def _lock_key(db_schema: str) -> int:
    digest = hashlib.blake2b(f"adnomaly:feature_aggregates:{db_schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class OnlineStore:
    """Writes the latest window of each entity to Redis."""

    def __init__(self, client: redis_py.Redis) -> None:
        self._client = client
        self._script = client.register_script(WRITE_LATEST_LUA)

    def write(self, writes: Sequence[OnlineWrite]) -> int:
        """Apply the writes in order; returns how many replaced the stored window (the rest were older)."""
        if not writes:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for write in writes:
            self._script(keys=[write.key], args=write.args(), client=pipe)
        return sum(int(result) for result in pipe.execute())

    def close(self) -> None:
        self._client.close()


class HistoryStore:
    """Upserts every window into `<db_schema>.feature_aggregates` (created when missing)."""

    def __init__(self, dsn: str, db_schema: str) -> None:
        self._dsn = dsn
        self.db_schema = db_schema
        self._conn: psycopg.Connection | None = None
        table = sql.Identifier(db_schema, TABLE)
        self._ddl = sql.SQL(_DDL).format(table=table, index=sql.Identifier(f"{TABLE}_by_window_end"))
        self._upsert = sql.SQL(_UPSERT).format(table=table)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=5, application_name="adnomaly-feature-sink"
            )
        return self._conn

    def ensure_table(self) -> None:
        """Create the schema and table once (serialised by an advisory lock across sink processes)."""
        conn = self._connection()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.db_schema),))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.db_schema)))
            conn.execute(self._ddl)

    def write(self, rows: Sequence[HistoryRow]) -> int:
        """Upsert the rows (unique by primary key) in one statement; returns the rows inserted or changed."""
        if not rows:
            return 0
        conn = self._connection()
        try:
            cursor = conn.execute(
                self._upsert,
                (
                    [r.feature for r in rows],
                    [r.entity_key for r in rows],
                    [_json.encode(r.dimensions).decode() for r in rows],
                    [r.window_start for r in rows],
                    [r.window_end for r in rows],
                    [_json.encode(r.metrics).decode() for r in rows],
                    [r.event_count for r in rows],
                ),
            )
        except POSTGRES_ERRORS:
            self.close()
            raise
        return cursor.rowcount

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
