"""Detectors: pure per-key judges of one metric of one feature, built from a `DetectorSpec`.

Each detector sees one window's value of its metric for one key and returns a `Verdict` (severity
`warning`/`critical` or None for normal) or None when it cannot judge yet (too few events in the window,
no value, baseline still warming up). Statistical detectors keep bounded per-key state.

- threshold: fixed bounds (above and/or below; critical wins over warning).
- robustZScore: z = (x - median) / (1.4826 * MAD) over the key's last `history` windows; warning at
  |z| >= threshold, critical at |z| >= 2 * threshold. The window is added to the history after judging
  (the median shrugs off a short anomaly; a lasting level shift becomes the new normal).
- ewma: an EWMA control chart; mean and variance are exponentially weighted (alpha), z = (x - mean) / sd;
  an out-of-control window does not move the baseline, so a lasting anomaly stays visible.
Both statistical detectors floor the scale at `SCALE_FLOOR` of the baseline's magnitude (a metric that is
constant in normal traffic would otherwise turn the tiniest change into an infinite score), and alert on the
`direction` their spec asks for (above, below or both sides of the baseline).

Every detector's per-key state round-trips through `state()` / `load_state()` (plain JSON-able values), so
the detector component can persist it with its consumed offsets and restart exactly where it stopped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import Any, Literal, Protocol

from adnomaly.spec import DetectorSpec, Direction, Ewma, RobustZScore, ThresholdRule

Severity = Literal["warning", "critical"]
SCALE_FLOOR = 0.02  # relative: the smallest scale is 2 % of |baseline|
ABS_FLOOR = 1e-6
MIN_BASELINE = 8  # windows a key needs before robustZScore judges it
DEFAULT_THRESHOLD_MIN_COUNT = 20  # events a window needs for a threshold rule without its own `minCount`


@dataclass(frozen=True)
class Verdict:
    severity: Severity | None
    observed: float
    expected: float | None  # the bound crossed, or the baseline
    score: float  # the observed value (threshold) or the z-score (statistical)


class Detector(Protocol):
    method: str

    @property
    def min_count(self) -> int: ...

    def judge(self, key: tuple[str, ...], value: float | None, count: int) -> Verdict | None: ...

    def state(self) -> list[Any]: ...

    def load_state(self, state: list[Any]) -> None: ...


def _scale(raw: float, center: float) -> float:
    return max(raw, SCALE_FLOOR * abs(center), ABS_FLOOR)


def _z_severity(z: float, threshold: float, direction: Direction = "both") -> Severity | None:
    signed = z if direction == "above" else -z if direction == "below" else abs(z)
    if signed >= 2 * threshold:
        return "critical"
    if signed >= threshold:
        return "warning"
    return None


class ThresholdDetector:
    method = "threshold"

    def __init__(self, rule: ThresholdRule, min_count: int = DEFAULT_THRESHOLD_MIN_COUNT) -> None:
        self.rule = rule
        self.min_count = rule.min_count if rule.min_count is not None else min_count

    def state(self) -> list[Any]:
        return []  # stateless

    def load_state(self, state: list[Any]) -> None:
        pass

    def judge(self, key: tuple[str, ...], value: float | None, count: int) -> Verdict | None:
        if value is None or count < self.min_count:
            return None
        r = self.rule
        for severity, above, below in (
            ("critical", r.critical_above, r.critical_below),
            ("warning", r.warning_above, r.warning_below),
        ):
            if above is not None and value > above:
                return Verdict(severity, value, above, value)  # type: ignore[arg-type]
            if below is not None and value < below:
                return Verdict(severity, value, below, value)  # type: ignore[arg-type]
        bounds = [b for b in (r.warning_above, r.critical_above, r.warning_below, r.critical_below) if b is not None]
        return Verdict(None, value, bounds[0], value)


class RobustZDetector:
    method = "robustZScore"

    def __init__(self, params: RobustZScore) -> None:
        self.params = params
        self.history: dict[tuple[str, ...], deque[float]] = {}

    @property
    def min_count(self) -> int:
        return self.params.min_count

    def judge(self, key: tuple[str, ...], value: float | None, count: int) -> Verdict | None:
        if value is None or count < self.params.min_count:
            return None
        past = self.history.setdefault(key, deque(maxlen=self.params.history))
        verdict = None
        if len(past) >= min(MIN_BASELINE, self.params.history):
            center = median(past)
            mad = median(abs(v - center) for v in past)
            z = (value - center) / _scale(1.4826 * mad, center)
            verdict = Verdict(_z_severity(z, self.params.threshold, self.params.direction), value, center, z)
        past.append(value)
        return verdict

    def state(self) -> list[Any]:
        return [[list(key), list(past)] for key, past in self.history.items()]

    def load_state(self, state: list[Any]) -> None:
        self.history = {tuple(key): deque(past, maxlen=self.params.history) for key, past in state}


@dataclass
class _EwmaState:
    mean: float
    var: float = 0.0
    seen: int = 1


class EwmaDetector:
    method = "ewma"

    def __init__(self, params: Ewma) -> None:
        self.params = params
        self.state_by_key: dict[tuple[str, ...], _EwmaState] = {}

    @property
    def min_count(self) -> int:
        return self.params.min_count

    def judge(self, key: tuple[str, ...], value: float | None, count: int) -> Verdict | None:
        if value is None or count < self.params.min_count:
            return None
        state = self.state_by_key.get(key)
        if state is None:
            self.state_by_key[key] = _EwmaState(mean=value)
            return None
        diff = value - state.mean
        z = diff / _scale(math.sqrt(state.var), state.mean)
        warm = state.seen >= self.params.warmup
        severity = _z_severity(z, self.params.threshold, self.params.direction) if warm else None
        verdict = Verdict(severity, value, state.mean, z) if warm else None
        if severity is None:  # out-of-control windows leave the baseline alone
            alpha = self.params.alpha
            state.mean += alpha * diff
            state.var = (1 - alpha) * (state.var + alpha * diff * diff)
            state.seen += 1
        return verdict

    def state(self) -> list[Any]:
        return [[list(key), s.mean, s.var, s.seen] for key, s in self.state_by_key.items()]

    def load_state(self, state: list[Any]) -> None:
        self.state_by_key = {tuple(key): _EwmaState(mean, var, seen) for key, mean, var, seen in state}


def build_detector(spec: DetectorSpec, threshold_min_count: int = DEFAULT_THRESHOLD_MIN_COUNT) -> Detector:
    if spec.threshold is not None:
        return ThresholdDetector(spec.threshold, threshold_min_count)
    if spec.robust_z_score is not None:
        return RobustZDetector(spec.robust_z_score)
    assert spec.ewma is not None
    return EwmaDetector(spec.ewma)
