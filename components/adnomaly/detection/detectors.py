"""Detectors: pure per-key judges of one metric of one feature, built from a `DetectorSpec`.

Each detector sees one window's value of its metric for one key and returns a `Verdict` — a continuous
anomaly score in [0, 1], the raw statistic behind it, the expected value, a one-line reason and the severity
(`warning`/`critical`, or None for normal) that the score's crossing of the detector's thresholds gives — or
None when it cannot judge yet (too few events in the window, no value, baseline still warming up).

- auto: the untuned ensemble of `adnomaly.detection.auto` (the default method); score = 1 - 10^(-S/6) for
  its surprise S, warning at `threshold` (0.9), critical at `criticalThreshold` (0.99).
- threshold: fixed bounds (above and/or below; critical wins over warning). Its score is its verdict:
  0 normal, 0.5 warning, 1 critical (a rule knows no likelihood to be continuous in).
- robustZScore: z = (x - median) / (1.4826 * MAD) over the key's last `history` windows.
- ewma: an EWMA control chart; mean and variance exponentially weighted (alpha), z = (x - mean) / sd. A
  window out of control moves the baseline by a clipped step (3 sd), so a lasting level shift is adopted
  within a few dozen windows instead of freezing the chart for ever.
For both z-methods the score is 1 - 2^(-|z| / threshold): 0.5 at the threshold (warning) and 0.75 at twice it
(critical), so severities are what they were. Their scale is floored at `SCALE_FLOOR` of the baseline's
magnitude and at the series' own quantum (the smallest step between two distinct values seen), so a
constant or quantised series does not turn its next ordinary step into z ~ 10^6.

Every detector's per-key state round-trips through `state()` / `load_state()` (plain JSON-able values), so
the detector component can persist it with its consumed offsets and restart exactly where it stopped.

A `Verdict` is made for every judged window of every key, so it is a frozen `msgspec.Struct` (built in C,
~0.1 µs) rather than a frozen dataclass (whose generated `__init__` pays an `object.__setattr__` per field,
~1 µs: about 5 % of `auto`'s whole cost per window). The detectors configured by one parameter model with
a `minCount` (robustZScore, ewma, auto) share `ParamsDetector` for their `min_count`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec

from adnomaly.detection.auto import AutoModel
from adnomaly.spec import Auto, DetectorSpec, Direction, Ewma, RobustZScore, ThresholdRule

Severity = Literal["warning", "critical"]
SCALE_FLOOR = 0.02  # relative: the smallest scale is 2 % of |baseline|
ABS_FLOOR = 1e-6
MIN_BASELINE = 8  # windows a key needs before robustZScore judges it
DEFAULT_THRESHOLD_MIN_COUNT = 20  # events a window needs for a threshold rule without its own `minCount`


class Verdict(msgspec.Struct, frozen=True, gc=False):  # floats and strings only: no cycle (see FeatureRecord)
    severity: Severity | None
    observed: float
    expected: float | None  # the bound crossed, or the baseline
    score: float  # the anomaly score in [0, 1]
    statistic: float = 0.0  # what the score was computed from: the value (threshold), z, or auto's surprise
    reason: str = ""


class Detector(Protocol):
    method: str

    @property
    def min_count(self) -> int: ...

    def judge(self, key: tuple[str, ...], value: float | None, count: int, at: float = 0.0) -> Verdict | None:
        """`at` is the window's end as Unix seconds (the seasonal models' phase)."""
        ...

    def state(self) -> list[Any]: ...

    def load_state(self, state: list[Any]) -> None: ...


def _scale(raw: float, center: float, quantum: float = 0.0) -> float:
    return max(raw, SCALE_FLOOR * abs(center), quantum, ABS_FLOOR)


def _quantum(previous: float, current: float, quantum: float) -> float:
    """The smallest step between two distinct consecutive values seen so far (0 until one is seen)."""
    step = abs(current - previous)
    if step == 0.0:
        return quantum
    return step if quantum == 0.0 else min(quantum, step)


def _z_verdict(z: float, threshold: float, direction: Direction, observed: float, expected: float) -> Verdict:
    signed = z if direction == "above" else -z if direction == "below" else abs(z)
    severity: Severity | None = "critical" if signed >= 2 * threshold else "warning" if signed >= threshold else None
    score = 1.0 - 2.0 ** (-max(0.0, signed) / threshold)
    side = "above" if z > 0 else "below"
    reason = f"{observed:.6g} is {abs(z):.3g} robust standard deviations {side} the baseline {expected:.6g}"
    return Verdict(severity, observed, expected, score, z, reason)


P = TypeVar("P", RobustZScore, Ewma, Auto)


class ParamsDetector(Generic[P]):
    """The base of the detectors configured by one parameter model (robustZScore, ewma, auto): `min_count`,
    the events a window needs before it is judged, is the model's own, read where it lives so that it
    cannot drift from the spec (one property here, not one copy per detector)."""

    def __init__(self, params: P) -> None:
        self.params = params

    @property
    def min_count(self) -> int:
        return self.params.min_count


class ThresholdDetector:
    method = "threshold"

    def __init__(self, rule: ThresholdRule, min_count: int = DEFAULT_THRESHOLD_MIN_COUNT) -> None:
        self.rule = rule
        self.min_count = rule.min_count if rule.min_count is not None else min_count

    def state(self) -> list[Any]:
        return []  # stateless

    def load_state(self, state: list[Any]) -> None:
        pass

    def judge(self, key: tuple[str, ...], value: float | None, count: int, at: float = 0.0) -> Verdict | None:
        if value is None or count < self.min_count:
            return None
        r = self.rule
        for severity, score, above, below in (
            ("critical", 1.0, r.critical_above, r.critical_below),
            ("warning", 0.5, r.warning_above, r.warning_below),
        ):
            for bound, crossed, side in ((above, above is not None and value > above, "above"),
                                         (below, below is not None and value < below, "below")):  # fmt: skip
                if crossed:
                    reason = f"{value:.6g} is {side} the {severity} bound {bound:.6g}"
                    return Verdict(severity, value, bound, score, value, reason)  # type: ignore[arg-type]
        bounds = [b for b in (r.warning_above, r.critical_above, r.warning_below, r.critical_below) if b is not None]
        return Verdict(None, value, bounds[0], 0.0, value)


class RobustZDetector(ParamsDetector[RobustZScore]):
    method = "robustZScore"

    def __init__(self, params: RobustZScore) -> None:
        super().__init__(params)
        self.history: dict[tuple[str, ...], deque[float]] = {}
        self.quantum: dict[tuple[str, ...], float] = {}

    def judge(self, key: tuple[str, ...], value: float | None, count: int, at: float = 0.0) -> Verdict | None:
        if value is None or count < self.params.min_count:
            return None
        past = self.history.setdefault(key, deque(maxlen=self.params.history))
        quantum = self.quantum.get(key, 0.0)
        verdict = None
        if len(past) >= min(MIN_BASELINE, self.params.history):
            center = median(past)
            mad = median(abs(v - center) for v in past)
            z = (value - center) / _scale(1.4826 * mad, center, quantum)
            verdict = _z_verdict(z, self.params.threshold, self.params.direction, value, center)
        if past:
            self.quantum[key] = _quantum(past[-1], value, quantum)
        past.append(value)
        return verdict

    def state(self) -> list[Any]:
        return [[list(key), list(past), self.quantum.get(key, 0.0)] for key, past in self.history.items()]

    def load_state(self, state: list[Any]) -> None:
        # (checkpoints written before the quantum floor hold [key, past] only)
        self.history = {tuple(entry[0]): deque(entry[1], maxlen=self.params.history) for entry in state}
        self.quantum = {tuple(entry[0]): entry[2] if len(entry) > 2 else 0.0 for entry in state}


HUBER_SD = 3.0  # an out-of-control window moves the EWMA baseline by at most this many standard deviations


@dataclass
class _EwmaState:
    mean: float
    var: float = 0.0
    seen: int = 1
    quantum: float = 0.0
    last: float = 0.0


class EwmaDetector(ParamsDetector[Ewma]):
    method = "ewma"

    def __init__(self, params: Ewma) -> None:
        super().__init__(params)
        self.state_by_key: dict[tuple[str, ...], _EwmaState] = {}

    def judge(self, key: tuple[str, ...], value: float | None, count: int, at: float = 0.0) -> Verdict | None:
        if value is None or count < self.params.min_count:
            return None
        state = self.state_by_key.get(key)
        if state is None:
            self.state_by_key[key] = _EwmaState(mean=value, last=value)
            return None
        diff = value - state.mean
        sd = _scale(math.sqrt(state.var), state.mean, state.quantum)
        z = diff / sd
        warm = state.seen >= self.params.warmup
        verdict = _z_verdict(z, self.params.threshold, self.params.direction, value, state.mean) if warm else None
        alpha = self.params.alpha
        if verdict is not None and verdict.severity is not None:
            # Out of control: a clipped step, so a spike barely moves the baseline but a lasting shift is
            # adopted (the variance is left alone: the anomaly must not widen the band that judges it).
            state.mean += alpha * max(-HUBER_SD * sd, min(HUBER_SD * sd, diff))
        else:
            state.mean += alpha * diff
            state.var = (1 - alpha) * (state.var + alpha * diff * diff)
        state.seen += 1
        state.quantum = _quantum(state.last, value, state.quantum)
        state.last = value
        return verdict

    def state(self) -> list[Any]:
        return [[list(key), s.mean, s.var, s.seen, s.quantum, s.last] for key, s in self.state_by_key.items()]

    def load_state(self, state: list[Any]) -> None:
        self.state_by_key = {tuple(key): _EwmaState(*rest) for key, *rest in state}


class AutoDetector(ParamsDetector[Auto]):
    method = "auto"

    def __init__(self, params: Auto) -> None:
        super().__init__(params)
        self.model = AutoModel(params)
        # Read per window: plain attributes, not the pydantic model's (its attribute hook costs more).
        self._min_count = params.min_count
        self._threshold = params.threshold
        self._critical = params.critical_threshold

    def judge(self, key: tuple[str, ...], value: float | None, count: int, at: float = 0.0) -> Verdict | None:
        if value is None or count < self._min_count:
            return None
        evidence = self.model.judge(key, at, value)
        if evidence is None:
            return None
        score = evidence.score
        severity: Severity | None = (
            "critical" if score >= self._critical else "warning" if score >= self._threshold else None
        )
        reason = evidence.reason() if severity is not None else ""
        return Verdict(severity, value, evidence.expected, score, evidence.surprise, reason)

    def state(self) -> list[Any]:
        return self.model.state()

    def load_state(self, state: list[Any]) -> None:
        self.model.load_state(state)


def build_detector(spec: DetectorSpec, threshold_min_count: int = DEFAULT_THRESHOLD_MIN_COUNT) -> Detector:
    if spec.threshold is not None:
        return ThresholdDetector(spec.threshold, threshold_min_count)
    if spec.robust_z_score is not None:
        return RobustZDetector(spec.robust_z_score)
    if spec.ewma is not None:
        return EwmaDetector(spec.ewma)
    assert spec.auto is not None
    return AutoDetector(spec.auto)
