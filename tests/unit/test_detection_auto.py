"""The `auto` method and its parts: the decaying empirical tail, the models, the lifecycle as NAB sees it.

Series here are small stand-ins for the shapes the method must survive (zero-inflated counts, quantised
CPU, constant stretches, daily cycles, level shifts); the benchmark on real labelled data is
`adnomaly bench nab` (tests/unit/test_nab_bench.py runs it on the NAB files in ../shared/third_party).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from adnomaly.detection.auto import AutoKey, AutoModel
from adnomaly.detection.detectors import AutoDetector, build_detector
from adnomaly.detection.engine import DetectionEngine, opening_scores
from adnomaly.detection.tail import DecayingTail, TailPair
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import Auto, DetectionSpec, DetectorSpec
from hypothesis import given, settings
from hypothesis import strategies as st

STEP = 300.0  # five-minute rows, as most NAB series
T0 = 1_420_070_400.0  # 2015-01-01, a Thursday


def scores(values: list[float], params: Auto | None = None) -> list[float | None]:
    detector = AutoDetector(params or Auto())
    out = []
    for i, v in enumerate(values):
        verdict = detector.judge(("k",), v, 1, T0 + i * STEP)
        out.append(None if verdict is None else verdict.score)
    return out


def alarms(values: list[float], threshold: float = Auto().threshold, hold_down: int = 20) -> list[int]:
    return [i for i, s in enumerate(opening_scores(scores(values), hold_down)) if s >= threshold]


# -- DecayingTail ------------------------------------------------------------------------------------------


def test_tail_warms_up_then_ranks_magnitudes() -> None:
    tail = DecayingTail(memory=1000, warmup=50)
    rng = random.Random(1)
    for _ in range(49):
        tail.add(abs(rng.gauss(0, 1)))
    assert tail.p_value(1.0) is None
    for _ in range(951):
        tail.add(abs(rng.gauss(0, 1)))
    assert tail.p_value(0.0) == 1.0  # nothing is below zero
    assert tail.p_value(0.6745) == pytest.approx(0.5, abs=0.06)  # the median of |N(0,1)|
    assert tail.p_value(1.96) == pytest.approx(0.05, abs=0.015)
    far, farther = tail.p_value(6.0), tail.p_value(9.0)
    assert far is not None and farther is not None and 0 < farther < far < 1e-3  # extrapolated, still ordered


def test_tail_of_a_quantised_series_finds_ordinary_steps_ordinary() -> None:
    """EC2 CPU style: steps of 0.066, mostly one or two steps apart. A z-score with a MAD of 0 explodes here."""
    tail = DecayingTail(memory=1000, warmup=50)
    rng = random.Random(2)
    for _ in range(1000):
        tail.add(0.066 * rng.choice([0, 0, 0, 0, 1, 1, 2]))
    assert tail.p_value(0.066) > 0.2
    assert tail.p_value(0.132) > 0.05
    assert tail.p_value(3.3) < 1e-6  # fifty steps


def test_tail_forgets_the_distant_past() -> None:
    tail = DecayingTail(memory=200, warmup=10)
    for _ in range(1000):
        tail.add(10.0)
    for _ in range(2000):
        tail.add(1.0)
    p = tail.p_value(10.0)
    assert p is not None and p < 1e-3  # ten was normal thousands of rows ago, no longer


def test_tail_state_round_trips_exactly() -> None:
    a = DecayingTail(memory=300, warmup=10)
    rng = random.Random(3)
    for _ in range(5000):  # long enough for the weights to be rescaled
        a.add(rng.expovariate(1.0))
    b = DecayingTail(memory=300, warmup=10)
    b.load_state(msgspec.json.decode(msgspec.json.encode(a.state())))
    for r in (0.0, 0.5, 2.0, 30.0):
        assert a.p_value(r) == b.p_value(r)


def test_tail_pair_is_exactly_its_two_memories() -> None:
    """The pair judges and teaches both memories in one loop over one bin look-up: bit for bit what the two
    tails give on their own, through warm-up, exact zeros, far values and the weights' rescaling."""
    rng = random.Random(14)
    pair, long, short = TailPair(30, 10, 20), DecayingTail(30, 20), DecayingTail(10, 20)
    for i in range(6000):  # memory 10 grows the weights by 1.1 per value: rescaled after ~4,800
        r = 0.0 if i % 7 == 0 else rng.paretovariate(1.5) * (1e6 if i % 997 == 0 else 1.0)
        pl, ps = long.observe(r), short.observe(r)
        expected = None if pl is None or ps is None else -0.5 * math.log10(max(pl * ps, 1e-300))
        assert pair.surprise(r) == expected
    assert pair.state() == [long.state(), short.state()]


