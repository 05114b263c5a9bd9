"""Request-body rules: which content types are accepted and how much of a body is read."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable

JSON = "application/json"
NDJSON = "application/x-ndjson"
# Lines in one NDJSON body. Each line costs a decode, and a rejected one a dead letter and its details: a
# body of tiny lines ("x\n" * 4M fits in 8 MB) would otherwise cost ~900 MB and seconds of event loop.
MAX_LINES = 100_000


class BodyKind(enum.Enum):
    SINGLE = JSON  # one JSON event
    NDJSON = NDJSON  # one JSON event per line


_KINDS = {JSON: BodyKind.SINGLE, NDJSON: BodyKind.NDJSON}


class BodyError(Exception):
    """A request body the API does not take; `status` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def body_kind(content_type: str | None) -> BodyKind:
    """The kind of body announced by a Content-Type header value (parameters such as charset ignored)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    kind = _KINDS.get(media_type)
    if kind is None:
        shown = media_type or "none"
        raise BodyError(415, "unsupported_media_type", f"Content-Type {shown!r} is not {JSON} or {NDJSON}")
    return kind


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse a declared length above `limit` before reading anything (the streaming check still applies)."""
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise BodyError(400, "bad_request", "Content-Length is not a number") from None
    if length > limit:
        raise BodyError(413, "body_too_large", f"body is {length} bytes, the limit is {limit}")


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """The whole body, read chunk by chunk; stops reading as soon as it exceeds `limit` bytes.

    This holds for chunked requests without Content-Length too: at most `limit` bytes plus one chunk are
    ever held in memory.
    """
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def check_line_count(body: bytes, limit: int = MAX_LINES) -> None:
    """Refuse an NDJSON body of more than `limit` lines (blank ones included), before parsing any."""
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if lines > limit:
        raise BodyError(413, "too_many_lines", f"body has {lines} lines, the limit is {limit} per request")
