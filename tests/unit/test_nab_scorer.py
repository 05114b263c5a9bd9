"""The NAB scorer on a hand-computed series: 100 rows, probation 15 rows, one window at rows 40..49."""

from __future__ import annotations

import math

import pytest
from adnomaly.detection.nab import (
    STANDARD,
    FileResult,
    normalised_score,
    probationary_rows,
    raw_score,
    scaled_sigmoid,
    window_rows,
)

N = 100
WINDOW = [(40, 49)]


def test_scaled_sigmoid_shape() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.9866
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(3.5) == -1.0


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert probationary_rows(100) == 15
    assert probationary_rows(22_000) == 750


def test_perfect_and_null_detectors() -> None:
    assert raw_score(N, [40], WINDOW) == pytest.approx(1.0)
    assert raw_score(N, [], WINDOW) == pytest.approx(-1.0)
    assert normalised_score([FileResult("f", N, [40], WINDOW)]) == pytest.approx(100.0)
    assert normalised_score([FileResult("f", N, [], WINDOW)]) == pytest.approx(0.0)


def test_late_detection_in_window_earns_less() -> None:
    # last row: position -(49 - 49 + 1) / 10 = -0.1 -> sigma(-0.1) / sigma(-1) = 0.24824
    assert raw_score(N, [49], WINDOW) == pytest.approx(0.248242, abs=1e-6)
    assert normalised_score([FileResult("f", N, [49], WINDOW)]) == pytest.approx(100 * 1.248242 / 2, abs=1e-4)
    # row 45: position -(49 - 45 + 1) / 10 = -0.5 -> 0.85979
    assert raw_score(N, [45], WINDOW) == pytest.approx(0.859793, abs=1e-6)


def test_only_the_first_detection_in_a_window_counts() -> None:
    assert raw_score(N, [44, 40, 49], WINDOW) == pytest.approx(1.0)


def test_false_positives() -> None:
    # before the first window: -A_fp
    assert raw_score(N, [20, 40], WINDOW) == pytest.approx(1.0 - 0.11)
    assert normalised_score([FileResult("f", N, [20, 40], WINDOW)]) == pytest.approx(94.5)
    # right after the window: position |49 - 50| / 9 -> 0.11 * sigma(1/9) = -0.029793
    assert raw_score(N, [40, 50], WINDOW) == pytest.approx(1.0 - 0.029793, abs=1e-6)
    # far after the window (position > 3): the full -A_fp
    assert raw_score(N, [40, 90], WINDOW) == pytest.approx(1.0 - 0.11)
    # a lone FP: the window is also missed
    assert raw_score(N, [90], WINDOW) == pytest.approx(-1.11)


def test_probationary_detections_are_ignored() -> None:
    assert raw_score(N, [5, 40], WINDOW) == pytest.approx(1.0)


def test_profile_weights_apply() -> None:
    from adnomaly.detection.nab import LOW_FN, LOW_FP

    assert raw_score(N, [20], WINDOW, LOW_FP) == pytest.approx(-0.22 - 1.0)
    assert raw_score(N, [], WINDOW, LOW_FN) == pytest.approx(-2.0)
    assert raw_score(N, [20], WINDOW, STANDARD) == pytest.approx(-1.11)


def test_normalisation_sums_over_files() -> None:
    files = [FileResult("a", N, [40], WINDOW), FileResult("b", N, [], WINDOW)]
    assert normalised_score(files) == pytest.approx(50.0)


def test_window_rows_map_timestamps_to_rows() -> None:
    times = [float(t) for t in range(0, 1000, 10)]
    assert window_rows(times, [(400.0, 490.0), (5000.0, 6000.0)]) == [(40, 49)]
    assert window_rows(times, [(395.0, 494.0)]) == [(40, 49)]


# -- threshold optimisation (NAB's `--optimize`) --------------------------------------------------------------