# -- the method on series shapes ---------------------------------------------------------------------------


def test_scores_are_in_the_unit_interval_and_warm_up_first() -> None:
    rng = random.Random(4)
    out = scores([100 + rng.gauss(0, 5) for _ in range(600)])
    assert all(s is None for s in out[:100])  # no model has 100 errors yet
    judged = [s for s in out if s is not None]
    assert judged and all(0.0 <= s < 1.0 for s in judged)


@pytest.mark.parametrize("shape", ["zero_inflated", "quantised", "constant_then_noise", "heavy_tailed"])
def test_no_false_alarms_on_anomaly_free_series_of_hard_shapes(shape: str) -> None:
    rng = random.Random(5)
    n = 4000
    if shape == "zero_inflated":  # night-time tweet counts
        values = [float(rng.random() < 0.08) * rng.randint(1, 3) for _ in range(n)]
    elif shape == "quantised":
        values = [0.066 * round(rng.gauss(30, 2)) for _ in range(n)]
    elif shape == "constant_then_noise":
        values = [5.0] * 300 + [5.0 + rng.choice([-0.1, 0.0, 0.1]) for _ in range(n - 300)]
    else:
        values = [rng.paretovariate(2.5) for _ in range(n)]
    # Two weeks of five-minute rows. Heavy-tailed noise has real one-in-a-few-thousand extremes and the
    # default threshold flags the most extreme few (a z-score method flags hundreds here); the others stay quiet.
    assert len(alarms(values)) <= (3 if shape == "heavy_tailed" else 1), shape


def test_a_spike_in_noise_is_found_at_once() -> None:
    rng = random.Random(6)
    values = [50 + rng.gauss(0, 2) for _ in range(1500)]
    values[1200] = 90.0
    assert alarms(values) == [1200]


def test_a_missing_daily_peak_is_found_by_the_daily_profile() -> None:
    """art_daily_nojump-like: a daily bump (rows 100-140 of each 288) that fails to come one day."""
    rng = random.Random(7)
    values = []
    for i in range(288 * 12):
        peak = 100 <= i % 288 < 140 and i // 288 != 9
        values.append((80.0 if peak else 20.0) + rng.gauss(0, 1))
    found = alarms(values)
    assert found and all(288 * 9 + 100 <= i < 288 * 9 + 140 for i in found), found


def test_a_level_shift_alarms_once_then_becomes_the_new_normal() -> None:
    rng = random.Random(8)
    values = [10 + rng.gauss(0, 1) for _ in range(1500)] + [25 + rng.gauss(0, 1) for _ in range(2500)]
    found = alarms(values)
    assert found and found[0] in range(1500, 1505) and all(i < 1700 for i in found), found
    late = [s for s in scores(values)[-500:] if s is not None]
    assert max(late) < Auto().threshold  # adopted: no alarm 2000 rows later


def test_direction_above_ignores_drops() -> None:
    rng = random.Random(9)
    values = [50 + rng.gauss(0, 2) for _ in range(1500)]
    values[1200] = 10.0
    values[1400] = 90.0
    detector = AutoDetector(Auto(direction="above"))
    out = []
    for i, v in enumerate(values):
        verdict = detector.judge(("k",), v, 1, T0 + i * STEP)
        out.append(None if verdict is None else verdict.score)
    assert out[1200] is not None and out[1200] < 0.5
    assert out[1400] is not None and out[1400] >= Auto().threshold


def test_verdict_carries_the_expected_value_and_a_reason() -> None:
    rng = random.Random(10)
    detector = AutoDetector(Auto())
    for i in range(1500):
        detector.judge(("k",), 50 + rng.gauss(0, 2), 1, T0 + i * STEP)
    verdict = detector.judge(("k",), 90.0, 1, T0 + 1500 * STEP)
    assert verdict is not None and verdict.severity == "critical" and verdict.score >= 0.99
    assert verdict.expected == pytest.approx(50, abs=2)
    assert verdict.statistic >= 12 and "90 is rare for its" in verdict.reason and "p=" in verdict.reason


