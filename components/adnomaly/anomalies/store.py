"""Runs the statements of `adnomaly.anomalies.query` on PostgreSQL (thin I/O, read only).

One connection, opened on first use and again after it broke, shared under a lock: the API's readers are
few (people and dashboards), and it keeps the serving component at one PostgreSQL connection. A table that
does not exist yet (no detector has written, no feature sink has run) reads as empty, not as an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from adnomaly.anomalies.filters import AnomalyQuery
from adnomaly.anomalies.models import AnomalyOut, AnomalyPage
from adnomaly.anomalies.query import (
    Statement,
    build_counts,
    build_get,
    build_query,
    build_series,
    build_throughput,
    build_totals,
    to_page,
)

T = TypeVar("T")
UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)


class AnomalyStore:
    """The anomalies (and feature history) of one pipeline, in its schema `db_schema`."""

    def __init__(self, dsn: str, db_schema: str, pipeline: str, application_name: str = "adnomaly-anomalies"):
        self._dsn = dsn
        self._application_name = application_name
        self.db_schema = db_schema
        self.pipeline = pipeline
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _run(self, statement: Statement, read: Callable[[psycopg.Cursor[Any]], T], missing: T) -> T:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=5, application_name=self._application_name
                )
            try:
                with self._conn.cursor() as cur:
                    cur.execute(statement.query, statement.params)
                    return read(cur)
            except errors.UndefinedTable:
                return missing
            except UNAVAILABLE:
                self.close_unlocked()
                raise

    def page(self, q: AnomalyQuery) -> AnomalyPage:
        return self._run(build_query(q, self.db_schema, self.pipeline), lambda cur: to_page(cur.fetchall(), q.limit),
                         AnomalyPage(anomalies=[], next_cursor=None))  # fmt: skip

    def get(self, anomaly_id: str) -> AnomalyOut | None:
        page = self._run(build_get(anomaly_id, self.db_schema, self.pipeline), lambda cur: to_page(cur.fetchall(), 1),
                         AnomalyPage(anomalies=[], next_cursor=None))  # fmt: skip
        return page.anomalies[0] if page.anomalies else None

    def series(self, feature: str, entity_key: str, metric: str, start: datetime, end: datetime
               ) -> list[tuple[datetime, float | None, int]]:  # fmt: skip
        statement = build_series(self.db_schema, feature, entity_key, metric, start, end)
        return self._run(statement, lambda cur: [(r[0], r[1], int(r[2])) for r in cur.fetchall()], [])

    def counts(self, since: datetime) -> tuple[int, int]:
        """(open anomalies, anomalies detected since `since`)."""
        row = self._run(build_counts(self.db_schema, self.pipeline, since), lambda cur: cur.fetchone(), None)
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def totals(self) -> tuple[int, int]:
        """(anomalies ever opened, anomalies resolved)."""
        row = self._run(build_totals(self.db_schema, self.pipeline), lambda cur: cur.fetchone(), None)
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def events_since(self, since: datetime) -> int:
        row = self._run(build_throughput(self.db_schema, since), lambda cur: cur.fetchone(), None)
        return int(row[0]) if row else 0

    def close_unlocked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()
