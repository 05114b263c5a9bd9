"""The storage layer: a pipeline's events in PostgreSQL, written in idempotent batches.

A batch is a list of pre-formatted COPY text rows (`event_id, payload, kafka_partition, kafka_offset`, see
`batch.copy_row`). `EventStore.write` copies them into a per-connection temporary staging table and moves
them into `<schema>.events` with `INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING`, all in one
transaction, so a batch written twice (after a crash, a retry or a rebalance) stores every event once.
The event time is read from the payload's time field inside that statement; the codec has already
checked it is an RFC 3339 timestamp, which PostgreSQL parses identically, so Python never formats it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from adnomaly.processor.migrate import migrate

_log = logging.getLogger(__name__)

STAGING_TABLE = "adnomaly_staging"

# Errors that mean "the database is unreachable or busy right now": reconnect and retry the same batch.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
# Errors that mean "PostgreSQL refuses some row of this batch" (bad data, a violated constraint): isolate
# the row and dead-letter it. (Duplicate ids are no error: ON CONFLICT DO NOTHING skips them.)
ROW_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError)

_CONNECT_OPTIONS: dict[str, object] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "application_name": "adnomaly-processor",
}


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit, **_CONNECT_OPTIONS)  # type: ignore[arg-type]


class EventStore:
    """One connection to PostgreSQL that writes batches of events into `<db_schema>.events`."""

    def __init__(self, dsn: str, db_schema: str, time_field: str) -> None:
        self._dsn = dsn
        self.db_schema = db_schema
        self._conn: psycopg.Connection | None = None
        events = sql.Identifier(db_schema, "events")
        staging = sql.Identifier(STAGING_TABLE)
        self._create_staging = sql.SQL(
            'CREATE TEMPORARY TABLE IF NOT EXISTS {} (event_id text COLLATE "C" NOT NULL, payload jsonb NOT NULL,'
            " kafka_partition integer, kafka_offset bigint) ON COMMIT DELETE ROWS"
        ).format(staging)
        self._copy = sql.SQL("COPY {} (event_id, payload, kafka_partition, kafka_offset) FROM STDIN").format(staging)
        self._insert = sql.SQL(
            "INSERT INTO {events} (event_id, event_time, payload, kafka_partition, kafka_offset)"
            " SELECT event_id, (payload ->> {time_field})::timestamptz, payload, kafka_partition, kafka_offset"
            " FROM {staging} ON CONFLICT (event_id) DO NOTHING"
        ).format(events=events, staging=staging, time_field=sql.Literal(time_field))
        # Run only for a batch with rows that were not new, so a batch without duplicates pays nothing for it.
        self._record_duplicates = sql.SQL(
            "INSERT INTO {duplicates} (kafka_partition, kafka_offset, event_id)"
            " SELECT s.kafka_partition, s.kafka_offset, s.event_id FROM {staging} s JOIN {events} e USING (event_id)"
            " WHERE s.kafka_partition IS NOT NULL AND s.kafka_offset IS NOT NULL"
            " AND (e.kafka_partition, e.kafka_offset) IS DISTINCT FROM (s.kafka_partition, s.kafka_offset)"
            " ON CONFLICT DO NOTHING"
        ).format(duplicates=sql.Identifier(db_schema, "duplicates"), staging=staging, events=events)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        """(Re)connect and create this session's staging table."""
        self.close()
        conn = connect(self._dsn)
        try:
            conn.execute(self._create_staging)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def migrate(self) -> list[int]:
        """Apply pending schema migrations (see `migrate.migrate`); returns the versions this call applied."""
        with connect(self._dsn) as conn:
            return migrate(conn, self.db_schema)

    def write(self, rows: Sequence[bytes]) -> int:
        """Store a batch of COPY rows in one transaction; returns how many were new (the rest were duplicates).

        Raises a TRANSIENT_ERRORS exception when the database is unreachable (the connection is then
        dropped and the next call reconnects) and a ROW_ERRORS one when PostgreSQL rejects a row.
        """
        if not rows:
            return 0
        if not self.connected:
            self.connect()
        conn = self._conn
        assert conn is not None
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(self._copy) as copy:
                    copy.write(b"".join(rows))
                cur.execute(self._insert)
                new = cur.rowcount
                if new < len(rows):  # some ids were stored already: record the re-sent ones (see 0002)
                    cur.execute(self._record_duplicates)
                return new
        except TRANSIENT_ERRORS:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def write_isolating(
    write: Callable[[Sequence[bytes]], int], rows: Sequence[bytes]
) -> tuple[int, list[tuple[int, Exception]]]:
    """Write `rows`; if PostgreSQL rejects the batch, bisect it to find the rows it refuses.

    Returns (rows newly stored, [(index of a refused row, its error)]). Transient errors propagate.
    Halves are separate transactions, which is fine: writes are idempotent and offsets are committed
    only once the whole batch is done.
    """
    try:
        return write(rows), []
    except ROW_ERRORS as exc:
        if len(rows) == 1:
            return 0, [(0, exc)]
    middle = len(rows) // 2
    stored_low, refused_low = write_isolating(write, rows[:middle])
    stored_high, refused_high = write_isolating(write, rows[middle:])
    return stored_low + stored_high, refused_low + [(i + middle, e) for i, e in refused_high]


# -- read API (local backend, status, tests) ----------------------------------------------------------


def count_stored(dsn: str, db_schema: str) -> int:
    """How many events `db_schema` holds (0 when its tables do not exist yet)."""
    with connect(dsn) as conn:
        if not _events_table_exists(conn, db_schema):
            return 0
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db_schema, "events"))).fetchone()
        return int(row[0]) if row else 0


def count_duplicates(dsn: str, db_schema: str) -> int:
    """How many re-sent events (an id already stored, from another position of the raw topic) `db_schema` has
    recorded (0 before the processor's migrations ran)."""
    with connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (sql.Identifier(db_schema, "duplicates").as_string(conn),)
                           ).fetchone()  # fmt: skip
        if row is None or row[0] is None:
            return 0
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db_schema, "duplicates"))
        found = conn.execute(query).fetchone()
        return int(found[0]) if found else 0


def stored_ids(dsn: str, db_schema: str) -> list[str]:
    """Every stored event id, sorted (a list, so that a test can also see that none repeats)."""
    with connect(dsn) as conn:
        if not _events_table_exists(conn, db_schema):
            return []
        query = sql.SQL("SELECT event_id FROM {} ORDER BY event_id").format(sql.Identifier(db_schema, "events"))
        return [str(row[0]) for row in conn.execute(query)]


def _events_table_exists(conn: psycopg.Connection, db_schema: str) -> bool:
    name = sql.Identifier(db_schema, "events").as_string(conn)
    row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row is not None and row[0] is not None