def test_the_sweep_picks_the_threshold_that_maximises_the_corpus_total() -> None:
    from adnomaly.detection.nab import ScoredFile, optimise_threshold

    a = [0.0] * N
    a[40] = 0.9  # the window's first row: a full true positive
    a[20] = 0.5  # a false positive before the window (-0.11) at a lower score
    b = [0.0] * N
    b[45] = 0.4  # inside b's window: 0.85979 if the threshold reaches 0.4
    best = optimise_threshold([ScoredFile("a", a, WINDOW), ScoredFile("b", b, WINDOW)])
    # t = 0.9: 1 - 1 = 0; t = 0.5: 1 - 0.11 - 1; t = 0.4: 1 - 0.11 + 0.85979 = 1.74979 (best)
    assert best.threshold == 0.4
    assert best.raw == pytest.approx(1.0 - 0.11 + 0.859793, abs=1e-6)
    assert (best.alarms, best.false_alarms, best.windows_hit, best.windows) == (3, 1, 2, 2)
    assert best.normalised == pytest.approx(100 * (best.raw + 2) / 4)


def test_every_row_at_or_above_the_threshold_is_an_alarm() -> None:
    """NAB thresholds scores row by row: a detector that keeps its score high pays every row outside windows."""
    from adnomaly.detection.nab import ScoredFile, optimise_threshold

    flat = [0.0] * N
    for i in range(20, 30):
        flat[i] = 1.0  # ten false positives at the top score, and nothing in the window
    best = optimise_threshold([ScoredFile("f", flat, WINDOW)])
    assert best.alarms == 0 and best.normalised == 0.0  # never alarming beats it, as for NAB's null detector


def test_the_sweep_agrees_with_raw_score_at_its_threshold() -> None:
    import random

    from adnomaly.detection.nab import ScoredFile, optimise_threshold

    rng = random.Random(3)
    files, results = [], []
    for k in range(4):
        n = 300 + 50 * k
        windows = [(100 + 10 * k, 140 + 10 * k), (200, 230)]
        values = [rng.random() ** 3 for _ in range(n)]
        files.append(ScoredFile(f"f{k}", values, windows))
    best = optimise_threshold(files)
    for f in files:
        fired = [i for i, s in enumerate(f.scores) if s >= best.threshold]
        results.append(FileResult(f.name, len(f.scores), fired, list(f.windows)))
    assert best.normalised == pytest.approx(normalised_score(results), abs=1e-9)
    for nudge in (0.999, 1.001):  # and no neighbouring threshold does better
        cut = best.threshold * nudge
        fired_all = [FileResult(f.name, len(f.scores), [i for i, s in enumerate(f.scores) if s >= cut],
                                list(f.windows)) for f in files]  # fmt: skip
        assert normalised_score(fired_all) <= best.normalised + 1e-9


def test_a_window_inside_the_probationary_period_is_not_scored() -> None:
    from adnomaly.detection.nab import ScoredFile, optimise_threshold

    scores = [0.0] * N
    scores[40] = 1.0
    best = optimise_threshold([ScoredFile("f", scores, [(2, 8), (40, 49)])])  # rows 0-14 are probationary
    assert best.windows == 1 and best.normalised == pytest.approx(100.0)


def test_the_lifecycle_sweep_scores_the_engine_rule_exactly() -> None:
    """Row i alarms at t when score_i >= t > prior_max_i: checked against the per-file scorer at the optimum and
    at every other threshold."""
    import random

    from adnomaly.detection.engine import prior_maxima
    from adnomaly.detection.nab import LifecycleFile, optimise_lifecycle

    rng = random.Random(5)
    files = []
    for k in range(3):
        n = 400
        scores = [rng.random() ** 4 for _ in range(n)]
        files.append(LifecycleFile(f"f{k}", scores, prior_maxima(scores, 5), [(120 + 30 * k, 170 + 30 * k)]))

    def opened(f: LifecycleFile, t: float) -> list[int]:
        return [i for i, (s, m) in enumerate(zip(f.scores, f.prior_max, strict=True)) if s >= t > m]

    def total(t: float) -> float:
        return normalised_score([FileResult(f.name, len(f.scores), opened(f, t), list(f.windows)) for f in files])

    best = optimise_lifecycle(files)
    assert best.normalised == pytest.approx(total(best.threshold), abs=1e-9)
    candidates = sorted({s for f in files for s in f.scores if s > 0})
    assert max(total(t) for t in candidates[::7]) <= best.normalised + 1e-9
