"""The ingest API as an ASGI app (FastAPI): `create_app(config, tokens=...)`.

`POST /v1/events` goes through: auth (401/403) → Content-Type (415) → size, declared and streamed, and
NDJSON line count (413) → empty body (400) → per-line validation → Kafka, awaiting every ack (503 when
Kafka does not take it all) → 202 with what became of each line. Probes (`/healthz`, `/readyz`), `/metrics`
and `/openapi.json` need no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson
from confluent_kafka import Producer as KafkaProducer
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from adnomaly.config import ComponentConfig
from adnomaly.events.codec import EventCodec, codec_for_events
from adnomaly.ingest.auth import AuthResult, TokenFile, TokenSet
from adnomaly.ingest.batch import Batch, parse_ndjson, parse_single
from adnomaly.ingest.body import BodyError, BodyKind, body_kind, check_content_length, check_line_count, read_limited
from adnomaly.ingest.metrics import EXPOSITION_CONTENT_TYPE, IngestMetrics
from adnomaly.ingest.openapi import MAX_ERRORS, build_openapi
from adnomaly.ingest.readiness import KafkaReadiness
from adnomaly.ingest.sink import DEFAULT_DELIVERY_TIMEOUT_S, DeliveryFailed, KafkaSink, Producer
from adnomaly.kafka_client import producer_config
from adnomaly.tracing import DISABLED, Tracing, configure

API_VERSION = "1.0.0"
RETRY_AFTER_S = 5
REALM = 'Bearer realm="adnomaly-ingest"'
_JSON = "application/json"

_log = logging.getLogger(__name__)


def kafka_producer(config: ComponentConfig, delivery_timeout_s: float) -> KafkaProducer:
    """The producer for this ingest process: acks=all, idempotent, giving up on a message when we do.

    linger.ms is 1 (the project default is 5): a client waits for the ack, so lingering is pure latency for
    sparse single events (p50 10.5 -> 7.5 ms measured); an NDJSON request fills batches in one burst anyway.
    """
    overrides: dict[str, Any] = {
        "client.id": f"{config.pipeline}-ingest",
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "allow.auto.create.topics": False,
        "linger.ms": 1,
        "security.protocol": config.kafka.security_protocol,
    }
    return KafkaProducer(producer_config(config.kafka.bootstrap_servers, **overrides))


def result_body(batch: Batch) -> dict[str, Any]:
    """The answer for a request whose lines are all accounted for."""
    return {
        "accepted": len(batch.events),
        "rejected": len(batch.rejections),
        "errors": [{"line": r.line, "code": r.code, "reason": r.detail} for r in batch.rejections[:MAX_ERRORS]],
        "errors_omitted": max(0, len(batch.rejections) - MAX_ERRORS),
    }


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=_JSON)


def problem(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"error": error, "detail": detail}, headers)


class EventsEndpoint:
    """POST /v1/events. Answers every request itself (including auth and size errors) so that every
    outcome is counted in the metrics with its status code."""

    def __init__(
        self, *, tokens: TokenSet | TokenFile, codec: EventCodec, sink: KafkaSink, metrics: IngestMetrics,
        max_body_bytes: int,
        tracing: Tracing = DISABLED,
    ) -> None:
        self.tracing = tracing
        self.tokens = tokens
        self.decode = codec.decode
        self.sink = sink
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        with self.tracing.span("ingest.request") as span:
            response, batch = await self._handle(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status_code)
        accepted = rejected = 0
        if batch is not None and response.status_code < 500:
            accepted, rejected = len(batch.events), len(batch.rejections)
        self.metrics.observe(response.status_code, time.perf_counter() - started, accepted, rejected)
        return response

    def _auth_error(self, authorization: str | None) -> Response | None:
        result = self.tokens.check(None if authorization is None else authorization.encode("latin-1"))
        if result is AuthResult.OK:
            return None
        if result is AuthResult.MISSING:
            return problem(401, "unauthorized", "missing Authorization header", {"WWW-Authenticate": REALM})
        if result is AuthResult.MALFORMED:
            return problem(
                401, "unauthorized", "the Authorization header must be `Bearer <token>`",
                {"WWW-Authenticate": f'{REALM}, error="invalid_request"'},
            )  # fmt: skip
        return problem(403, "forbidden", "the bearer token is not valid")

    async def _handle(self, request: Request) -> tuple[Response, Batch | None]:
        headers = request.headers
        denied = self._auth_error(headers.get("authorization"))
        if denied is not None:
            return denied, None
        if self.sink.fatal_error is not None:
            return self._unavailable("the Kafka producer failed; this process must be restarted"), None
        try:
            kind = body_kind(headers.get("content-type"))
            check_content_length(headers.get("content-length"), self.max_body_bytes)
            body = await read_limited(request.stream(), self.max_body_bytes)
            if kind is BodyKind.NDJSON:
                check_line_count(body)
        except BodyError as exc:
            # After a 413 the rest of the body is not read: close the connection rather than drain it.
            extra = {"Connection": "close"} if exc.status == 413 else None
            return problem(exc.status, exc.code, exc.detail, extra), None
        except ClientDisconnect:
            return problem(400, "client_disconnected", "the client went away before sending the body"), None
        batch = parse_single(body, self.decode) if kind is BodyKind.SINGLE else parse_ndjson(body, self.decode)
        if batch.empty:
            return problem(400, "empty_body", "the body holds no event"), None
        try:
            await self.sink.send(batch)
        except DeliveryFailed as exc:
            _log.warning("answering 503 for %d lines: %s", len(batch.events) + len(batch.rejections), exc)
            return self._unavailable(f"{exc}; nothing in this request counts as accepted, send it again"), batch
        status = 400 if kind is BodyKind.SINGLE and batch.rejections else 202
        return json_response(status, result_body(batch)), batch

    @staticmethod
    def _unavailable(detail: str) -> Response:
        return problem(503, "kafka_unavailable", detail, {"Retry-After": str(RETRY_AFTER_S)})


def create_app(
    config: ComponentConfig,
    *,
    tokens: Iterable[str | bytes] | TokenSet | TokenFile,
    producer: Producer | None = None,
    delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
    readiness_max_age_s: float = 2.0,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The ingest API for `config` (which needs its `ingest` section). `producer` replaces the Kafka
    producer (tests); without it one is built from the config and closed (flushed) on shutdown.
    `tracing` defaults to what the OTEL_* environment asks for (off when unset)."""
    if config.ingest is None:
        raise ValueError("the component config has no `ingest` section")
    token_set = tokens if isinstance(tokens, TokenSet | TokenFile) else TokenSet(tokens)  # a TokenFile reloads
    if tracing is None:
        tracing = configure("adnomaly-ingest")
    max_body_bytes = config.ingest.max_body_bytes
    # The producer gives up on a message at the delivery timeout; the request waits a little longer so
    # that, normally, the producer's own error (not our timer) decides.
    active_producer: Producer = producer if producer is not None else kafka_producer(config, delivery_timeout_s)
    sink = KafkaSink(
        active_producer, config.kafka.topics.raw, config.kafka.topics.dlq, pipeline=config.pipeline,
        delivery_timeout_s=delivery_timeout_s + 1.0, owns_producer=producer is None, tracing=tracing,
    )  # fmt: skip
    readiness = KafkaReadiness(active_producer.list_topics, config.kafka.topics.raw, max_age_s=readiness_max_age_s)
    metrics = IngestMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sink.start()
        _log.info(
            "ingest API for pipeline %s: %d valid tokens, raw topic %s, body limit %d bytes",
            config.pipeline, len(token_set), config.kafka.topics.raw, max_body_bytes,
        )  # fmt: skip
        try:
            yield
        finally:
            await asyncio.to_thread(sink.close)
            tracing.shutdown()

    app = FastAPI(
        title=f"Adnomaly ingest API ({config.pipeline})", version=API_VERSION, lifespan=lifespan,
        redoc_url=None,
    )  # fmt: skip
    document = build_openapi(config.events, max_body_bytes=max_body_bytes, title=app.title, version=API_VERSION)
    app.openapi = lambda: document  # type: ignore[method-assign]
    app.state.sink = sink
    app.state.metrics = metrics
    app.state.readiness = readiness

    endpoint = EventsEndpoint(
        tokens=token_set, codec=codec_for_events(config.events), sink=sink, metrics=metrics,
        max_body_bytes=max_body_bytes, tracing=tracing,
    )  # fmt: skip
    app.add_api_route("/v1/events", endpoint.__call__, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        if sink.fatal_error is not None:
            return json_response(503, {"status": "failed", "detail": f"Kafka producer: {sink.fatal_error}"})
        return json_response(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        state = await readiness.check()
        return json_response(200 if state.ready else 503, {"ready": state.ready, "detail": state.detail})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=EXPOSITION_CONTENT_TYPE)

    return app
