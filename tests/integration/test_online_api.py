"""The online feature API (`python -m adnomaly.serving`) against a real Redis.

The values are written with the feature sink's own store (the Lua last-write-wins script, Feast's layout),
out of order, so what the API answers is what the sink would have left there.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from adnomaly.config import ComponentConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.feast.layout import redis_key
from adnomaly.features.record import FeatureRecord
from adnomaly.plan import events_config
from adnomaly.services.base import ManagedProcess, free_port
from adnomaly.services.redis import RedisServer
from adnomaly.sinks.config import SERVING_SECTION, FeatureView, ServingConfig, render_config
from adnomaly.sinks.features.online import feast_targets, online_write, read_fields
from adnomaly.sinks.features.stores import OnlineStore
from adnomaly.spec import parse_pipeline

pytestmark = pytest.mark.integration

PIPELINE = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "online-itest"},
                           "spec": {"events": {"schema": "clickstream"}}})  # fmt: skip
TRAFFIC = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg"], ttl_s=3600)
LATENCY = FeatureView(name="latency", dimensions=["region"], metrics=["p99"], ttl_s=3600)


def minute_now() -> datetime:
    """The current minute, taken by each test: a module-level time goes stale over a long session, and the
    views' TTLs count from it."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


class ApiProcess:
    def __init__(
        self, workdir: Path, project: str, redis_url: str, features: list[FeatureView] | None = None
    ) -> None:
        self.port = free_port()
        config = ComponentConfig(
            pipeline="online-itest", component="serving",
            kafka=KafkaConfig(bootstrap_servers="127.0.0.1:1", topics=TopicNames(raw="r", dlq="d", features="f",
                                                                                 anomalies="a")),
            events=events_config(PIPELINE), metrics_port=None,
        )  # fmt: skip
        section = ServingConfig(host="127.0.0.1", port=self.port, feast_project=project,
                                features=features or [TRAFFIC, LATENCY])
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "serving.json"
        path.write_text(render_config(config, SERVING_SECTION, section))
        self.process = ManagedProcess(
            name="serving",
            argv=[sys.executable, "-m", "adnomaly.serving", "--config", str(path)],
            log_path=workdir / "serving.log",
            env={**os.environ, SecretEnv.REDIS_URL: redis_url},
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiProcess:
        self.process.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.check_alive()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the API did not come up:\n{self.process.log_path.read_text()}")


@pytest.fixture
def apis() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        api.process.stop(timeout=10)


def write(
    redis: RedisServer, project: str, view: FeatureView, dims: dict[str, str], end: datetime, value: float | None
) -> None:
    record = FeatureRecord(feature=view.name, dimensions=dims, window_start=end - timedelta(minutes=5), window_end=end,
                           metrics={view.metrics[0]: value}, event_count=int((value or 0) * 100))  # fmt: skip
    OnlineStore(redis.client()).write([online_write(feast_targets({view.name: view}, project)[view.name], record)])


def test_latest_values_and_clear_errors(redis: RedisServer, tmp_path: Path, apis: list[ApiProcess]) -> None:
    now = minute_now()
    project = f"online_{time.time_ns()}"
    us = {"geo": "US", "platform": "ios"}
    write(redis, project, TRAFFIC, us, now - timedelta(minutes=1), 0.4)
    write(redis, project, TRAFFIC, us, now - timedelta(minutes=3), 0.1)  # older, arrives later: ignored
    write(redis, project, LATENCY, {"region": "eu"}, now - timedelta(minutes=2), 120.5)
    api = ApiProcess(tmp_path, project, redis.url).start()
    apis.append(api)
    with httpx.Client(base_url=api.base, timeout=5) as client:
        answer = client.get("/v1/features/traffic", params={"platform": "ios", "geo": "US"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "view": "traffic",
            "entity": {"geo": "US", "platform": "ios"},
            "window_start": (now - timedelta(minutes=6)).isoformat().replace("+00:00", "Z"),
            "window_end": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "event_count": 40,
            "metrics": {"ctr_avg": 0.4},
        }
        assert client.get("/v1/features/latency?region=eu").json()["metrics"] == {"p99": 120.5}
        # The API keeps answers while Redis tracks their keys (adnomaly.serving.tracked_replies): a second
        # lookup is served from them, and a newer window reaches the lookup right after it is written.
        assert client.get("/v1/features/latency?region=eu").json()["metrics"] == {"p99": 120.5}
        write(redis, project, LATENCY, {"region": "eu"}, now, 99.0)
        assert client.get("/v1/features/latency?region=eu").json()["metrics"] == {"p99": 99.0}

        missing = client.get("/v1/features/traffic", params={"geo": "US"})
        assert missing.status_code == 400 and "missing dimensions: platform" in missing.json()["detail"]
        unknown = client.get("/v1/features/traffic", params={"geo": "US", "platform": "ios", "os": "17"})
        assert unknown.status_code == 400 and "unknown dimensions: os" in unknown.json()["detail"]
        repeated = client.get("/v1/features/traffic?geo=US&geo=DE&platform=ios")
        assert repeated.status_code == 400 and "more than once: geo" in repeated.json()["detail"]
        no_view = client.get("/v1/features/nope", params={"geo": "US"})
        assert no_view.status_code == 404 and "unknown feature view `nope`" in no_view.json()["detail"]
        no_data = client.get("/v1/features/traffic", params={"geo": "FR", "platform": "ios"})
        assert no_data.status_code == 404 and "no current values" in no_data.json()["detail"]

        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready"}
        metrics = client.get("/metrics").text
        assert 'adnomaly_serving_requests_total{status="200",view="traffic"} 1.0' in metrics
        assert 'adnomaly_serving_cache_lookups_total{result="hit"} 1.0' in metrics
        assert 'adnomaly_serving_cache_lookups_total{result="miss"} 4.0' in metrics  # 3 firsts, 1 after the change
        assert 'adnomaly_serving_requests_total{status="404",view="_unknown"} 1.0' in metrics
        assert "adnomaly_serving_request_seconds_bucket" in metrics
    assert redis.password not in api.process.log_path.read_text()
    api.process.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert api.process.process.wait(timeout=20) == 0  # type: ignore[union-attr]


def test_the_views_ttl_holds_in_a_hash_another_view_keeps_alive(
    redis: RedisServer, tmp_path: Path, apis: list[ApiProcess]
) -> None:
    """Views of the same dimensions share Feast's hash, whose expiry only moves later: the API answers a window
    until its view's TTL after its end, as an expired hash of its own did, whatever the other view keeps."""
    now = minute_now()
    project = f"online_ttl_{time.time_ns()}"
    short = FeatureView(name="traffic_short", dimensions=["platform", "geo"], metrics=["ctr_avg"], ttl_s=120)
    us = {"geo": "US", "platform": "ios"}
    write(redis, project, TRAFFIC, us, now - timedelta(minutes=1), 0.4)  # keeps the shared hash alive
    write(redis, project, short, us, now - timedelta(minutes=3), 0.7)  # expired 1 minute ago
    with redis.client() as client:
        assert client.hmget(redis_key(project, us), read_fields(short))[0] is not None  # still in the hash
    write(redis, project, short, {"geo": "DE", "platform": "ios"}, now + timedelta(minutes=1), None)
    api = ApiProcess(tmp_path, project, redis.url, features=[TRAFFIC, short]).start()
    apis.append(api)
    with httpx.Client(base_url=api.base, timeout=5) as client:
        expired = client.get("/v1/features/traffic_short", params=us)
        assert expired.status_code == 404 and "no current values" in expired.json()["detail"]
        assert client.get("/v1/features/traffic", params=us).json()["metrics"] == {"ctr_avg": 0.4}
        undefined = client.get("/v1/features/traffic_short", params={"geo": "DE", "platform": "ios"})
        assert undefined.status_code == 200 and undefined.json()["metrics"] == {"ctr_avg": None}  # null stays null


def test_redis_down_is_not_ready_and_lookups_answer_503(
    make_redis: Any, tmp_path: Path, apis: list[ApiProcess]
) -> None:
    now = minute_now()
    redis = make_redis()
    project = "online_outage"
    write(redis, project, LATENCY, {"region": "us"}, now - timedelta(minutes=1), 9.0)
    api = ApiProcess(tmp_path, project, redis.url).start()
    apis.append(api)
    with httpx.Client(base_url=api.base, timeout=10) as client:
        assert client.get("/v1/features/latency?region=us").status_code == 200
        redis.kill()
        assert client.get("/readyz").status_code == 503
        down = client.get("/v1/features/latency?region=us")
        assert down.status_code == 503 and down.json() == {"detail": "the online store is unavailable"}
        assert client.get("/healthz").status_code == 200
        redis.start()
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after Redis came back"
            time.sleep(0.2)
        assert client.get("/v1/features/latency?region=us").json()["metrics"] == {"p99": 9.0}
