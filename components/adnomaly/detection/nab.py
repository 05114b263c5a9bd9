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


# --- Threshold optimisation, as NAB's `run.py --optimize` does it --------------------------------------------
# A detector that writes a continuous score per row is judged at the one threshold (shared by every file of
# the corpus) that maximises the profile's total; a row alarms when its score is >= the threshold. The sweep
# visits every distinct score once, from the highest down, so it is exact rather than a search.


@dataclass(frozen=True)
class ScoredFile:
    """One data file as the sweep sees it: a score per row and the labelled windows as row ranges."""

    name: str
    scores: Sequence[float]
    windows: Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Optimum:
    threshold: float
    raw: float  # the corpus total at that threshold
    normalised: float
    alarms: int  # scored rows at or above the threshold
    false_alarms: int  # of those, rows outside every window
    windows_hit: int
    windows: int


def row_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> list[tuple[float, int | None]]:
    """Each scored row's contribution if it alarms, and the window it lies in (None outside windows).

    Rows of the probationary period are left out (NAB ignores them), so the list has n - probation entries
    for rows probation..n-1."""
    probation = probationary_rows(n)
    max_tp = scaled_sigmoid(-1.0)
    ordered = sorted(windows)
    out: list[tuple[float, int | None]] = []
    k = 0  # the next window not yet passed
    for i in range(probation, n):
        while k < len(ordered) and ordered[k][1] < i:
            k += 1
        if k < len(ordered) and ordered[k][0] <= i:
            left, right = ordered[k]
            out.append((profile.tp * scaled_sigmoid(-(right - i + 1) / (right - left + 1)) / max_tp, k))
        elif k == 0:
            out.append((-profile.fp, None))  # before the first window: sigma(3) = -1
        else:
            left, right = ordered[k - 1]
            width = right - left + 1
            position = abs(right - i) / (width - 1) if width > 1 else math.inf
            out.append((profile.fp * scaled_sigmoid(position), None))
    return out


def optimise_threshold(files: Sequence[ScoredFile], profile: Profile = STANDARD) -> Optimum:
    """The threshold that maximises the corpus total, the total there and its normalised score."""
    points: list[tuple[float, float, int | None]] = []  # (score, weight, global window id)
    window_ids = 0
    scorable_windows = 0
    for f in files:
        n = len(f.scores)
        probation = probationary_rows(n)
        weights = row_weights(n, f.windows, profile)
        seen: set[int] = set()
        for offset, (weight, window) in enumerate(weights):
            gid = None if window is None else window_ids + window
            if gid is not None:
                seen.add(gid)
            points.append((float(f.scores[probation + offset]), weight, gid))
        window_ids += len(f.windows)
        scorable_windows += len(seen)  # a window wholly inside the probationary period is not scored
    points.sort(key=lambda p: p[0], reverse=True)
    null = -profile.fn * scorable_windows
    perfect = profile.tp * scorable_windows
    best_in_window: dict[int, float] = {}
    fp_total = 0.0
    tp_total = 0.0  # sum over hit windows of their best weight
    alarms = false_alarms = 0
    best = Optimum(math.inf, null, 0.0, 0, 0, 0, scorable_windows)
    i = 0
    while i < len(points):
        threshold = points[i][0]
        while i < len(points) and points[i][0] == threshold:
            _, weight, gid = points[i]
            alarms += 1
            if gid is None:
                fp_total += weight
                false_alarms += 1
            else:
                previous = best_in_window.get(gid)
                if previous is None:
                    best_in_window[gid] = weight
                    tp_total += weight
                elif weight > previous:
                    best_in_window[gid] = weight
                    tp_total += weight - previous
            i += 1
        hit = len(best_in_window)
        raw = tp_total + fp_total - profile.fn * (scorable_windows - hit)
        if raw > best.raw:
            normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
            best = Optimum(threshold, raw, normalised, alarms, false_alarms, hit, scorable_windows)
    return best


# --- The engine's own lifecycle, at its best threshold ---------------------------------------------------------
# NAB thresholds one score per row ("alarm where score >= t"). The detection engine's lifecycle is not of that
# form: at threshold t, row i opens an anomaly when score_i >= t > m_i (m_i: the highest score of the rows of
# its hold-down before it). `optimise_lifecycle` sweeps every threshold with that rule exactly, so a benchmark
# can report what the pipeline itself would have raised beside what NAB's own scorer makes of results files.


@dataclass(frozen=True)
class LifecycleFile:
    name: str
    scores: Sequence[float]
    prior_max: Sequence[float]  # per row: the highest score of its hold-down rows before it (-inf if none)
    windows: Sequence[tuple[int, int]]


def optimise_lifecycle(files: Sequence[LifecycleFile], profile: Profile = STANDARD) -> Optimum:
    """The best threshold for the engine's rule, and the corpus total there (same weights as NAB's)."""
    import heapq

    events: list[tuple[float, int, int, float, int | None]] = []  # (value, kind 0 enter/1 leave, row id, ...)
    window_ids = scorable = row_id = 0
    for f in files:
        n = len(f.scores)
        probation = probationary_rows(n)
        seen: set[int] = set()
        for offset, (weight, window) in enumerate(row_weights(n, f.windows, profile)):
            i = probation + offset
            gid = None if window is None else window_ids + window
            if gid is not None:
                seen.add(gid)
            s, m = float(f.scores[i]), float(f.prior_max[i])
            if s > m:  # active for thresholds in (m, s]
                events.append((s, 0, row_id, weight, gid))
                events.append((m, 1, row_id, weight, gid))
            row_id += 1
        window_ids += len(f.windows)
        scorable += len(seen)
    events.sort(key=lambda e: (-e[0], e[1]))
    null, perfect = -profile.fn * scorable, profile.tp * scorable
    heaps: dict[int, list[tuple[float, int]]] = {}
    active: set[int] = set()
    best_of: dict[int, float] = {}
    tp_total = fp_total = 0.0
    alarms = false_alarms = 0
    best = Optimum(math.inf, null, 0.0, 0, 0, 0, scorable)

    def settle(gid: int) -> None:
        nonlocal tp_total
        heap = heaps[gid]
        while heap and heap[0][1] not in active:
            heapq.heappop(heap)
        top = -heap[0][0] if heap else None
        before = best_of.pop(gid, None)
        if before is not None:
            tp_total -= before
        if top is not None:
            best_of[gid] = top
            tp_total += top

    k = 0
    while k < len(events):
        value = events[k][0]
        while k < len(events) and events[k][0] == value:
            _, kind, rid, weight, gid = events[k]
            if kind == 0:
                active.add(rid)
                alarms += 1
                if gid is None:
                    fp_total += weight
                    false_alarms += 1
                else:
                    heapq.heappush(heaps.setdefault(gid, []), (-weight, rid))
                    settle(gid)
            else:
                active.discard(rid)
                alarms -= 1
                if gid is None:
                    fp_total -= weight
                    false_alarms -= 1
                else:
                    settle(gid)
            k += 1
        if value <= 0.0:
            break  # a threshold of 0 or below is no threshold
        hit = len(best_of)
        raw = tp_total + fp_total - profile.fn * (scorable - hit)
        if raw > best.raw + 1e-12:
            normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
            best = Optimum(value, raw, normalised, alarms, false_alarms, hit, scorable)
    return best
