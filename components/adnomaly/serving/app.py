"""`python -m adnomaly.serving --config PATH`: the online feature API, the anomalies API and the console.

    GET /v1/features/{view}?geo=US&platform=ios   → 200 the latest window of that entity
                                                    400 missing/unknown/repeated dimensions (named)
                                                    404 unknown view, or no (unexpired) data for the entity
    GET /v1/anomalies?status=open&since=1h&key=geo:US   → 200 a page of anomalies, newest first
                                                    400 a bad filter ({"detail", "field"})
    GET /v1/anomalies/{id}                         → 200 one anomaly, 404 none such
    GET /console, /console/anomalies/{id}          the console (HTML, see `adnomaly.serving.console`)
    GET /healthz   the process is up          GET /readyz   Redis answers (503 otherwise)
    GET /metrics   Prometheus                 GET /openapi.json   the typed API (features route excluded)

Reads the component config's `serving` section (ServingConfig); the Redis URL comes from
$ADNOMALY_REDIS_URL and the PostgreSQL DSN from $ADNOMALY_POSTGRES_DSN (never from the config or the command
line). Anomalies are read from the `anomalies` table of the pipeline's schema (`adnomaly.anomalies`); the
readiness probe does not depend on PostgreSQL, so an outage there leaves feature lookups served (the anomaly
routes answer 503 meanwhile). A feature lookup is one HMGET of the view's fields in Feast's hash of the entity
(the sink's only online copy, `adnomaly.sinks.features.online`); a window older than the view's TTL is a 404, as
Feast's TTL means. Its 200 answer looks like
    {"view": "traffic_5m", "entity": {"geo": "US", "platform": "ios"}, "window_start": "...Z",
     "window_end": "...Z", "event_count": 412, "metrics": {"ctr_avg": 0.031, ...}}
The lookups are the hot path: `create_app` puts `FeaturesFirst` in front of FastAPI, which answers them as
plain ASGI (`adnomaly.serving.features`, which says why) and hands every other request to FastAPI.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
import redis.asyncio as redis_async
import uvicorn
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adnomaly.anomalies.filters import AnomalyFilters, BadFilter
from adnomaly.anomalies.filters import resolve as resolve_filters
from adnomaly.anomalies.models import AnomalyOut, AnomalyPage, Problem
from adnomaly.anomalies.store import UNAVAILABLE, AnomalyStore
from adnomaly.config import SecretEnv, secret_from_env
from adnomaly.features.record import entity_key
from adnomaly.http_server import serve_until_drained
from adnomaly.observability import serve_metrics
from adnomaly.serving import chart, console
from adnomaly.serving.features import ROUTE, FeatureLookups, FeaturesFirst
from adnomaly.serving.lookup_protocol import protocol_answering
from adnomaly.serving.redis_wire import HashReader, lookup_client
from adnomaly.serving.tracked_replies import TrackedReplies
from adnomaly.sinks.config import SERVING_SECTION, FeatureView, ServingConfig, load_section

_log = logging.getLogger("adnomaly.serving")

REQUEST_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class ServingMetrics:
    requests: Counter
    seconds: Histogram
    anomaly_requests: Counter

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
            anomaly_requests=Counter(
                "adnomaly_serving_anomaly_requests_total", "Anomalies API and console requests by route and status",
                ["route", "status"], registry=registry,
            ),
        )  # fmt: skip


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _problem(status: int, detail: str, field: str | None = None) -> Response:
    return _json(status, Problem(detail=detail, field=field).model_dump())


def _validation_problem(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a malformed parameter becomes a 400 naming it (like every other bad filter)."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    field = loc[0] if loc else None
    return _problem(400, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)


CHART_BEFORE = timedelta(hours=1)
CHART_AFTER = timedelta(minutes=30)
RECENT = timedelta(hours=24)
THROUGHPUT_SPAN = timedelta(minutes=5)
NO_STORE = "the anomalies API has no PostgreSQL here (no db_schema in the config or no ADNOMALY_POSTGRES_DSN)"
PG_DOWN = "the anomalies store (PostgreSQL) is unavailable"
ERRORS = {400: {"model": Problem}, 503: {"model": Problem}}


def _series_key(views: dict[str, FeatureView], a: AnomalyOut) -> str:
    """The feature history's entity key of an anomaly: its dimensions in the view's order."""
    view = views.get(a.feature)
    order = view.dimensions if view is not None and set(view.dimensions) == set(a.key) else sorted(a.key)
    return entity_key(a.key, order)


class CountAnomalyRequests:
    """Counts the anomaly and console requests by route and status, as plain ASGI. Starlette's
    `@app.middleware("http")` would run every request, the feature lookups included, through a task and a
    memory stream of its own, a cost the hot path (which has its own metrics) should not pay; here a
    feature lookup passes through with one prefix check."""

    PREFIXES = ("/v1/anomalies", "/console")

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIXES):
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the response started: what the server will answer

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "")  # the router puts the matched route in the scope
            if route.startswith(self.PREFIXES):
                self.counter.labels(route, str(status)).inc()


class CacheLookups(Collector):
    """`adnomaly_serving_cache_lookups_total{result="hit"|"miss"}`: the feature lookups answered from the answers
    kept while Redis tracks their keys, and those that asked Redis (`adnomaly.serving.tracked_replies`). Read
    from the lookup client when scraped, so the hot path counts with two integer additions, not a metric."""

    def __init__(self, state: dict[str, HashReader]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "adnomaly_serving_cache_lookups", "Feature lookups answered from kept answers (hit) or by Redis (miss)",
            labels=["result"],
        )  # fmt: skip
        cache = getattr(self.state.get("redis"), "cache", None)
        if isinstance(cache, TrackedReplies):
            family.add_metric(["hit"], cache.hits)
            family.add_metric(["miss"], cache.misses)
        yield family


def create_app(
    config: ServingConfig, redis_url: str, registry: CollectorRegistry = REGISTRY,
    anomalies: AnomalyStore | None = None, pipeline: str = "",
) -> FeaturesFirst:  # fmt: skip
    """The API as uvicorn serves it: the feature lookups' front door (`.lookups`) before FastAPI (`.app`)."""
    views = {view.name: view for view in config.features}
    metrics = ServingMetrics.create(registry)
    state: dict[str, HashReader] = {}
    registry.register(CacheLookups(state))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        client = lookup_client(redis_url, timeout=2.0, cache_keys=config.cache_keys)
        state["redis"] = client
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="Adnomaly serving", summary="Online features, anomalies and the console of one pipeline",
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )  # fmt: skip
    app.add_exception_handler(RequestValidationError, _validation_problem)

    app.add_middleware(CountAnomalyRequests, counter=metrics.anomaly_requests)

    lookups = FeatureLookups(views, config.feast_project, metrics.requests, metrics.seconds, state)
    # Also FastAPI's route, for what the front door leaves to it on this path (HEAD, other methods: 405, the
    # trailing-slash redirect). A plain Starlette route, the same object: out of /openapi.json, as before.
    app.router.routes.append(Route(ROUTE, endpoint=lookups, methods=["GET"]))

    @app.get("/v1/anomalies", response_model=AnomalyPage, responses=ERRORS, summary="Anomalies, newest first")
    def list_anomalies(filters: Annotated[AnomalyFilters, Query()]) -> Response:
        if anomalies is None:
            return _problem(503, NO_STORE)
        try:
            page = anomalies.page(resolve_filters(filters, datetime.now(UTC)))
        except BadFilter as exc:
            return _problem(400, str(exc), exc.field)
        except UNAVAILABLE as exc:
            _log.warning("anomalies query failed: %s", type(exc).__name__)
            return _problem(503, PG_DOWN)
        return Response(page.model_dump_json(), media_type="application/json")

    @app.get("/v1/anomalies/{anomaly_id}", response_model=AnomalyOut, summary="One anomaly",
             responses={**ERRORS, 404: {"model": Problem}})  # fmt: skip
    def get_anomaly(anomaly_id: uuid.UUID) -> Response:
        if anomalies is None:
            return _problem(503, NO_STORE)
        try:
            found = anomalies.get(str(anomaly_id))
        except UNAVAILABLE:
            return _problem(503, PG_DOWN)
        if found is None:
            return _problem(404, f"no anomaly {anomaly_id} in pipeline {pipeline}", "anomaly_id")
        return Response(found.model_dump_json(), media_type="application/json")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/console")

    @app.get("/console", include_in_schema=False)
    def console_overview() -> Response:
        if anomalies is None:
            return HTMLResponse(console.render_not_found(NO_STORE), status_code=503)
        now = datetime.now(UTC)
        try:
            open_count, recent_count = anomalies.counts(now - RECENT)
            events = anomalies.events_since(now - THROUGHPUT_SPAN)
            opened = anomalies.page(resolve_filters(AnomalyFilters(status="open", limit=50), now)).anomalies
            recent = anomalies.page(resolve_filters(AnomalyFilters(limit=50), now)).anomalies
        except UNAVAILABLE:
            return HTMLResponse(console.render_not_found(PG_DOWN), status_code=503)
        overview = console.Overview(
            pipeline=pipeline, events_per_minute=events / (THROUGHPUT_SPAN.total_seconds() / 60),
            open_count=open_count, recent_count=recent_count, recent_hours=int(RECENT.total_seconds() // 3600),
            open=opened, recent=recent,
        )  # fmt: skip
        return HTMLResponse(console.render_overview(overview))

    @app.get("/console/anomalies/{anomaly_id}", include_in_schema=False)
    def console_anomaly(anomaly_id: str) -> Response:
        if anomalies is None:
            return HTMLResponse(console.render_not_found(NO_STORE), status_code=503)
        try:
            found = anomalies.get(str(uuid.UUID(anomaly_id)))
            if found is None:
                return HTMLResponse(console.render_not_found(f"No anomaly {anomaly_id}"), status_code=404)
            end = min((found.resolved_at or found.detected_at) + CHART_AFTER, datetime.now(UTC))
            rows = anomalies.series(found.feature, _series_key(views, found), found.metric,
                                    found.detected_at - CHART_BEFORE, max(end, found.detected_at))  # fmt: skip
        except ValueError:
            return HTMLResponse(console.render_not_found(f"No anomaly {anomaly_id}"), status_code=404)
        except UNAVAILABLE:
            return HTMLResponse(console.render_not_found(PG_DOWN), status_code=503)
        data = chart.ChartInput(
            points=[(at, value) for at, value, _ in rows if value is not None], alarm_at=found.detected_at,
            observed=found.observed, expected=found.expected, resolved_at=found.resolved_at, metric=found.metric,
        )  # fmt: skip
        svg = chart.render_svg(data, chart.baseline_band(data, found.window_start))
        return HTMLResponse(console.render_detail(pipeline, found, svg))

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "Redis does not answer"}})
    async def readyz() -> Response:
        try:
            await state["redis"].ping()
        except redis_async.RedisError as exc:
            return _json(503, {"status": "unavailable", "detail": f"Redis: {type(exc).__name__}"})
        return _json(200, {"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return FeaturesFirst(app, lookups)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.serving", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, section = load_section(args.config, SERVING_SECTION, ServingConfig)
    redis_url = secret_from_env(SecretEnv.REDIS_URL)
    assert redis_url is not None
    dsn = secret_from_env(SecretEnv.POSTGRES_DSN, required=False)
    store = None
    if section.db_schema and dsn:
        store = AnomalyStore(dsn, section.db_schema, config.pipeline, application_name="adnomaly-serving")
    else:
        _log.warning("no anomalies API: %s", NO_STORE)
    app = create_app(section, redis_url, anomalies=store, pipeline=config.pipeline)
    if config.metrics_port and config.metrics_port != section.port:
        serve_metrics(config.metrics_port)  # /metrics is on the API port too; this is where backends scrape
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=section.host, port=section.port, loop="uvloop", lifespan="on", log_level="warning",
            access_log=False, server_header=False, timeout_graceful_shutdown=10,
            http=protocol_answering(app.lookups.at_hand),  # lookups at hand answered without an ASGI cycle
        )
    )  # fmt: skip
    _log.info(
        "online features of pipeline %s on %s:%d (%d views)", config.pipeline, section.host, section.port,
        len(section.features),
    )  # fmt: skip
    return serve_until_drained(server)
