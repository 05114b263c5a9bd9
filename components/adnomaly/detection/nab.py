"""The Numenta Anomaly Benchmark (NAB) scorer, reimplemented from NAB's `sweeper.py` (scoring v1.1).

Per data file, with the labelled windows as row-index ranges [left, right]:
- the rows of the probationary period (the first min(floor(0.15 * n), 0.15 * 5000) rows) are not scored;
- inside a window, only the first detection counts: A_tp * sigma(p) / sigma(-1), where p = -(right - i + 1)
  / width is the relative position (-1 at the window's first row, near 0 at its last) and
  sigma(x) = 2 / (1 + e^(5x)) - 1 (the scaled sigmoid; -1 for x > 3);
- a window without a detection scores -A_fn;
- a detection outside every window scores A_fp * sigma(p) with p = |i - right_prev| / (width_prev - 1)
  relative to the preceding window (so an alarm just after a window costs little), or A_fp * -1 before the
  first window (A_fp is a positive weight here; sigma is negative there).
A detector's normalised score is 100 * (S - S_null) / (S_perfect - S_null), summed over files first, where
the null detector never fires (every window -A_fn) and the perfect one fires on every window's first row.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

PROBATIONARY_PERCENT = 0.15


@dataclass(frozen=True)
class Profile:
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD = Profile()
LOW_FP = Profile(tp=1.0, fp=0.22, fn=1.0)
LOW_FN = Profile(tp=1.0, fp=0.11, fn=2.0)


def scaled_sigmoid(position: float) -> float:
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probationary_rows(n: int) -> int:
    return int(min(math.floor(PROBATIONARY_PERCENT * n), PROBATIONARY_PERCENT * 5000))


def window_rows(timestamps: Sequence[float], windows: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Windows given by their first and last timestamp → (first row, last row) over sorted timestamps."""
    rows = []
    for start, end in windows:
        left, right = bisect_left(timestamps, start), bisect_right(timestamps, end) - 1
        if right >= left:
            rows.append((left, right))
    return rows


def raw_score(n: int, detections: Sequence[int], windows: Sequence[tuple[int, int]],
              profile: Profile = STANDARD) -> float:  # fmt: skip
    """NAB's raw score of one file: `n` rows, the rows where the detector fired, windows as row ranges."""
    probation = probationary_rows(n)
    max_tp = scaled_sigmoid(-1.0)
    fired = sorted(set(i for i in detections if probation <= i < n))
    ordered = sorted(windows)
    total = 0.0
    detected = [False] * len(ordered)
    for i in fired:
        k = _window_of(i, ordered)
        if k is not None:
            if not detected[k]:
                detected[k] = True
                left, right = ordered[k]
                width = right - left + 1
                total += profile.tp * scaled_sigmoid(-(right - i + 1) / width) / max_tp
            continue
        previous = [w for w in ordered if w[1] < i]
        if not previous:
            total += profile.fp * -1.0
        else:
            left, right = previous[-1]
            width = right - left + 1
            position = abs(right - i) / (width - 1) if width > 1 else math.inf
            total += profile.fp * scaled_sigmoid(position)
    total -= profile.fn * detected.count(False)
    return total


def _window_of(i: int, windows: Sequence[tuple[int, int]]) -> int | None:
    for k, (left, right) in enumerate(windows):
        if left <= i <= right:
            return k
    return None


@dataclass(frozen=True)
class FileResult:
    name: str
    rows: int
    detections: list[int]
    windows: list[tuple[int, int]]


def normalised_score(files: Sequence[FileResult], profile: Profile = STANDARD) -> float:
    """100 for the perfect detector, 0 for the null detector, summed over all files."""
    score = sum(raw_score(f.rows, f.detections, f.windows, profile) for f in files)
    null = sum(raw_score(f.rows, [], f.windows, profile) for f in files)
    perfect = sum(raw_score(f.rows, [left for left, _ in f.windows], f.windows, profile) for f in files)
    if perfect == null:
        return 0.0
    return 100.0 * (score - null) / (perfect - null)
