"""Processor storage, pure parts: migration files and history, advisory-lock keys, bad-row isolation."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest
from adnomaly.processor.migrate import (
    Migration,
    MigrationError,
    advisory_lock_key,
    load_migrations,
    parse_migrations,
    pending_migrations,
)
from adnomaly.processor.store import write_isolating


def test_shipped_migrations_create_the_events_table_with_its_time_index() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    first = migrations[0]
    assert first.name == "events"
    text = " ".join(first.sql.split())
    assert "CREATE TABLE events" in text and "PRIMARY KEY" in text
    assert "ON events (event_time)" in text


def test_parse_migrations_orders_by_version() -> None:
    parsed = parse_migrations([("0002_b.sql", "B"), ("0001_a.sql", "A")])
    assert [(m.version, m.name, m.sql) for m in parsed] == [(1, "a", "A"), (2, "b", "B")]


@pytest.mark.parametrize(
    "files",
    [
        [("1_a.sql", "")],  # not four digits
        [("0001_A.sql", "")],  # upper case
        [("0001_a.txt", "")],
        [("0002_a.sql", "")],  # does not start at 1
        [("0001_a.sql", ""), ("0003_c.sql", "")],  # gap
        [("0001_a.sql", ""), ("0001_b.sql", "")],  # repeat
    ],
)
def test_parse_migrations_rejects_bad_names_gaps_and_repeats(files: list[tuple[str, str]]) -> None:
    with pytest.raises(MigrationError):
        parse_migrations(files)


def test_pending_migrations() -> None:
    m1, m2 = Migration(1, "a", "A"), Migration(2, "b", "B")
    assert pending_migrations([m1, m2], {}) == [m1, m2]
    assert pending_migrations([m1, m2], {1: m1.checksum}) == [m2]
    assert pending_migrations([m1, m2], {1: m1.checksum, 2: m2.checksum}) == []
    assert pending_migrations([m1], {1: m1.checksum, 2: "from a newer release"}) == []
    with pytest.raises(MigrationError, match="changed after it was applied"):
        pending_migrations([m1, m2], {1: "something else"})


def test_advisory_lock_key_is_a_stable_signed_64_bit_value_per_schema() -> None:
    key = advisory_lock_key("p_clickstream")
    assert key == advisory_lock_key("p_clickstream")
    assert -(2**63) <= key < 2**63
    assert key != advisory_lock_key("p_other")


def test_write_isolating_finds_the_rows_postgres_refuses() -> None:
    calls: list[int] = []

    def write(rows: Sequence[bytes]) -> int:
        calls.append(len(rows))
        if any(r.startswith(b"bad") for r in rows):
            raise psycopg.DataError("invalid input syntax")
        return len(rows)

    rows = [b"ok0", b"bad1", b"ok2", b"ok3", b"ok4", b"bad5", b"ok6"]
    stored, refused = write_isolating(write, rows)
    assert stored == 5
    assert [index for index, _ in refused] == [1, 5]
    assert all(isinstance(error, psycopg.DataError) for _, error in refused)
    assert write_isolating(write, [b"ok"]) == (1, [])


def test_write_isolating_lets_transient_errors_through() -> None:
    def write(rows: Sequence[bytes]) -> int:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(psycopg.OperationalError):
        write_isolating(write, [b"a", b"b"])
