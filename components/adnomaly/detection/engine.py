"""Feature records in, anomaly transitions out: the detectors of a `DetectionSpec` plus the lifecycle.

Lifecycle per (detector, key): the first alarming window opens an anomaly (one open anomaly per key and
detector: later alarming windows only raise its peak severity/score), and `resolve_after` consecutive
judged normal windows resolve it. Windows a detector cannot judge (min-count guard, warm-up) neither open
nor resolve. `process` returns the records to publish: the anomaly when it opens and again when it
resolves (same id; the resolved copy carries `resolved_at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adnomaly.detection.anomaly import Anomaly, anomaly_id
from adnomaly.detection.detectors import DEFAULT_THRESHOLD_MIN_COUNT, Detector, build_detector
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import DetectionSpec, DetectorSpec

RESOLVE_AFTER = 2


@dataclass
class _Open:
    anomaly: Anomaly
    normal_streak: int = 0
    restored: bool = False  # adopted from the store, not yet seen again in this run


@dataclass
class DetectionEngine:
    pipeline: str
    detection: DetectionSpec
    resolve_after: int = RESOLVE_AFTER
    threshold_min_count: int = DEFAULT_THRESHOLD_MIN_COUNT
    _detectors: list[tuple[DetectorSpec, Detector]] = field(init=False)
    open: dict[tuple[str, tuple[tuple[str, str], ...]], _Open] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.resolve_after < 1:
            raise ValueError("resolve_after must be at least 1")
        self._detectors = [(d, build_detector(d, self.threshold_min_count)) for d in self.detection.detectors]

    def restore(self, anomalies: list[Anomaly]) -> None:
        """Re-adopt anomalies still open (read back from the store after a restart): they are not opened
        twice, and a replay of the very window that opened one publishes it again (same id)."""
        for a in anomalies:
            if a.status == "open":
                self.open[(a.type, tuple(sorted(a.dimensions.items())))] = _Open(a, restored=True)

    def process(self, record: FeatureRecord, context: Mapping[str, Any] | None = None) -> list[Anomaly]:
        out: list[Anomaly] = []
        key = tuple(sorted(record.dimensions.items()))
        for spec, detector in self._detectors:
            if spec.feature != record.feature or spec.metric not in record.metrics:
                continue
            verdict = detector.judge(tuple(v for _, v in key), record.metrics[spec.metric], record.event_count)
            if verdict is None:
                continue
            slot = (spec.name, key)
            current = self.open.get(slot)
            if verdict.severity is not None:
                if current is None:
                    anomaly = Anomaly(
                        id=anomaly_id(self.pipeline, spec.name, record.dimensions, record.window_end),
                        pipeline=self.pipeline, type=spec.name, detector=detector.method,
                        severity=verdict.severity, status="open", feature=record.feature, metric=spec.metric,
                        dimensions=dict(record.dimensions), window_start=record.window_start,
                        window_end=record.window_end, observed=verdict.observed, expected=verdict.expected,
                        score=verdict.score, context={"event_count": record.event_count, **(context or {})},
                        detected_at=record.window_end,
                    )  # fmt: skip
                    self.open[slot] = _Open(anomaly)
                    out.append(anomaly)
                else:
                    if current.restored and current.anomaly.window_end == record.window_end:
                        # Replaying the window that opened it (the run that stored it crashed before its
                        # Kafka transaction committed): publish it again, same id.
                        out.append(current.anomaly)
                    current.restored = False
                    current.normal_streak = 0
                    if verdict.severity == "critical":
                        current.anomaly = msgspec.structs.replace(current.anomaly, severity="critical")
            elif current is not None:
                current.normal_streak += 1
                if current.normal_streak >= self.resolve_after:
                    del self.open[slot]
                    out.append(msgspec.structs.replace(
                        current.anomaly, status="resolved", resolved_at=record.window_end
                    ))  # fmt: skip
        return out