def test_min_count_guard() -> None:
    detector = AutoDetector(Auto(min_count=10))
    assert detector.judge(("k",), 1.0, 9, T0) is None
    assert detector.model.keys == {}  # a thin window teaches the model nothing


def test_keys_are_independent_and_state_round_trips_exactly() -> None:
    """Mid-stream snapshot through the component's JSON codec: the restored detector judges every later window
    exactly (bit for bit) as the uninterrupted one."""
    rng = random.Random(11)
    series = {k: [rng.gauss(100 * (j + 1), 5) for _ in range(2000)] for j, k in enumerate("abc")}
    for k in "abc":
        series[k][1600] *= 2
    a = AutoModel(Auto())
    b: AutoModel | None = None
    for i in range(2000):
        if i == 1300:
            b = AutoModel(Auto())
            b.load_state(msgspec.json.decode(msgspec.json.encode(a.state())))
        for k in "abc":
            ea = a.judge((k,), T0 + i * STEP, series[k][i])
            if b is not None:
                assert b.judge((k,), T0 + i * STEP, series[k][i]) == ea
    assert b is not None and b.state() == a.state()


def test_state_is_bounded_per_key() -> None:
    rng = random.Random(12)
    key = AutoKey()
    for i in range(20_000):
        key.judge(T0 + i * 60, rng.lognormvariate(3, 1), 0)
    size = len(msgspec.json.encode(key.state()))
    assert size < 20_000  # ~1.3 k numbers whatever the length of the series


# -- the lifecycle as one score per row --------------------------------------------------------------------


def _engine_opens(values: list[float], threshold: float, hold_down: int) -> list[int]:
    spec = DetectionSpec.model_validate({"detectors": [{
        "name": "d", "feature": "f", "metric": "v", "resolveAfter": hold_down,
        "auto": {"threshold": threshold, "criticalThreshold": threshold},
    }]})  # fmt: skip
    engine = DetectionEngine(pipeline="p", detection=spec)
    opened = []
    for i, v in enumerate(values):
        at = datetime.fromtimestamp(T0 + i * STEP, UTC)
        record = FeatureRecord(feature="f", dimensions={}, window_start=at - timedelta(seconds=STEP), window_end=at,
                               metrics={"v": v}, event_count=1)  # fmt: skip
        if any(a.status == "open" for a in engine.process(record)):
            opened.append(i)
    return opened


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
@pytest.mark.parametrize("hold_down", [1, 5, 40])
def test_opening_scores_hold_every_engine_opening_and_only_escalations_besides(
    threshold: float, hold_down: int
) -> None:  # fmt: skip
    rng = random.Random(13)
    values = [rng.lognormvariate(2, 0.6) + (60 if rng.random() < 0.01 else 0) for _ in range(1200)]
    raw = [0.0 if s is None else s for s in scores(values)]
    opening = opening_scores(raw, hold_down)
    engine = _engine_opens(values, threshold, hold_down)
    flagged = [i for i, s in enumerate(opening) if s >= threshold]
    assert engine and set(engine) <= set(flagged)
    for i in set(flagged) - set(engine):  # an escalation: an anomaly was open at this threshold
        assert max(raw[max(0, i - hold_down) : i]) >= threshold


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.integers(1, 10))
@settings(max_examples=200, deadline=None)
def test_opening_scores_is_the_running_maximum_rule(values: list[float], hold_down: int) -> None:
    out = opening_scores(values, hold_down)
    for i, s in enumerate(values):
        before = values[max(0, i - hold_down) : i]
        assert out[i] == (s if not before or s > max(before) else 0.0)


def test_build_detector_knows_auto() -> None:
    spec = DetectorSpec.model_validate({"name": "a", "feature": "f", "metric": "m", "auto": {}})
    assert spec.method == "auto" and spec.hold_down == 20
    assert isinstance(build_detector(spec), AutoDetector)
    assert math.isclose(Auto().threshold, 0.95) and math.isclose(Auto().critical_threshold, 0.99)
