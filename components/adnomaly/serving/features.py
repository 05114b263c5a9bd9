"""The online feature lookup, `GET /v1/features/{view}?dim=value...`, as plain ASGI, answered before FastAPI.

Why not a FastAPI route: under the 2,000 lookups/s of `adnomaly bench online --rate 2000`, py-spy found 58 % of
the serving process's busy samples under `FastAPI.__call__`, of which the handler was 32 % and uvicorn's
socket write 14 %: the remaining ~12 % was the layers themselves (FastAPI and Starlette `__call__`,
ServerErrorMiddleware, ExceptionTelemetryMiddleware, AppBodyLimitMiddleware, ExceptionMiddleware,
AsyncExitStackMiddleware, the router's matching, `request_response`, `Request`/`QueryParams`/`Response`),
each a coroutine frame and most wrapping `send` once more, for a route that uses none of them: it validates
its own parameters (`adnomaly.serving.lookup.resolve`) and serializes its own JSON. Without them the serving
process spends about a third less CPU per lookup (user time, same load, interleaved runs).

So `FeaturesFirst` sits in front of the FastAPI app: a `GET` whose path is `/v1/features/<one segment>` goes
straight to `FeatureLookups`; everything else, HEAD and other methods on the same path included, goes to
FastAPI, where the same `FeatureLookups` object is registered as the route's ASGI endpoint. One
implementation serves both ways, and whatever FastAPI decides today for the odd requests (405 with `Allow`,
the trailing-slash redirect, 404 for `/v1/features/` or `/v1/features/a/b`) stays FastAPI's decision. The
route is a plain Starlette `Route`, so /openapi.json leaves it out as before.

What must not change, and why it does not:
  - the view is the path segment as the router's `{view}` (`[^/]+`) would capture it from the decoded path;
  - the query string is parsed as Starlette's `QueryParams` does (latin-1, `parse_qsl(keep_blank_values=True)`),
    so repeated, empty and unknown dimensions reach `resolve` exactly as before and get the same 400s;
  - the answer carries the same bytes and headers as `Response(orjson.dumps(body), media_type=
    "application/json")` (content-length, then content-type);
  - an unexpected exception still gets Starlette's own ServerErrorMiddleware (the plain-text 500, then the
    exception re-raised for uvicorn to log), as it did at the top of FastAPI's stack;
  - the Prometheus series are the same ones; the labelled children are looked up once per (view, status)
    instead of on every request (`labels()` takes a lock and builds a key each time).
FastAPI's native OpenTelemetry is inert in this process (no provider is configured, FASTAPI_OTEL_AUTO_CONFIGURE
is not set, and the serving API does not use `adnomaly.tracing`), so the lookups were not traced before either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson
import redis.asyncio as redis_async
from prometheus_client import Counter, Histogram
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adnomaly.serving.lookup import BadLookup, Lookup, resolve
from adnomaly.serving.redis_wire import HashReader
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.online import read_fields, read_latest

_log = logging.getLogger("adnomaly.serving")

PREFIX = "/v1/features/"
ROUTE = PREFIX + "{view}"
UNKNOWN_VIEW = "_unknown"  # the metrics' view label for a view that is not configured (bounded cardinality)
REDIS_DOWN = "the online store is unavailable"
JSON_TYPE = (b"content-type", b"application/json")


class FeatureLookups:
    """The lookup as an ASGI app: `scope["path_params"]["view"]` and the query string → one HMGET → JSON.

    `state["redis"]` is the client the app's lifespan opens (read per request: it exists only once started):
    `adnomaly.serving.redis_wire.lookup_client`, one pipelined connection."""

    def __init__(
        self, views: Mapping[str, FeatureView], project: str, requests: Counter, seconds: Histogram,
        state: Mapping[str, HashReader],
    ) -> None:  # fmt: skip
        self.views = dict(views)
        self.fields = {name: tuple(read_fields(view)) for name, view in self.views.items()}
        self.project = project
        self.requests = requests
        self.seconds = seconds
        self.state = state
        self._series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope["path_params"]["view"], scope["query_string"], send)

    async def answer(self, view: str, query_string: bytes, send: Send) -> None:
        started = time.perf_counter()
        status, payload = self._counted(view, *await self.lookup(view, query_string), started)
        headers = [(b"content-length", str(len(payload)).encode()), JSON_TYPE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def lookup(self, view: str, query_string: bytes) -> tuple[int, dict[str, object]]:
        """The status and JSON body of a lookup (400/404 from `resolve` and `read_latest`, 503 without Redis)."""
        try:
            found = self._resolve(view, query_string)
            return self._window(found, await self.state["redis"].hmget(found.key, self.fields[view]))
        except BadLookup as exc:
            return exc.status, {"detail": exc.detail}
        except redis_async.RedisError as exc:
            _log.warning("Redis lookup failed: %s", exc)
            return 503, {"detail": REDIS_DOWN}

    def at_hand(self, view: str, query_string: bytes) -> tuple[int, bytes] | None:
        """The status and JSON payload of the lookup when answering needs no wait: a valid request whose
        reply the Redis client keeps (`WireClient.kept`); counted in the metrics as `answer` counts. None for
        everything else (a bad request, an answer Redis must give, a client that keeps nothing), which
        `answer` then answers: one implementation of every error (`adnomaly.serving.lookup_protocol`)."""
        started = time.perf_counter()
        kept = getattr(self.state.get("redis"), "kept", None)
        if kept is None:
            return None
        try:
            found = self._resolve(view, query_string)
        except BadLookup:
            return None
        values = kept(found.key, self.fields[view])
        if values is None:
            return None
        try:
            window = self._window(found, values)
        except BadLookup as exc:  # expired: the same 404 as when Redis answers it
            window = exc.status, {"detail": exc.detail}
        return self._counted(view, *window, started)

    def _resolve(self, view: str, query_string: bytes) -> Lookup:
        # The query string as Starlette's QueryParams parses it: repeated, empty, unknown dimensions reach resolve.
        params = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        return resolve(self.views, self.project, view, params)

    def _window(self, found: Lookup, values: list[bytes | None]) -> tuple[int, dict[str, object]]:
        stored = read_latest(self.views[found.view], values, round(time.time() * 1000))
        if stored is None:
            raise BadLookup(404, f"no current values of `{found.view}` for {found.entity}")
        return 200, {"view": found.view, "entity": found.entity, **stored}

    def _counted(self, view: str, status: int, body: dict[str, object], started: float) -> tuple[int, bytes]:
        payload = orjson.dumps(body)
        count, seconds = self._children(view if view in self.views else UNKNOWN_VIEW, status)
        count.inc()
        seconds.observe(time.perf_counter() - started)
        return status, payload

    def _children(self, label: str, status: int) -> tuple[Counter, Histogram]:
        # Bounded: the configured views plus UNKNOWN_VIEW, times the four statuses above.
        children = self._series.get((label, status))
        if children is None:
            children = self.requests.labels(label, str(status)), self.seconds.labels(label)
            self._series[label, status] = children
        return children


class FeaturesFirst:
    """ASGI: answers `GET /v1/features/<view>` with `lookups` itself and hands every other request to `app`."""

    def __init__(self, app: ASGIApp, lookups: FeatureLookups) -> None:
        self.app = app
        self.lookups = lookups
        # The same 500 as at the top of FastAPI's stack for an exception escaping the lookup.
        self.guarded = ServerErrorMiddleware(lookups)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            view = lookup_view(scope["path"])
            if view is not None:
                scope["path_params"] = {"view": view}  # what the router would put there
                await self.guarded(scope, receive, send)
                return
        await self.app(scope, receive, send)


def lookup_view(path: str) -> str | None:
    """The view a decoded request path asks for: one non-empty segment after `PREFIX`, as the router's `{view}`
    matches it; None for any other path (FastAPI's to answer)."""
    if path.startswith(PREFIX) and len(path) > len(PREFIX) and path.find("/", len(PREFIX)) < 0:
        return path[len(PREFIX) :]
    return None
