"""`auto`: the detector that needs no tuning — an ensemble of four online models of a key's series, each judged
by how rare its current error is against the key's own past errors.

Why this shape. A real series is several things at once: a level that drifts and shifts, a daily and a weekly
rhythm (ad traffic, taxis, CPU), noise that is heavy-tailed, quantised or mostly zero, and anomalies that are
spikes, level shifts, a missing daily peak, or just "more of the usual spikes than usual". No single model
sees all of these, and no fixed z-threshold means the same on two series. So:

- four models, each learnt online with bounded state per key, each giving an expected value:
  * `level`: a robust exponentially weighted level (Huber-clipped updates, so a spike barely moves it but a
    lasting shift is adopted within a few dozen windows — it never freezes);
  * `daily` and `weekly`: additive seasonal profiles (288 five-minute bins of the day, 168 hours of the
    week) around their own deseasonalised robust level, each bin's offset learnt from the values seen at
    that phase (Holt-Winters without trend, so a level shift does not leave a week of stale expectations);
  * `mean`: the level of the moving mean over the last 24 windows (a change of rate or density rather than
    of single values: more spikes, a run of non-zero values in a mostly-zero series);
- each model's absolute error is turned into a tail probability by `DecayingTail` against that model's own
  past errors on this key, over a long and a short memory (the geometric mean of both: rare against the
  last weeks *and* the last days, so a burst of turbulence does not alarm on every row);
- the evidence is the sum of the two largest surprisals (-log10 p): an anomaly shows in at least two models
  (a spike surprises the level and the profiles; a level shift the level and the mean), while most false
  alarms come from one model's own misfit. The score is 1 - 10^(-S/6) in [0, 1]: 0.9 means a joint
  one-in-a-million surprise, 0.99 one in 10^12.

The parameters were set once, on principles (memories in windows, bins at the resolution of typical
telemetry), and are the same for every key and series; `adnomaly bench nab` shows what they give on the
Numenta Anomaly Benchmark. Cost: a few dozen floating-point operations and four histogram look-ups per
window, about 1.3 k floats of state per key (see `bench detection-cost`).

Speed (`adnomaly bench nab` reports rows/s per core). Every window of every key passes through
`AutoKey.judge`, so it is written for the interpreter without changing any result bit (the outputs on all
of NAB, checkpoints included, are identical to the plainer version this replaced): each model's error goes
straight to its tails (no list of (surprise, model, expected) built and sorted per window: the two most
surprised models are kept while going, in the order the sort gave), the evidence is a named tuple (a
frozen dataclass pays an `object.__setattr__` per field), `max`/`min` of two numbers are conditional
expressions picking the same operand, and a seasonal bin's learning rate comes from a table of the very
values `max(PROFILE_ALPHA, 1 / visits)` gives. The tails' own hot path is described in `tail`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, NamedTuple

from adnomaly.detection.tail import TailPair
from adnomaly.spec import Auto

LEVEL_ALPHA: Final = 0.02  # ~50 windows of memory for the level
HUBER: Final = 3.0  # a level update moves by at most 3 mean absolute deviations
PROFILE_ALPHA: Final = 0.1  # each seasonal bin remembers ~10 visits
SETTLED_VISITS: Final = round(1 / PROFILE_ALPHA)
DAY_S: Final = 86_400
DAY_BINS: Final = 288
WEEK_S: Final = 7 * 86_400
WEEK_BINS: Final = 168
MEAN_WINDOWS: Final = 24
LONG_MEMORY: Final = 3000  # windows
SHORT_MEMORY: Final = 1000
WARMUP: Final = 100  # errors a model needs on a key before it gives evidence
SURPRISE_SCALE: Final = 6.0  # S at which the score is 0.9
SIGNALS: Final = ("level", "daily", "weekly", "mean")
# A seasonal bin's learning rate after `visits` visits (index 0 unused): the plain mean's 1/visits until it
# reaches PROFILE_ALPHA. Visits stop counting at SETTLED_VISITS, so the table covers every state.
PROFILE_GAIN: Final = [0.0] + [max(PROFILE_ALPHA, 1.0 / visits) for visits in range(1, SETTLED_VISITS + 1)]


class RobustLevel:
    """An exponentially weighted level whose updates are clipped at HUBER mean absolute deviations."""

    __slots__ = ("level", "mad", "primed")

    def __init__(self) -> None:
        self.level = 0.0
        self.mad = 0.0
        self.primed = False

    def error(self, x: float) -> float | None:
        """x minus the level before x (None for the first value), then learn x."""
        if not self.primed:
            self.level, self.primed = x, True
            return None
        d = x - self.level
        a = abs(d)
        if self.mad > 0.0:
            c = HUBER * self.mad
            self.level += LEVEL_ALPHA * (c if d > c else -c if d < -c else d)
            self.mad += LEVEL_ALPHA * (a - self.mad)
        else:
            self.level += LEVEL_ALPHA * d
            self.mad = a
        return d

    def state(self) -> list[Any]:
        return [self.level, self.mad, self.primed]

    def load_state(self, state: list[Any]) -> None:
        self.level, self.mad, self.primed = state


class SeasonalProfile:
    """Additive seasonality around its own level (Holt-Winters without trend): the expected value at a phase is
    a deseasonalised level plus that phase's learnt offset. The level takes a level shift within a few dozen
    windows, so a profile does not keep expecting the old level at every phase for days (daily) or weeks
    (weekly) until each bin has been revisited often enough. A bin's offset is the plain mean of its first
    visits and exponentially weighted after 1/PROFILE_ALPHA of them, so what the first, still unsettled
    visits taught it is not remembered for weeks."""

    __slots__ = ("bins", "level", "offsets", "period", "visits")

    def __init__(self, period: int, bins: int) -> None:
        self.period = period
        self.bins = bins
        self.level = RobustLevel()
        self.offsets: list[float | None] = [None] * bins
        self.visits = [0] * bins

    def error(self, at: float, x: float) -> tuple[float | None, float | None]:
        period = self.period
        b = int((at % period) * self.bins / period)
        offsets = self.offsets
        offset = offsets[b]
        level = self.level
        if not level.primed:
            level.error(x)
            offsets[b] = 0.0
            self.visits[b] = 1
            return None, None
        before = level.level
        if offset is None:  # the first visit of this phase: learn it, judge nothing (the level follows x)
            offsets[b] = x - before
            self.visits[b] = 1
            level.error(x)
            return None, None
        level.error(x - offset)
        visits = self.visits[b] + 1
        if visits > SETTLED_VISITS:  # min(visits, SETTLED_VISITS)
            visits = SETTLED_VISITS
        self.visits[b] = visits
        offsets[b] = offset + PROFILE_GAIN[visits] * (x - before - offset)
        expected = before + offset
        return x - expected, expected

    def state(self) -> list[Any]:
        return [self.level.state(), self.offsets, self.visits]

    def load_state(self, state: list[Any]) -> None:
        level, offsets, visits = state
        self.level.load_state(level)
        self.offsets = list(offsets)
        self.visits = list(visits)


class Evidence(NamedTuple):
    score: float  # in [0, 1]
    surprise: float  # S, the sum of the two largest -log10 p
    expected: float | None  # the expectation of the most surprised model
    value: float
    top: tuple[tuple[float, int], ...]  # (surprise, model index) of the two most surprised models

    def reason(self) -> str:
        """One line for an alarm (built on demand: most windows are normal and need none)."""
        (first, which), *second = self.top
        text = f"{self.value:.6g} is rare for its {SIGNALS[which]} model"
        if self.expected is not None:
            text += f" (expected {self.expected:.6g})"
        text += f": p={10 ** -first:.2g}"
        for surprise, other in second:
            text += f", {SIGNALS[other]} p={10 ** -surprise:.2g}"
        return text


class AutoKey:
    """Everything `auto` knows about one key."""

    __slots__ = ("daily", "level", "mean_level", "recent", "recent_sum", "tails", "weekly")

    def __init__(self) -> None:
        self.level = RobustLevel()
        self.daily = SeasonalProfile(DAY_S, DAY_BINS)
        self.weekly = SeasonalProfile(WEEK_S, WEEK_BINS)
        self.mean_level = RobustLevel()
        self.recent: deque[float] = deque(maxlen=MEAN_WINDOWS)
        self.recent_sum = 0.0
        self.tails = [TailPair(LONG_MEMORY, SHORT_MEMORY, WARMUP) for _ in SIGNALS]

    def judge(self, at: float, x: float, sign: int) -> Evidence | None:
        """Every model learns x; each model's error is judged by its tails; the two most surprised decide."""
        level = self.level
        level_before = level.level
        level_error = level.error(x)
        daily_error, daily_expected = self.daily.error(at, x)
        weekly_error, weekly_expected = self.weekly.error(at, x)
        recent = self.recent
        if len(recent) == MEAN_WINDOWS:
            self.recent_sum -= recent[0]
        recent.append(x)
        self.recent_sum += x
        mean_level = self.mean_level
        mean_before = mean_level.level
        mean_error = mean_level.error(self.recent_sum / MEAN_WINDOWS) if len(recent) == MEAN_WINDOWS else None
        # The top two (surprise, model index), in the order `sorted(..., reverse=True)` of the pairs gives:
        # models come in index order, so a later one ranks above an earlier one on equal surprise (>=).
        first = second = 0.0
        first_i = second_i = -1  # -1: none yet
        first_expected: float | None = None
        tails = self.tails
        for i, (error, expected) in enumerate((
            (level_error, level_before), (daily_error, daily_expected),
            (weekly_error, weekly_expected), (mean_error, mean_before),
        )):  # fmt: skip
            if error is None:
                continue
            if sign == 0:
                magnitude = abs(error)
            else:
                magnitude = sign * error
                if not magnitude > 0.0:  # max(0.0, sign * error)
                    magnitude = 0.0
            surprise = tails[i].surprise(magnitude)
            if surprise is None:
                continue
            if first_i < 0 or surprise >= first:
                second, second_i = first, first_i
                first, first_i, first_expected = surprise, i, expected
            elif second_i < 0 or surprise >= second:
                second, second_i = surprise, i
        if first_i < 0:
            return None
        if second_i < 0:
            top: tuple[tuple[float, int], ...] = ((first, first_i),)
            total = 0.0 + first  # sum() of the top surprises: a float sum starts at 0.0 (and so -0.0 -> 0.0)
        else:
            top = ((first, first_i), (second, second_i))
            total = 0.0 + first + second
        return Evidence(1.0 - 10.0 ** (-total / SURPRISE_SCALE), total, first_expected, x, top)

    def state(self) -> list[Any]:
        return [
            self.level.state(), self.daily.state(), self.weekly.state(), self.mean_level.state(),
            list(self.recent), self.recent_sum, [pair.state() for pair in self.tails],
        ]  # fmt: skip

    @classmethod
    def from_state(cls, state: list[Any]) -> AutoKey:
        key = cls()
        level, daily, weekly, mean_level, recent, recent_sum, tails = state
        key.level.load_state(level)
        key.daily.load_state(daily)
        key.weekly.load_state(weekly)
        key.mean_level.load_state(mean_level)
        key.recent.extend(recent)
        key.recent_sum = recent_sum
        for pair, saved in zip(key.tails, tails, strict=True):
            pair.load_state(saved)
        return key


SIGN: Final = {"both": 0, "above": 1, "below": -1}


class AutoModel:
    """The per-key ensemble for every key of one detector (the `Detector` wrapper lives in detectors.py)."""

    def __init__(self, params: Auto) -> None:
        self.params = params
        self.sign = SIGN[params.direction]
        self.keys: dict[tuple[str, ...], AutoKey] = {}

    def judge(self, key: tuple[str, ...], at: float, x: float) -> Evidence | None:
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = AutoKey()
        return state.judge(at, x, self.sign)

    def state(self) -> list[Any]:
        return [[list(key), s.state()] for key, s in self.keys.items()]

    def load_state(self, state: list[Any]) -> None:
        self.keys = {tuple(key): AutoKey.from_state(s) for key, s in state}
