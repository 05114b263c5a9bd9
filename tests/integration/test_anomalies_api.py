"""`GET /v1/anomalies` on the serving component (its own process) against a real PostgreSQL: filters,
stable keyset paging, 400s naming the field, index use, and a bounded schemathesis run (no 5xx)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import schemathesis
from adnomaly.anomalies.filters import AnomalyQuery
from adnomaly.anomalies.query import build_query
from adnomaly.detector import store as anomaly_store
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer

from tests.integration.anomaly_data import NOW, PIPELINE, SEEDED, LiveServing, anomaly, before_now, seeded_serving
from tests.integration.schemathesis_run import run_schemathesis

SCHEMA = "p_anomalies_api_itest"


@pytest.fixture(scope="module")
def serving(postgres: PostgresServer, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LiveServing]:  # fmt: skip
    with seeded_serving(tmp_path_factory.mktemp("serving"), postgres.dsn, redis.url, SCHEMA) as live:
        yield live
    assert postgres.password not in live.log and postgres.password not in live.config_path.read_text()


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [a["id"] for a in answer.json()["anomalies"]]


def newest_first(anomalies: list) -> list[str]:  # type: ignore[type-arg]
    return [a.id for a in sorted(anomalies, key=lambda a: (a.detected_at, a.id), reverse=True)]


def test_filters(serving: LiveServing) -> None:
    with httpx.Client(base_url=serving.base_url, timeout=10) as client:
        assert ids(client.get("/v1/anomalies")) == newest_first(SEEDED)
        assert ids(client.get("/v1/anomalies", params={"status": "open"})) == newest_first(
            [a for a in SEEDED if a.status == "open"])  # fmt: skip
        assert ids(client.get("/v1/anomalies", params={"status": "resolved", "detector": "high-bounce"})) == [
            SEEDED[4].id]  # fmt: skip
        assert ids(client.get("/v1/anomalies", params={"feature": "probes"})) == [SEEDED[5].id]
        us = client.get("/v1/anomalies", params=[("key", "geo:US"), ("key", "platform:ios")])
        assert ids(us) == [SEEDED[0].id, SEEDED[4].id]
        window = {"since": before_now(timedelta(hours=1)), "until": before_now(timedelta(minutes=15))}
        assert ids(client.get("/v1/anomalies", params=window)) == newest_first([SEEDED[1], SEEDED[3], SEEDED[5]])
        iso = (NOW - timedelta(minutes=95)).isoformat()
        assert ids(client.get("/v1/anomalies", params={"since": iso, "key": "geo:FR"})) == [SEEDED[2].id]
        first = client.get("/v1/anomalies", params={"status": "open", "limit": 1}).json()["anomalies"][0]
        assert first["detector"] == "ctr-spike" and first["method"] == "auto" and first["severity"] == "critical"
        assert first["key"] == {"geo": "US", "platform": "ios"} and first["observed"] == 0.42
        one = client.get(f"/v1/anomalies/{SEEDED[1].id}")
        assert one.status_code == 200 and one.json()["status"] == "resolved" and one.json()["resolved_at"]


def test_paging_is_stable_while_anomalies_arrive(serving: LiveServing, postgres: PostgresServer) -> None:
    seen: list[str] = []
    cursor = None
    late = anomaly("late", {"geo": "BR", "platform": "ios"}, 1)
    with httpx.Client(base_url=serving.base_url, timeout=10) as client:
        for page_number in range(10):
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/anomalies", params=params).json()
            seen += [a["id"] for a in page["anomalies"]]
            if page_number == 0:  # a newer anomaly arrives after the first page: no shift, no duplicate
                with psycopg.connect(postgres.dsn) as conn:
                    anomaly_store.write(conn, SCHEMA, [late])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute(f'DELETE FROM "{SCHEMA}".anomalies WHERE id = %s', (late.id,))
    assert seen == newest_first(SEEDED)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=closed", "status"), ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=5000", "limit"),
        ("since=yesterday", "since"), ("since=1h&until=2h", "until"), ("key=geo", "key"), ("cursor=zz", "cursor"),
        ("stauts=open", "stauts"), ("detector=", "detector"),
    ],
)  # fmt: skip
def test_bad_filters_are_400_naming_the_field(serving: LiveServing, query: str, field: str) -> None:
    answer = httpx.get(f"{serving.base_url}/v1/anomalies?{query}", timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and field in answer.json()["detail"]


def test_one_anomaly_by_id(serving: LiveServing) -> None:
    assert httpx.get(f"{serving.base_url}/v1/anomalies/not-a-uuid").json()["field"] == "anomaly_id"
    missing = httpx.get(f"{serving.base_url}/v1/anomalies/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and PIPELINE in missing.json()["detail"]


def test_the_queries_can_use_the_indexes(serving: LiveServing, postgres: PostgresServer) -> None:
    """With sequential scans priced out, each filter shape is answered from the index it was written for."""
    shapes = {
        "anomalies_open_idx": AnomalyQuery(status="open", detector="ctr-spike"),
        "anomalies_detected_idx": AnomalyQuery(since=NOW - timedelta(minutes=60), key={"geo": "US"}),
    }
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        for index, q in shapes.items():
            statement = build_query(q, SCHEMA, PIPELINE)
            plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + statement.query.as_bytes(conn),
                                                             statement.params))  # fmt: skip
            assert index in plan, plan
        paged = build_query(AnomalyQuery(after=(NOW, SEEDED[0].id)), SCHEMA, PIPELINE)
        plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + paged.query.as_bytes(conn), paged.params))
        assert "anomalies_detected_idx" in plan and "Index Cond: (detected_at <=" in plan, plan


EXAMPLES = {
    ("GET", "/v1/anomalies", schemathesis.GenerationMode.POSITIVE): 120,
    ("GET", "/v1/anomalies", schemathesis.GenerationMode.NEGATIVE): 80,
    ("GET", "/v1/anomalies/{anomaly_id}", schemathesis.GenerationMode.POSITIVE): 20,
    ("GET", "/v1/anomalies/{anomaly_id}", schemathesis.GenerationMode.NEGATIVE): 20,
}


def test_schemathesis_finds_no_server_errors(serving: LiveServing) -> None:
    started = time.monotonic()
    ran = run_schemathesis(serving.base_url, EXAMPLES)
    assert ran.get("GET /v1/anomalies positive", 0) >= 50, ran
    assert ran.get("GET /v1/anomalies negative", 0) >= 20, ran
    assert time.monotonic() - started < 180, ran
    assert "Traceback" not in serving.log, serving.log
    metrics = httpx.get(f"{serving.base_url}/metrics").text
    assert 'adnomaly_serving_anomaly_requests_total{route="/v1/anomalies",status="200"}' in metrics
    assert 'adnomaly_serving_anomaly_requests_total{route="/v1/anomalies",status="400"}' in metrics


def test_the_openapi_document_types_the_answers(serving: LiveServing, tmp_path: Path) -> None:
    document = httpx.get(f"{serving.base_url}/openapi.json").json()
    page = document["paths"]["/v1/anomalies"]["get"]["responses"]
    assert page["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnomalyPage")
    assert page["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    assert {"status", "detector", "feature", "key", "since", "until", "limit", "cursor"} == {
        p["name"] for p in document["paths"]["/v1/anomalies"]["get"]["parameters"]}  # fmt: skip
