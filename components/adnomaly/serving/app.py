"""`python -m adnomaly.serving --config PATH`: the online feature API.

    GET /v1/features/{view}?geo=US&platform=ios   → 200 the latest window of that entity
                                                    400 missing/unknown/repeated dimensions (named)
                                                    404 unknown view, or no (unexpired) data for the entity
    GET /healthz   the process is up          GET /readyz   Redis answers (503 otherwise)
    GET /metrics   Prometheus

Reads the component config's `serving` section (ServingConfig); the Redis URL comes from
$ADNOMALY_REDIS_URL (never from the config or the command line). A 200 answer looks like
    {"view": "traffic_5m", "entity": {"geo": "US", "platform": "ios"}, "window_start": "...Z",
     "window_end": "...Z", "event_count": 412, "metrics": {"ctr_avg": 0.031, ...}}
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import redis.asyncio as redis_async
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from adnomaly.config import SecretEnv, secret_from_env
from adnomaly.http_server import serve_until_drained
from adnomaly.observability import serve_metrics
from adnomaly.serving.lookup import BadLookup, resolve
from adnomaly.sinks.config import SERVING_SECTION, ServingConfig, load_section
from adnomaly.sinks.features.online import read_latest

_log = logging.getLogger("adnomaly.serving")

UNKNOWN_VIEW = "_unknown"
REQUEST_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class ServingMetrics:
    requests: Counter
    seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServingMetrics:
        return cls(
            requests=Counter(
                "adnomaly_serving_requests_total", "Feature lookups by view and HTTP status", ["view", "status"],
                registry=registry,
            ),
            seconds=Histogram(
                "adnomaly_serving_request_seconds", "Time to answer a feature lookup, by view", ["view"],
                buckets=REQUEST_BUCKETS, registry=registry,
            ),
        )  # fmt: skip


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app(config: ServingConfig, redis_url: str, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    views = {view.name: view for view in config.features}
    metrics = ServingMetrics.create(registry)
    state: dict[str, redis_async.Redis] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        client = redis_async.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, max_connections=64, health_check_interval=30
        )
        state["redis"] = client
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="Adnomaly online features", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    async def get_features(request: Request) -> Response:
        started = time.perf_counter()
        view: str = request.path_params["view"]
        label = view if view in views else UNKNOWN_VIEW
        try:
            lookup = resolve(views, config.key_prefix, view, request.query_params.multi_items())
            stored = read_latest(await state["redis"].hgetall(lookup.key))
            if stored is None:
                raise BadLookup(404, f"no current values of `{view}` for {lookup.entity}")
            status, body = 200, {"view": view, "entity": lookup.entity, **stored}
        except BadLookup as exc:
            status, body = exc.status, {"detail": exc.detail}
        except redis_async.RedisError as exc:
            _log.warning("Redis lookup failed: %s", exc)
            status, body = 503, {"detail": "the online store is unavailable"}
        metrics.requests.labels(label, str(status)).inc()
        metrics.seconds.labels(label).observe(time.perf_counter() - started)
        return _json(status, body)

    # A plain Starlette route: the hot path skips FastAPI's parameter machinery (it validates by itself).
    app.add_route("/v1/features/{view}", get_features, methods=["GET"])

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await state["redis"].ping()
        except redis_async.RedisError as exc:
            return _json(503, {"status": "unavailable", "detail": f"Redis: {type(exc).__name__}"})
        return _json(200, {"status": "ready"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.serving", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, section = load_section(args.config, SERVING_SECTION, ServingConfig)
    redis_url = secret_from_env(SecretEnv.REDIS_URL)
    assert redis_url is not None
    app = create_app(section, redis_url)
    if config.metrics_port and config.metrics_port != section.port:
        serve_metrics(config.metrics_port)  # /metrics is on the API port too; this is where backends scrape
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=section.host, port=section.port, loop="uvloop", http="httptools", lifespan="on",
            log_level="warning", access_log=False, server_header=False, timeout_graceful_shutdown=10,
        )
    )  # fmt: skip
    _log.info(
        "online features of pipeline %s on %s:%d (%d views)", config.pipeline, section.host, section.port,
        len(section.features),
    )  # fmt: skip
    return serve_until_drained(server)
