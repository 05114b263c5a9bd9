"""A small async Kubernetes API client (aiohttp, which kopf already uses) for reads and writes.

Writes go through server-side apply (`application/apply-patch+yaml`, one field manager, forced), a
create (generated Secrets: create-only, never overwritten), merge patches (status, orphaning) and
deletes. Every write is counted in `adnomaly_operator_api_writes_total{verb}`, which is how the tests
prove that a no-op reconcile writes nothing. Request and response bodies are never logged: they may
hold secrets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import kopf
import orjson

from adnomaly_operator import metrics
from adnomaly_operator.names import FIELD_MANAGER
from adnomaly_operator.resources import EVENT, Kind, kind_of

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = {408, 409, 429, 500, 502, 503, 504}


def _encode(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def _resource(path: str) -> str:
    """The resource (plural, and subresource) a request path addresses, e.g. `pipelines/status`."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2:]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return "/".join(parts[:1] + parts[2:3])


class ApiError(Exception):
    """The API server refused a request; `status`, `reason` and the server's `message`."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES


class KubeClient:
    def __init__(self, info: kopf.ConnectionInfo, *, max_in_flight: int = 96, timeout: float = 30.0) -> None:
        self._info = info
        self._server = info.server.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(max_in_flight)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=128, ssl=self._info.as_ssl_context()),
                headers={**self._info.as_http_headers(), "User-Agent": f"{FIELD_MANAGER}/0.1"},
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None,
        content_type: str = "application/json", data: bytes | None = None,
    ) -> dict[str, Any]:
        """`body` is encoded as JSON; `data` is sent as it is (JSON already)."""
        session = self._ensure_session()
        if body is not None:
            data = _encode(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if method != "GET":
            metrics.API_WRITES.labels(method.lower()).inc()
        url = self._server + path
        async with self._limit:
            started = time.perf_counter()
            async with session.request(method, url, params=params, data=data, headers=headers) as response:
                status, reason, raw = response.status, response.reason or "", await response.read()
            metrics.API_REQUEST_SECONDS.labels(method.lower(), _resource(path)).observe(time.perf_counter() - started)
        if status >= 400:
            message = raw[:1000].decode(errors="replace")
            try:
                parsed = orjson.loads(raw)
                reason, message = str(parsed.get("reason", reason)), str(parsed.get("message", message))
            except (ValueError, AttributeError):
                pass
            raise ApiError(method, path, status, reason, message)
        # orjson: an apply's answer is the whole object, managedFields included, thousands of them while a
        # fleet comes up.
        return orjson.loads(raw) if raw else {}

    async def watch(
        self, kind: Kind, namespace: str | None, resource_version: str, *, timeout_seconds: int = 60,
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of `kind` after `resource_version` (bookmarks included), until the server ends
        the stream (after `timeout_seconds`). Raises ApiError when the server refuses the watch. Not bound
        by `max_in_flight`: a watch is one long request, not one of many writes."""
        session = self._ensure_session()
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=timeout_seconds + 30, connect=10)
        path = kind.path(namespace)
        async with session.get(self._server + path, params=params, timeout=timeout) as response:
            if response.status >= 400:
                raise ApiError("GET", path, response.status, response.reason or "", (await response.text())[:1000])
            async for line in response.content:
                if line.strip():
                    yield orjson.loads(line)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def apply(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.apply_json(kind_of(obj["kind"]), meta.get("namespace"), meta["name"], _encode(obj),
                                     field_manager=field_manager)

    async def apply_json(
        self, kind: Kind, namespace: str | None, name: str, data: bytes, *, field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply of an object that is JSON already (a `Desired`'s own bytes: nothing to decode
        and encode again)."""
        return await self.request(
            "PATCH", kind.path(namespace, name), params={"fieldManager": field_manager, "force": "true"},
            data=data, content_type="application/apply-patch+yaml",
        )

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        kind = kind_of(obj["kind"])
        return await self.request(
            "POST", kind.path(obj["metadata"].get("namespace")), params={"fieldManager": FIELD_MANAGER}, body=obj
        )

    async def merge_patch(
        self, kind: Kind, namespace: str | None, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", kind.path(namespace, name, subresource), params={"fieldManager": FIELD_MANAGER},
            body=patch, content_type="application/merge-patch+json",
        )

    async def delete(self, kind: Kind, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", kind.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or a newer object by that name
                raise

    async def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `group_version` (e.g. a CRD is installed)."""
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        try:
            found = await self.request("GET", path)
        except ApiError as exc:
            if exc.status in (404, 503):
                return False
            raise
        return any(r.get("name") == plural for r in found.get("resources") or ())

    async def post_event(
        self, involved: Mapping[str, Any], *, type_: str, reason: str, note: str, now: str, instance: str
    ) -> None:
        meta = involved["metadata"]
        event = {
            "apiVersion": EVENT.api_version,
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"]},
            "eventTime": now,
            "reportingController": f"adnomaly.io/{FIELD_MANAGER}",
            "reportingInstance": instance,
            "action": "Reconcile",
            "reason": reason,
            "note": note[:1024],
            "type": type_,
            "regarding": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        await self.request("POST", EVENT.path(meta["namespace"]), body=event)
