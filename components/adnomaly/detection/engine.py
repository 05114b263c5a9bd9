"""Feature records in, anomaly transitions out: the detectors of a `DetectionSpec` plus the lifecycle.

Lifecycle per (detector, key): the first alarming window opens an anomaly (one open anomaly per key and
detector: later alarming windows only raise its peak severity/score), and `resolve_after` consecutive
judged normal windows (the detector's `resolveAfter`, else the engine's) resolve it. A window too thin to
judge (min-count guard) never opens one but counts as normal towards resolving an open one (it shows no
sign that the anomaly goes on); other windows a detector cannot judge (warm-up, no value) do neither.
`process` returns the records to publish: the anomaly when it opens and again when it resolves (same id;
the resolved copy carries `resolved_at`).

`snapshot()` / `load()` round-trip the whole state (every detector's baselines and the open anomalies with
their normal-window streaks): the detector component stores it in the same PostgreSQL transaction as the
anomalies, tagged with the consumed offsets, so a restart resumes exactly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adnomaly.detection.anomaly import Anomaly, anomaly_id
from adnomaly.detection.detectors import DEFAULT_THRESHOLD_MIN_COUNT, Detector, Verdict, build_detector
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import DetectionSpec, DetectorSpec

RESOLVE_AFTER = 2  # the z-methods' and rules' default; `auto` holds down longer (spec.DEFAULT_RESOLVE_AFTER)


def prior_maxima(scores: Sequence[float | None], hold_down: int) -> list[float]:
    """Per row, the highest score of the `hold_down` rows before it (-inf for the first row; None counts as 0).

    The lifecycle in one line: at a threshold t, row i opens an anomaly exactly when score_i >= t > m_i. (An
    anomaly opens when a row reaches t while none is open, and an open one resolves after `hold_down`
    consecutive rows below t; rows a detector cannot judge count as normal.)"""
    out: list[float] = []
    window: deque[tuple[int, float]] = deque()  # (row, score), scores decreasing: the sliding maximum
    for i, raw in enumerate(scores):
        while window and window[0][0] < i - hold_down:
            window.popleft()
        out.append(window[0][1] if window else -math.inf)
        score = 0.0 if raw is None else raw
        while window and window[-1][1] <= score:
            window.pop()
        window.append((i, score))
    return out


def opening_scores(scores: Sequence[float | None], hold_down: int) -> list[float]:
    """The lifecycle as one score per row, for benchmarks that threshold scores themselves (NAB): score_i where
    it exceeds every score of its hold-down (`prior_maxima`), else 0.

    "score >= t" cannot say "and m_i < t", so thresholded at t these rows are every row the engine opens on
    plus the rows that climb above an anomaly still open at t (escalations, which the engine folds into that
    anomaly). Outside NAB's windows those count as false alarms, inside as detections, so the two views can
    differ either way: `adnomaly.detection.nab.optimise_lifecycle` scores the engine's own rule exactly.
    """
    return [
        (0.0 if s is None else s) if (0.0 if s is None else s) > m else 0.0
        for s, m in zip(scores, prior_maxima(scores, hold_down), strict=True)
    ]


class DetectorState(msgspec.Struct, frozen=True):
    method: str
    state: list[Any]


class OpenState(msgspec.Struct, frozen=True):
    anomaly: Anomaly
    normal_streak: int


class EngineState(msgspec.Struct, frozen=True):
    """Everything a restart needs to judge the next window exactly as an uninterrupted run would."""

    detectors: dict[str, DetectorState] = {}
    open: list[OpenState] = []


@dataclass
class _Open:
    anomaly: Anomaly
    normal_streak: int = 0
    restored: bool = False  # adopted from the store, not yet seen again in this run


@dataclass
class DetectionEngine:
    pipeline: str
    detection: DetectionSpec
    resolve_after: int | None = None  # for detectors without their own resolveAfter; None: the method's default
    threshold_min_count: int = DEFAULT_THRESHOLD_MIN_COUNT
    _detectors: list[tuple[DetectorSpec, Detector]] = field(init=False)
    _routes: list[tuple[DetectorSpec, str, str, str, Detector]] = field(init=False)  # spec, name, feature, metric
    open: dict[tuple[str, tuple[tuple[str, str], ...]], _Open] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.resolve_after is not None and self.resolve_after < 1:
            raise ValueError("resolve_after must be at least 1")
        self._detectors = [(d, build_detector(d, self.threshold_min_count)) for d in self.detection.detectors]
        # What `process` reads per record, out of the pydantic specs once: a pydantic model's attribute goes
        # through its `__getattr__` hook, which callgrind put at ~8 % of a record's cost.
        self._routes = [(spec, spec.name, spec.feature, spec.metric, d) for spec, d in self._detectors]

    def snapshot(self) -> EngineState:
        return EngineState(
            detectors={spec.name: DetectorState(d.method, d.state()) for spec, d in self._detectors},
            open=[OpenState(o.anomaly, o.normal_streak) for o in self.open.values()],
        )

    def load(self, state: EngineState) -> None:
        """Adopt a snapshot. A detector whose method changed since (or that is new) starts afresh; anomalies of
        detectors no longer configured stay open in the store (nothing here can judge them any more)."""
        names = {spec.name: d for spec, d in self._detectors}
        for name, saved in state.detectors.items():
            detector = names.get(name)
            if detector is not None and detector.method == saved.method:
                detector.load_state(saved.state)
        self.open = {
            (o.anomaly.type, tuple(sorted(o.anomaly.dimensions.items()))): _Open(o.anomaly, o.normal_streak)
            for o in state.open if o.anomaly.type in names
        }  # fmt: skip

    def restore(self, anomalies: list[Anomaly]) -> None:
        """Re-adopt anomalies still open (read back from the store after a restart without a matching
        snapshot): they are not opened twice, and a replay of the very window that opened one publishes it
        again (same id). Their normal-window streaks are lost; `load` keeps them."""
        for a in anomalies:
            if a.status == "open":
                self.open[(a.type, tuple(sorted(a.dimensions.items())))] = _Open(a, restored=True)

    def process(self, record: FeatureRecord, context: Mapping[str, Any] | None = None) -> list[Anomaly]:
        out: list[Anomaly] = []
        key: tuple[tuple[str, str], ...] = ()
        values: tuple[str, ...] = ()
        at = 0.0
        for spec, name, feature, metric, detector in self._routes:
            if feature != record.feature or metric not in record.metrics:
                continue
            if not key:  # the record's key and time, once per record and only for a record some detector judges
                key = tuple(sorted(record.dimensions.items()))
                values = tuple([v for _, v in key])
                at = record.window_end.timestamp()
            verdict = detector.judge(values, record.metrics[metric], record.event_count, at)
            slot = (name, key)
            current = self.open.get(slot)
            if verdict is None:
                if current is None or record.event_count >= detector.min_count:
                    continue
                # Too few events to judge: no sign the anomaly goes on (a burst's key back to its thin normal
                # traffic would otherwise stay open for hours and swallow its next anomaly). Counts as normal.
                verdict = Verdict(None, record.metrics[metric] or 0.0, None, 0.0)
            if verdict.severity is not None:
                if current is None:
                    anomaly = Anomaly(
                        id=anomaly_id(self.pipeline, name, record.dimensions, record.window_end),
                        pipeline=self.pipeline, type=name, detector=detector.method,
                        severity=verdict.severity, status="open", feature=record.feature, metric=metric,
                        dimensions=dict(record.dimensions), window_start=record.window_start,
                        window_end=record.window_end, observed=verdict.observed, expected=verdict.expected,
                        score=verdict.score, statistic=verdict.statistic, reason=verdict.reason,
                        context={"event_count": record.event_count, **(context or {})},
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
                    if verdict.severity == "critical" and current.anomaly.severity != "critical":
                        current.anomaly = msgspec.structs.replace(current.anomaly, severity="critical")
            elif current is not None:
                current.normal_streak += 1
                resolve_after = spec.resolve_after or self.resolve_after or spec.hold_down
                if current.normal_streak >= resolve_after:
                    del self.open[slot]
                    out.append(msgspec.structs.replace(
                        current.anomaly, status="resolved", resolved_at=record.window_end
                    ))  # fmt: skip
        return out
