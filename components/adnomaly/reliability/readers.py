"""Read back what the pipeline's stores hold: ids in PostgreSQL, rows of the lake's Parquet files on MinIO,
feature windows in PostgreSQL and Redis. Thin I/O; the comparisons are in `verify`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis as redis_py
from psycopg import sql

from adnomaly.feast.layout import entity_of
from adnomaly.features.record import entity_key
from adnomaly.reliability.verify import WindowKey, WindowValue
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.online import read_fields, read_latest
from adnomaly.sinks.features.stores import TABLE
from adnomaly.sinks.lake.layout import parse_file_name
from adnomaly.sinks.lake.storage import LakeStore

ID_COLUMN = "event_id"


def stored_ids(dsn: str, db_schema: str) -> Counter[str]:
    """Every event id in the processor's table, with how often it is there (the primary key says once)."""
    query = sql.SQL("SELECT event_id, count(*) FROM {}.events GROUP BY event_id").format(sql.Identifier(db_schema))
    with psycopg.connect(dsn) as conn:
        return Counter({row[0]: row[1] for row in conn.execute(query)})


@dataclass
class LakeContents:
    ids_by_file: dict[str, list[str]]  # lake path → the ids of its rows
    events: list[tuple[int, dict[str, Any]]]  # (event time µs, the fields features use), every row once per file
    ignored: list[str]  # paths that are not lake files (by name)


def read_lake(store: LakeStore, time_field: str, fields: list[str]) -> LakeContents:
    """Every Parquet file of the table, read once per path; events carry `fields` for recomputing features."""
    contents = LakeContents({}, [], [])
    for path in store.list_files():
        if parse_file_name(path) is None:
            contents.ignored.append(path)
            continue
        table = pq.read_table(f"{store.root}/{path}", filesystem=store.filesystem,
                              columns=[ID_COLUMN, time_field, *fields])  # fmt: skip
        contents.ids_by_file[path] = table.column(ID_COLUMN).to_pylist()
        contents.events.extend(_events(table, time_field, fields))
    return contents


def _events(table: pa.Table, time_field: str, fields: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    times = pc.cast(table.column(time_field), pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    columns = {name: table.column(name).to_pylist() for name in fields}
    for index, t_us in enumerate(times):
        yield t_us, {name: values[index] for name, values in columns.items()}


def stored_windows(dsn: str, db_schema: str) -> dict[WindowKey, WindowValue]:
    query = sql.SQL(
        "SELECT feature, entity_key, (extract(epoch FROM window_end) * 1000)::bigint, event_count, metrics FROM {}.{}"
    ).format(sql.Identifier(db_schema), sql.Identifier(TABLE))
    with psycopg.connect(dsn) as conn:
        return {(f, e, int(end)): WindowValue(int(n), metrics) for f, e, end, n, metrics in conn.execute(query)}


def online_windows(
    url: str, project: str, views: Sequence[FeatureView], now_ms: int
) -> dict[tuple[str, str], tuple[int, WindowValue]]:
    """Redis: (feature, entity key) → (window end ms, value) of every view's window in Feast's hashes of
    `project` (the keys end with its name), as the serving API would answer it at `now_ms`."""
    out: dict[tuple[str, str], tuple[int, WindowValue]] = {}
    with redis_py.Redis.from_url(url) as client:
        for key in client.scan_iter(match=f"*{project}", count=1000):
            entity = entity_of(key, project)
            if entity is None:
                continue
            for view in views:
                if set(view.dimensions) != set(entity):
                    continue
                values = client.hmget(key, read_fields(view))
                latest = read_latest(view, values, now_ms)
                if latest is not None:
                    out[(view.name, entity_key(entity, view.dimensions))] = (
                        int(values[0]), WindowValue(latest["event_count"], latest["metrics"])
                    )  # fmt: skip
    return out
