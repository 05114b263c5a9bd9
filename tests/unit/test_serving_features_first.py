"""The feature lookups' front door (`adnomaly.serving.features.FeaturesFirst`) in front of the serving app.

A `GET /v1/features/<view>` is answered by the front door without reaching FastAPI; every other request
reaches FastAPI; and what the front door answers is byte for byte what FastAPI's route (the same lookups object)
answers, errors included. Redis is an in-memory fake holding what the feature sink writes (Feast's layout).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis.asyncio as redis_async
from adnomaly.features.record import FeatureRecord
from adnomaly.serving.app import create_app
from adnomaly.serving.features import FeaturesFirst
from adnomaly.sinks.config import FeatureView, ServingConfig
from adnomaly.sinks.features.online import feast_targets, online_write
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

PROJECT = "unit"
TRAFFIC = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg"], ttl_s=3600)
US = {"geo": "US", "platform": "ios"}


class FakeRedis:
    """HMGET over hashes written as the sink writes them; `down` makes it fail as an unreachable Redis does."""

    def __init__(self) -> None:
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}
        self.down = False
        self.corrupt = False

    def write(self, view: FeatureView, dims: dict[str, str], end: datetime, value: float) -> None:
        record = FeatureRecord(feature=view.name, dimensions=dims, window_start=end - timedelta(minutes=5),
                               window_end=end, metrics={view.metrics[0]: value}, event_count=7)  # fmt: skip
        write = online_write(feast_targets({view.name: view}, PROJECT)[view.name], record)
        self.hashes.setdefault(write.key, {}).update(dict(write.fields))

    async def hmget(self, key: bytes, fields: list[bytes]) -> list[bytes | None]:
        if self.down:
            raise redis_async.ConnectionError("Connection refused")
        if self.corrupt:
            return [b"not a number"] * len(fields)
        stored = self.hashes.get(key, {})
        return [stored.get(field) for field in fields]


class Spy:
    """Wraps FastAPI to record which paths reached it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
def served() -> Iterator[tuple[FeaturesFirst, FakeRedis, CollectorRegistry]]:
    registry = CollectorRegistry()
    config = ServingConfig(host="127.0.0.1", port=8090, feast_project=PROJECT, features=[TRAFFIC])
    api = create_app(config, "redis://127.0.0.1:1/0", registry=registry)
    fake = FakeRedis()
    fake.write(TRAFFIC, US, datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1), 0.25)
    fake.write(TRAFFIC, {"geo": "DE", "platform": "ios"}, datetime(2020, 1, 1, tzinfo=UTC), 0.5)  # expired
    with TestClient(api):  # runs the lifespan, which opens the (real) client; the fake replaces it
        cast(dict[str, Any], api.lookups.state)["redis"] = fake
        yield api, fake, registry


LOOKUPS = [
    "/v1/features/traffic?geo=US&platform=ios",
    "/v1/features/traffic?platform=ios&geo=US",
    "/v1/features/traffic?geo=US",
    "/v1/features/traffic",
    "/v1/features/traffic?geo=US&platform=ios&os=17&a=b",
    "/v1/features/traffic?geo=US&geo=DE&platform=ios",
    "/v1/features/traffic?geo=&platform=ios",
    "/v1/features/traffic?geo&platform=ios",
    "/v1/features/traffic?geo=U%20S&platform=i+os",
    "/v1/features/traffic?geo=DE&platform=ios",
    "/v1/features/traffic?geo=FR&platform=ios",
    "/v1/features/nope?geo=US",
]


