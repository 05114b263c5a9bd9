"""The anomalies/console request counter: counted by route and status as plain ASGI; the feature lookups
pass through it uncounted (they have their own metrics)."""

from __future__ import annotations

from adnomaly.serving.app import CountAnomalyRequests
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter


def counted() -> tuple[TestClient, CollectorRegistry]:
    registry = CollectorRegistry()
    counter = Counter("requests", "by route and status", ["route", "status"], registry=registry)
    app = FastAPI()
    app.add_middleware(CountAnomalyRequests, counter=counter)

    @app.get("/v1/anomalies")
    def page(bad: bool = False) -> Response:
        return Response(status_code=400 if bad else 200)

    @app.get("/v1/anomalies/{anomaly_id}")
    def one(anomaly_id: str) -> Response:
        if anomaly_id == "boom":
            raise RuntimeError("a handler bug")
        return Response(status_code=404)

    @app.get("/v1/features/{view}")
    def lookup(view: str) -> Response:
        return Response(status_code=200)

    return TestClient(app, raise_server_exceptions=False), registry


def test_counts_anomaly_routes_by_template_and_status_and_skips_feature_lookups() -> None:
    client, registry = counted()
    assert client.get("/v1/anomalies").status_code == 200
    assert client.get("/v1/anomalies?bad=true").status_code == 400
    assert client.get("/v1/anomalies/abc").status_code == 404
    assert client.get("/v1/anomalies/boom").status_code == 500
    assert client.get("/v1/features/traffic").status_code == 200
    assert client.get("/console/missing").status_code == 404  # no such route: not counted under a raw path

    def value(route: str, status: str) -> float | None:
        return registry.get_sample_value("requests_total", {"route": route, "status": status})

    assert value("/v1/anomalies", "200") == 1 and value("/v1/anomalies", "400") == 1
    assert value("/v1/anomalies/{anomaly_id}", "404") == 1 and value("/v1/anomalies/{anomaly_id}", "500") == 1
    counted_routes = {s.labels["route"] for m in registry.collect() for s in m.samples if s.name == "requests_total"}
    assert counted_routes == {"/v1/anomalies", "/v1/anomalies/{anomaly_id}"}
