"""Turn one request body into the events to produce and the lines to reject (pure, no I/O).

This is the per-event hot path: NDJSON is split with `bytes.split`, each line goes straight to the
pipeline's codec (a typed msgspec decoder for the built-in schemas), and nothing else is allocated per
event but the codec's `ValidEvent`. Line numbers are 1-based positions in the body, blank lines included,
so a client can find a rejected line in what it sent; blank lines themselves are skipped, not rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

# A line that makes the codec fail in an unexpected way is rejected with INTERNAL_ERROR (and logged), so
# one odd line never costs the other lines of its batch.
from adnomaly.events.codec import INTERNAL_ERROR, InvalidEvent, ValidEvent

_log = logging.getLogger(__name__)

Decode = Callable[[bytes], ValidEvent]


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    code: str
    detail: str
    raw: bytes

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(slots=True)
class Batch:
    events: list[ValidEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.events and not self.rejections


def _reject(batch: Batch, number: int, line: bytes, exc: Exception) -> None:
    if isinstance(exc, InvalidEvent):
        batch.rejections.append(Rejection(number, exc.code, exc.detail, line))
        return
    _log.exception("codec failed unexpectedly on line %d (%d bytes)", number, len(line))
    batch.rejections.append(Rejection(number, INTERNAL_ERROR, f"{type(exc).__name__} while decoding", line))


def parse_ndjson(body: bytes, decode: Decode) -> Batch:
    """Every non-blank line of `body` is one event."""
    batch = Batch()
    append = batch.events.append
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line:
            continue
        try:
            append(decode(line))
        except Exception as exc:
            if line.isspace():  # a blank line (e.g. `\r` of CRLF endings): nothing to decode
                continue
            _reject(batch, number, line, exc)
    return batch


def parse_single(body: bytes, decode: Decode) -> Batch:
    """`body` is one JSON event (line 1); a blank body is no event at all."""
    batch = Batch()
    if not body or body.isspace():
        return batch
    try:
        batch.events.append(decode(body))
    except Exception as exc:
        _reject(batch, 1, body, exc)
    return batch