def test_lookups_are_answered_in_front_of_fastapi_as_fastapis_route_answers_them(
    served: tuple[FeaturesFirst, FakeRedis, CollectorRegistry],
) -> None:
    api, fake, _ = served
    spy = Spy(api.app)
    front = TestClient(FeaturesFirst(spy, api.lookups))
    behind = TestClient(api.app)  # FastAPI alone: its route for the same path, the same lookups object
    for path in LOOKUPS:
        mine, theirs = front.get(path), behind.get(path)
        assert (mine.status_code, mine.headers.items(), mine.content) == (
            theirs.status_code, theirs.headers.items(), theirs.content,
        ), path  # fmt: skip
    fake.down = True
    down = front.get(LOOKUPS[0])
    assert down.status_code == 503 and down.json() == {"detail": "the online store is unavailable"}
    assert (down.headers.items(), down.content) == (behind.get(LOOKUPS[0]).headers.items(), down.content)
    assert spy.paths == []  # no lookup reached FastAPI


def test_the_answers_are_todays(served: tuple[FeaturesFirst, FakeRedis, CollectorRegistry]) -> None:
    api, _, registry = served
    client = TestClient(api)
    found = client.get("/v1/features/traffic", params={"platform": "ios", "geo": "US"})
    assert found.status_code == 200 and found.headers["content-type"] == "application/json"
    body = found.json()
    assert body["view"] == "traffic" and body["entity"] == US and body["metrics"] == {"ctr_avg": 0.25}
    assert list(body) == ["view", "entity", "window_start", "window_end", "event_count", "metrics"]
    repeated = client.get("/v1/features/traffic?geo=US&geo=DE&platform=ios")
    assert repeated.status_code == 400
    assert repeated.json() == {"detail": "dimensions given more than once: geo (view `traffic` is keyed by geo, "
                                         "platform)"}  # fmt: skip
    expired = client.get("/v1/features/traffic?geo=DE&platform=ios")
    assert expired.status_code == 404 and "no current values of `traffic`" in expired.json()["detail"]
    assert client.get("/v1/features/nope").json() == {"detail": "unknown feature view `nope`; known views: traffic"}

    def count(view: str, status: str) -> float | None:
        return registry.get_sample_value("adnomaly_serving_requests_total", {"view": view, "status": status})

    assert count("traffic", "200") == 1 and count("traffic", "400") == 1 and count("traffic", "404") == 1
    assert count("_unknown", "404") == 1
    assert registry.get_sample_value("adnomaly_serving_request_seconds_count", {"view": "traffic"}) == 3


def test_everything_else_reaches_fastapi(served: tuple[FeaturesFirst, FakeRedis, CollectorRegistry]) -> None:
    api, _, _ = served
    spy = Spy(api.app)
    client = TestClient(FeaturesFirst(spy, api.lookups), follow_redirects=False)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/features/").status_code == 404  # no view: not the route
    assert client.get("/v1/features/traffic/x?geo=US").json() == {"detail": "Not Found"}
    assert client.get("/v1/features/traffic/?geo=US&platform=ios").status_code == 307  # FastAPI's redirect
    assert client.head("/v1/features/traffic?geo=US&platform=ios").status_code == 200  # FastAPI's route
    assert client.post("/v1/features/traffic?geo=US&platform=ios").status_code == 405
    assert "/v1/features/{view}" not in client.get("/openapi.json").json()["paths"]
    assert spy.paths == ["/healthz", "/v1/features/", "/v1/features/traffic/x", "/v1/features/traffic/",
                         "/v1/features/traffic", "/v1/features/traffic", "/openapi.json"]  # fmt: skip


def test_an_unexpected_error_is_starlettes_plain_500(
    served: tuple[FeaturesFirst, FakeRedis, CollectorRegistry],
) -> None:
    api, fake, registry = served
    fake.corrupt = True  # read_latest cannot parse the stored window: a bug, not a 4xx
    with pytest.raises(ValueError):
        TestClient(api).get(LOOKUPS[0])
    answer = TestClient(api, raise_server_exceptions=False).get(LOOKUPS[0])
    behind = TestClient(api.app, raise_server_exceptions=False).get(LOOKUPS[0])
    assert (answer.status_code, answer.text) == (500, "Internal Server Error")
    assert (answer.headers.items(), answer.content) == (behind.headers.items(), behind.content)
    assert registry.get_sample_value("adnomaly_serving_requests_total", {"view": "traffic", "status": "500"}) is None
