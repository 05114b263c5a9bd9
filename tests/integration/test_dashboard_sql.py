"""The anomalies dashboard's SQL (table of open anomalies, open → resolved annotations) run against a real
`anomalies` table, with Grafana's macros and variables expanded the way Grafana does."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from adnomaly.monitoring.dashboards import all_dashboards, sql_queries
from adnomaly.services.postgres import PostgresServer

from tests.integration.anomaly_data import NOW, SEEDED, seed

SCHEMA = "p_dashboard_itest"


def expand(sql: str) -> str:
    frame_from, frame_to = NOW - timedelta(hours=6), NOW + timedelta(minutes=1)
    sql = sql.replace("$__timeFrom()", f"'{frame_from.isoformat()}'::timestamptz")
    return sql.replace("$__timeTo()", f"'{frame_to.isoformat()}'::timestamptz").replace("$schema", SCHEMA)


def test_every_dashboard_sql_query_runs_and_returns_what_it_promises(postgres: PostgresServer) -> None:
    seed(postgres.dsn, SCHEMA)
    queries = dict(sql_queries(all_dashboards()["adnomaly-anomalies"]))
    assert len(queries) == 2
    with psycopg.connect(postgres.dsn) as conn:
        results = {}
        for title, sql in queries.items():
            assert "$" not in expand(sql), f"{title}: an unexpanded macro or variable"
            cur = conn.execute(expand(sql).encode())
            results[title] = ([c.name for c in cur.description or []], cur.fetchall())
    (table_columns, table), = [v for k, v in results.items() if not k.startswith("annotation")]
    assert [row[table_columns.index("id")] for row in table] == [
        a.id for a in sorted(SEEDED, key=lambda a: a.detected_at, reverse=True) if a.status == "open"]  # fmt: skip
    assert table[0][table_columns.index("key")] == "geo=US, platform=ios"
    region_columns, regions = results["annotation Anomalies open → resolved (PostgreSQL)"]
    assert region_columns == ["time", "timeend", "text", "tags"]
    assert len(regions) == len(SEEDED)  # all seeded within the last 6 hours
    resolved = next(row for row in regions if "geo=DE" in row[2])
    assert resolved[1] - resolved[0] == timedelta(minutes=6) and resolved[3] == "ctr-spike,resolved"
