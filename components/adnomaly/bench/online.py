"""`adnomaly bench online`: latency of the online feature API (p50/p99), as a client sees it.

Starts a real Redis in a temporary directory, writes the latest window of `--entities` entities with the
feature sink's own store, starts the API as its own process (`python -m adnomaly.serving`, uvicorn with
uvloop + httptools, as deployed), warms it up, then sends `--requests` lookups one after another over one
keep-alive connection, each for a random entity, and times each from send to the last byte received.
Every answer must be a 200 holding the entity asked for.

The ceiling, measured in the same run from this same process: the same number of bare `HGETALL`s of
the same entities' hashes, one after another on one Redis connection (redis-py), timed the same way.
`ratio` is its p99 over the API's p99: the share of a lookup's tail that Redis itself accounts for.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from adnomaly.bench.ceiling import machine_load, percentile, with_ceiling
from adnomaly.config import ComponentConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.features.record import FeatureRecord
from adnomaly.plan import events_config
from adnomaly.sinks.config import SERVING_SECTION, FeatureView, ServingConfig, render_config
from adnomaly.sinks.features.online import online_write
from adnomaly.sinks.features.stores import OnlineStore
from adnomaly.spec import parse_pipeline

VIEW = FeatureView(name="traffic_5m_by_geo_platform", dimensions=["geo", "platform"],
                   metrics=["ctr_avg", "bounce_rate_avg", "event_count"], ttl_s=3 * 86400)  # fmt: skip
PLATFORMS = ("web", "ios", "android")
WARMUP = 500


def entities(count: int) -> list[dict[str, str]]:
    per_geo = len(PLATFORMS)
    geos = [f"{chr(65 + n // 26 % 26)}{chr(65 + n % 26)}" for n in range((count + per_geo - 1) // per_geo)]
    return [{"geo": geo, "platform": platform} for geo in geos for platform in PLATFORMS][:count]


def _record(dims: dict[str, str], rng: random.Random | None = None) -> FeatureRecord:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    rng = rng or random.Random(1)
    return FeatureRecord(
        feature=VIEW.name, dimensions=dims, window_start=end - timedelta(minutes=5), window_end=end,
        metrics={"ctr_avg": rng.random() * 0.1, "bounce_rate_avg": rng.random(), "event_count": 100.0},
        event_count=100,
    )  # fmt: skip


def fill(client: Any, prefix: str, keys: list[dict[str, str]]) -> None:
    rng = random.Random(1)
    writes = [online_write(prefix, _record(dims, rng), VIEW.dimensions, VIEW.ttl_s) for dims in keys]
    OnlineStore(client).write(writes)


def start_api(root: Path, prefix: str, redis_url: str, port: int) -> Any:
    from adnomaly.services.base import ManagedProcess

    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "bench"}, "spec": {}})
    config = ComponentConfig(
        pipeline="bench", component="serving", metrics_port=None, events=events_config(pipeline),
        kafka=KafkaConfig(bootstrap_servers="127.0.0.1:1",
                          topics=TopicNames(raw="r", dlq="d", features="f", anomalies="a")),
    )  # fmt: skip
    path = root / "serving.json"
    path.write_text(render_config(config, SERVING_SECTION,
                                  ServingConfig(host="127.0.0.1", port=port, key_prefix=prefix, features=[VIEW])))
    process = ManagedProcess(
        name="serving", argv=[sys.executable, "-m", "adnomaly.serving", "--config", str(path)],
        log_path=root / "serving.log", env={**os.environ, SecretEnv.REDIS_URL: redis_url},
    )  # fmt: skip
    process.start()
    return process


def wait_ready(process: Any, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the online API did not become ready")


def measure(port: int, keys: list[dict[str, str]], requests: int, seed: int = 7) -> list[float]:
    """Seconds per request, one after another on one keep-alive connection."""
    rng = random.Random(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    paths = [f"/v1/features/{VIEW.name}?{urlencode(dims)}" for dims in keys]
    timings: list[float] = []
    try:
        for n in range(WARMUP + requests):
            index = rng.randrange(len(keys))
            started = time.perf_counter()
            connection.request("GET", paths[index])
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or json.loads(body)["entity"] != keys[index]:
                raise RuntimeError(f"unexpected answer {response.status}: {body[:200]!r}")
            if n >= WARMUP:
                timings.append(elapsed)
    finally:
        connection.close()
    return timings


def measure_redis(client: Any, keys: list[str], requests: int, seed: int = 7) -> list[float]:
    """Seconds per bare HGETALL of a random one of `keys`, one after another on one connection."""
    rng = random.Random(seed)
    timings: list[float] = []
    for n in range(WARMUP + requests):
        key = keys[rng.randrange(len(keys))]
        started = time.perf_counter()
        fields = client.hgetall(key)
        elapsed = time.perf_counter() - started
        if not fields:
            raise RuntimeError(f"Redis has no hash {key!r}")
        if n >= WARMUP:
            timings.append(elapsed)
    return timings


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly.services.base import free_port
    from adnomaly.services.redis import RedisServer

    load = machine_load()
    root = Path(tempfile.mkdtemp(prefix="adnomaly-bench-online-"))
    redis = RedisServer(root / "redis")
    api = None
    try:
        redis.start()
        prefix = "adnomaly:bench"
        keys = entities(args.entities)
        with redis.client() as client:
            fill(client, prefix, keys)
        port = free_port()
        api = start_api(root, prefix, redis.url, port)
        wait_ready(api, port)
        started = time.perf_counter()
        timings = sorted(measure(port, keys, args.requests))
        seconds = time.perf_counter() - started
        with redis.client() as client:
            redis_keys = [write.key for write in (online_write(prefix, _record(dims), VIEW.dimensions, VIEW.ttl_s)
                                                  for dims in keys)]  # fmt: skip
            bare = [t * 1000 for t in measure_redis(client, redis_keys, args.requests)]
    finally:
        if api is not None:
            api.stop(timeout=10)
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    ms = [t * 1000 for t in timings]
    return {
        "requests": args.requests,
        "entities": len(keys),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p90_ms": round(percentile(ms, 0.90), 3),
        **with_ceiling(
            "p99_ms", round(percentile(ms, 0.99), 3), round(percentile(bare, 0.99), 3), higher_is_better=False
        ),
        "max_ms": round(ms[-1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "requests_per_second": round(args.requests / seconds),
        "ceiling_p50_ms": round(percentile(bare, 0.50), 3),
        **load,
        "load_average_1m_after": machine_load()["load_average_1m"],
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "online", help="p50/p99 latency of the online feature API (HTTP → Redis)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--requests", type=int, default=10_000, help="timed lookups (after a warm-up)")
    parser.add_argument("--entities", type=int, default=1000, help="entities stored in Redis")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
