"""The anomaly record (anomalies topic value and PostgreSQL row) and its deterministic id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

ANOMALY_NAMESPACE = uuid.UUID("5b0f6a1e-8d2c-4b7e-9a51-0d6f3c2e9b10")


class Anomaly(msgspec.Struct, kw_only=True):
    """One anomaly: opened by the first alarming window of a key, resolved after enough normal windows.

    `detected_at` and `resolved_at` are event time (the ends of the opening and the resolving windows), so
    a replay of the same feature records yields identical records."""

    id: str
    pipeline: str
    type: str  # the detector's name in the spec, e.g. "ctr-spike"
    detector: str  # method: auto | threshold | robustZScore | ewma
    severity: Literal["warning", "critical"]
    status: Literal["open", "resolved"]
    feature: str
    metric: str
    dimensions: dict[str, str]
    window_start: datetime
    window_end: datetime
    observed: float
    expected: float | None  # what the detector's model expected (a bound crossed, for a threshold rule)
    score: float  # the anomaly score in [0, 1] of the opening window
    statistic: float | None = None  # the raw statistic behind the score (z, auto's surprise, the value)
    reason: str = ""  # one line: why this window is anomalous
    context: dict[str, Any] = {}
    detected_at: datetime
    resolved_at: datetime | None = None


def anomaly_id(pipeline: str, detector: str, dimensions: dict[str, str], window_end: datetime) -> str:
    """Deterministic from (pipeline, detector, key, opening window): replays never duplicate."""
    key = "|".join(f"{k}={dimensions[k]}" for k in sorted(dimensions))
    return str(uuid.uuid5(ANOMALY_NAMESPACE, f"{pipeline}\x1f{detector}\x1f{key}\x1f{window_end.isoformat()}"))


ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(Anomaly)
