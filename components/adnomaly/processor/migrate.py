"""Versioned schema migrations for a pipeline's PostgreSQL schema, applied exactly once.

Migrations are numbered SQL files shipped with the package (`migrations/0001_events.sql`, ...). They are
written without schema names and run with `search_path` set to the pipeline's schema. Which ones ran is
recorded in `<schema>.schema_migrations` (version, name, checksum). Everything happens in one transaction
that first takes a transaction-level advisory lock derived from the schema name, so processors starting
at the same time queue up behind the first one and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

_log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migration files or the recorded history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def parse_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Migrations from (file name, SQL text) pairs: named `NNNN_name.sql`, numbered 1, 2, 3, ... without gaps."""
    migrations: list[Migration] = []
    for file_name, text in files:
        match = _FILE_NAME.match(file_name)
        if match is None:
            raise MigrationError(f"migration file {file_name!r} is not named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match["version"]), match["name"], text))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps or repeats, got {versions}")
    return migrations


def load_migrations() -> list[Migration]:
    """The migrations shipped in this package's `migrations/` directory."""
    directory = resources.files("adnomaly.processor") / "migrations"
    files = [(entry.name, entry.read_text()) for entry in directory.iterdir() if entry.name.endswith(".sql")]
    return parse_migrations(files)


def pending_migrations(available: list[Migration], applied: Mapping[int, str]) -> list[Migration]:
    """The migrations still to run, given {version: checksum} of the applied ones.

    An applied migration whose file changed since is an error (history cannot be rewritten); versions
    applied by a newer release than this one are tolerated (newer schemas stay compatible).
    """
    for migration in available:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) was changed after it was applied "
                f"(checksum {recorded[:12]} in the database, {migration.checksum[:12]} in the package)"
            )
    known = {m.version for m in available}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        _log.warning("the database has migrations %s that this release does not know; continuing", newer)
    return [m for m in available if m.version not in applied]


def advisory_lock_key(db_schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for migrating `db_schema`."""
    digest = hashlib.blake2b(f"adnomaly:migrations:{db_schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(conn: psycopg.Connection, db_schema: str, migrations: list[Migration] | None = None) -> list[int]:
    """Bring `db_schema` up to date on `conn` (in one transaction, under the advisory lock).

    Returns the versions applied by this call (empty when another process had already done the work).
    """
    available = load_migrations() if migrations is None else migrations
    schema = sql.Identifier(db_schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_lock_key(db_schema),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        todo = pending_migrations(available, {int(version): str(checksum) for version, checksum in rows})
        for migration in todo:
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            _log.info("applied migration %04d_%s to schema %s", migration.version, migration.name, db_schema)
    return [m.version for m in todo]
