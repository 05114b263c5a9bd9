"""Detectors, lifecycle, offline windowing and scoring of `adnomaly.detection`."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from adnomaly.bench.detection import run_scenario
from adnomaly.detection.anomaly import DECODER, ENCODER, anomaly_id
from adnomaly.detection.detectors import EwmaDetector, RobustZDetector, ThresholdDetector
from adnomaly.detection.dlq import InvalidShareWindows
from adnomaly.detection.engine import DetectionEngine
from adnomaly.detection.scoring import Alarm, Label, normal_hours, score
from adnomaly.detection.windowing import FeatureWindows, percentile, window_all, window_starts
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import DetectionSpec, Ewma, FeatureSpec, RobustZScore, ThresholdRule

T0 = datetime(2026, 1, 1, tzinfo=UTC)
US = 1_000_000


def _us(seconds: float) -> int:
    return int((T0.timestamp() + seconds) * US)


# -- windowing ------------------------------------------------------------------------------------------


def _feature(window: dict[str, str], lateness: str = "0s") -> FeatureSpec:
    return FeatureSpec.model_validate({
        "name": "f", "dimensions": ["geo"], "window": window, "allowedLateness": lateness,
        "metrics": [
            {"name": "n", "agg": "count"}, {"name": "avg", "agg": "avg", "field": "x"},
            {"name": "p50", "agg": "p50", "field": "x"}, {"name": "mx", "agg": "max", "field": "x"},
            {"name": "ok", "agg": "avg", "field": "ok"},
            {"name": "r", "agg": "ratio", "numerator": "x", "denominator": "d"},
        ],
    })  # fmt: skip


def test_percentile_interpolates_linearly_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0], 0.99) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == pytest.approx(4.6)


def test_window_starts_of_hopping_and_tumbling() -> None:
    assert list(window_starts(125, 60, 60)) == [120]
    assert list(window_starts(125, 60, 30)) == [90, 120]


def test_tumbling_windows_aggregate_per_key_and_fire_in_order() -> None:
    events = [
        (_us(1), {"geo": "US", "x": 1.0, "ok": True, "d": 2.0}),
        (_us(2), {"geo": "US", "x": 3.0, "ok": False, "d": 2.0}),
        (_us(3), {"geo": "DE", "x": 5.0, "ok": True, "d": 0.0}),
        (_us(61), {"geo": "US", "x": 7.0, "ok": True, "d": 1.0}),
    ]
    records = window_all([_feature({"type": "tumbling", "size": "1m"})], events)
    assert [(r.dimensions["geo"], r.window_start, r.event_count) for r in records] == [
        ("DE", T0, 1), ("US", T0, 2), ("US", T0 + timedelta(minutes=1), 1),
    ]  # fmt: skip
    us = records[1]
    assert us.metrics == {"n": 2.0, "avg": 2.0, "p50": 2.0, "mx": 3.0, "ok": 0.5, "r": 1.0}
    assert records[0].metrics["r"] is None  # denominator sums to 0
    assert us.window_end == T0 + timedelta(minutes=1)


def test_hopping_windows_count_an_event_in_each_of_its_windows() -> None:
    records = window_all([_feature({"type": "hopping", "size": "1m", "slide": "30s"})],
                         [(_us(40), {"geo": "US", "x": 1.0})])  # fmt: skip
    assert [r.window_start for r in records] == [T0, T0 + timedelta(seconds=30)]


def test_late_event_is_dropped_once_its_window_fired() -> None:
    w = FeatureWindows(_feature({"type": "tumbling", "size": "1m"}, lateness="10s"))
    assert w.add(_us(5), {"geo": "US", "x": 1.0}) == []
    assert w.add(_us(65), {"geo": "US", "x": 1.0}) == []  # watermark 55 s: window 0 still open
    assert w.add(_us(50), {"geo": "US", "x": 1.0}) == []  # within lateness: counted
    fired = w.add(_us(75), {"geo": "US", "x": 1.0})  # watermark 65 s: window 0 fires
    assert [r.event_count for r in fired] == [2]
    assert w.add(_us(30), {"geo": "US", "x": 1.0}) == []  # too late: dropped
    assert [r.event_count for r in w.flush()] == [2]


def test_invalid_share_windows() -> None:
    w = InvalidShareWindows(60 * US)
    for i in range(10):
        assert w.add(_us(i), i % 5 != 0) == []
    (record,) = w.add(_us(61), True)
    assert record.metrics == {"invalid_share": 0.2, "invalid_count": 2.0, "event_count": 10.0}
    assert record.event_count == 10 and record.dimensions == {}


# -- detectors ------------------------------------------------------------------------------------------


def test_threshold_levels_and_min_count() -> None:
    d = ThresholdDetector(ThresholdRule(warning_below=0.9, critical_below=0.8), min_count=10)
    assert d.judge((), 0.5, 9) is None
    assert d.judge((), None, 100) is None
    assert d.judge((), 0.95, 10).severity is None  # type: ignore[union-attr]
    assert d.judge((), 0.85, 10).severity == "warning"  # type: ignore[union-attr]
    crit = d.judge((), 0.7, 10)
    assert crit is not None and crit.severity == "critical" and crit.expected == 0.8
    up = ThresholdDetector(ThresholdRule(warning_above=0.1), min_count=1)
    assert up.judge((), 0.2, 1).severity == "warning"  # type: ignore[union-attr]


def test_robust_z_warms_up_then_flags_outliers_per_key() -> None:
    d = RobustZDetector(RobustZScore(threshold=4, min_count=5, history=20))
    normal = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.3]
    assert [d.judge(("a",), v, 50) for v in normal] == [None] * 8  # warming up
    assert d.judge(("a",), 10.0, 50).severity is None  # type: ignore[union-attr]
    spike = d.judge(("a",), 20.0, 50)
    assert spike is not None and spike.severity == "critical" and spike.expected == 10.0
    assert d.judge(("a",), 11.5, 50).severity == "warning"  # type: ignore[union-attr]
    assert d.judge(("b",), 20.0, 50) is None  # another key has its own baseline
    assert d.judge(("a",), 50.0, 4) is None  # min-count guard


def test_robust_z_constant_baseline_uses_a_relative_floor() -> None:
    d = RobustZDetector(RobustZScore(threshold=4, min_count=1, history=10))
    for _ in range(8):
        d.judge((), 100.0, 1)
    assert d.judge((), 101.0, 1).severity is None  # type: ignore[union-attr]  # 1 % off: z = 0.5
    assert d.judge((), 110.0, 1).severity is not None  # type: ignore[union-attr]


def test_ewma_warmup_detection_and_clipped_baseline() -> None:
    d = EwmaDetector(Ewma(alpha=0.3, threshold=4, min_count=1, warmup=5))
    values = [10.0, 10.4, 9.6, 10.2, 9.8, 10.1]
    verdicts = [d.judge((), v, 1) for v in values]
    assert verdicts[:5] == [None] * 5
    assert verdicts[5] is not None and verdicts[5].severity is None
    before = d.state_by_key[()]
    mean, sd = before.mean, max(math.sqrt(before.var), 0.02 * before.mean, before.quantum)  # the floored scale
    spike = d.judge((), 30.0, 1)
    assert spike is not None and spike.severity == "critical" and spike.score >= 0.75
    # an out-of-control window moves the baseline by a clipped step only (alpha * 3 sd), variance untouched
    assert d.state_by_key[()].mean == pytest.approx(mean + 0.3 * 3 * sd)
    assert d.state_by_key[()].var == pytest.approx(before.var)
    assert d.judge((), 30.0, 1).severity == "critical"  # type: ignore[union-attr]


def test_ewma_adopts_a_lasting_level_shift() -> None:
    """The old chart froze on its first out-of-control window and alarmed for ever after a level shift."""
    d = EwmaDetector(Ewma(alpha=0.3, threshold=4, min_count=1, warmup=5))
    for v in [10.0, 10.4, 9.6, 10.2, 9.8, 10.1, 9.9, 10.3]:
        d.judge((), v, 1)
    severities = [d.judge((), 30.0 + (i % 3) * 0.2, 1).severity for i in range(200)]  # type: ignore[union-attr]
    assert severities[0] == "critical"
    assert severities[-50:] == [None] * 50  # the shift became the new normal


def test_z_detectors_floor_their_scale_at_the_series_quantum() -> None:
    """A quantised series (steps of 0.5) that sat still for a while: its next ordinary step is no anomaly."""
    d = RobustZDetector(RobustZScore(threshold=4, min_count=1, history=20))
    for v in [1.0, 1.5, 1.0, 1.5] + [1.0] * 20:
        d.judge((), v, 1)
    verdict = d.judge((), 1.5, 1)
    assert verdict is not None and verdict.severity is None and abs(verdict.statistic) <= 1.0


# -- lifecycle ------------------------------------------------------------------------------------------


def _record(minute: int, value: float, count: int = 100, geo: str = "US") -> FeatureRecord:
    start = T0 + timedelta(minutes=minute)
    return FeatureRecord(
        feature="f", dimensions={"geo": geo}, window_start=start, window_end=start + timedelta(minutes=1),
        metrics={"rate": value}, event_count=count,
    )  # fmt: skip


def _engine() -> DetectionEngine:
    spec = DetectionSpec.model_validate({"detectors": [
        {"name": "low-rate", "feature": "f", "metric": "rate",
         "threshold": {"warningBelow": 0.9, "criticalBelow": 0.8}},
        {"name": "other", "feature": "g", "metric": "rate", "threshold": {"warningBelow": 0.9}},
    ]})  # fmt: skip
    return DetectionEngine(pipeline="p", detection=spec)


def test_lifecycle_open_dedup_escalate_resolve() -> None:
    engine = _engine()
    assert engine.process(_record(0, 0.95)) == []
    (opened,) = engine.process(_record(1, 0.85), context={"traceparent": "00-abc-def-01"})
    assert (opened.status, opened.severity) == ("open", "warning")
    assert (opened.type, opened.detector) == ("low-rate", "threshold")
    assert opened.context == {"event_count": 100, "traceparent": "00-abc-def-01"}
    assert opened.detected_at == T0 + timedelta(minutes=2)
    assert engine.process(_record(2, 0.5)) == []  # deduplicated: still the same anomaly
    assert engine.process(_record(3, 0.5, count=3)) == []  # too thin to judge: towards resolving...
    assert engine.process(_record(4, 0.5)) == []  # ...but an alarming window starts the count again
    assert engine.process(_record(5, 0.95)) == []  # one normal window is not enough
    (resolved,) = engine.process(_record(6, 0.96))
    assert resolved.id == opened.id and resolved.status == "resolved" and resolved.severity == "critical"
    assert resolved.resolved_at == T0 + timedelta(minutes=7)
    assert opened.severity == "warning"  # what was published is not mutated
    (again,) = engine.process(_record(7, 0.5))
    assert again.id != opened.id and again.severity == "critical"
    assert engine.process(_record(7, 0.5, geo="DE"))[0].dimensions == {"geo": "DE"}


def test_thin_windows_never_open_but_resolve_a_burst_whose_key_went_quiet() -> None:
    engine = _engine()
    assert engine.process(_record(0, 0.1, count=3)) == []  # too thin: never opens
    (opened,) = engine.process(_record(1, 0.5))
    assert engine.process(_record(2, 0.1, count=3)) == []
    (resolved,) = engine.process(_record(3, 0.1, count=2))  # back to thin traffic: resolved, not kept open
    assert (resolved.id, resolved.status, resolved.resolved_at) == (opened.id, "resolved", T0 + timedelta(minutes=4))
    (reopened,) = engine.process(_record(9, 0.5))  # the key's next anomaly is a new one
    assert reopened.id != opened.id


def test_replay_gives_identical_records_and_restore_keeps_dedup() -> None:
    records = [_record(m, v) for m, v in enumerate([0.95, 0.5, 0.5, 0.95, 0.95])]
    e1, e2 = _engine(), _engine()
    run1 = [a for r in records for a in e1.process(r)]
    run2 = [a for r in records for a in e2.process(r)]
    assert [ENCODER.encode(a) for a in run1] == [ENCODER.encode(a) for a in run2]
    assert [a.status for a in run1] == ["open", "resolved"]
    assert DECODER.decode(ENCODER.encode(run1[0])) == run1[0]
    restored = _engine()
    restored.restore([run1[0]])
    assert restored.process(_record(2, 0.5)) == []  # already open: no duplicate after a restart
    replaying = _engine()
    replaying.restore([run1[0]])
    assert replaying.process(_record(1, 0.5)) == [run1[0]]  # its opening window replayed: published again
    assert replaying.process(_record(1, 0.5)) == []
    assert anomaly_id("p", "low-rate", {"geo": "US"}, T0) == anomaly_id("p", "low-rate", {"geo": "US"}, T0)
    assert anomaly_id("p", "low-rate", {"geo": "US"}, T0) != anomaly_id("q", "low-rate", {"geo": "US"}, T0)


def test_engine_rejects_bad_resolve_after() -> None:
    with pytest.raises(ValueError, match="resolve_after"):
        DetectionEngine(pipeline="p", detection=DetectionSpec(), resolve_after=0)


# -- scoring --------------------------------------------------------------------------------------------


def test_scoring_matches_key_and_time_with_one_window_of_grace() -> None:
    w = timedelta(minutes=1)
    labels = [Label({"geo": "US"}, T0 + timedelta(minutes=10), T0 + timedelta(minutes=13)),
              Label({"geo": "DE"}, T0 + timedelta(minutes=30), T0 + timedelta(minutes=33))]  # fmt: skip
    alarms = [
        Alarm({"geo": "US"}, T0 + timedelta(minutes=11)),  # TP, delay 60 s
        Alarm({"geo": "US"}, T0 + timedelta(minutes=14)),  # TP: within the grace window
        Alarm({"geo": "FR"}, T0 + timedelta(minutes=11)),  # wrong key
        Alarm({"geo": "DE"}, T0 + timedelta(minutes=35)),  # too late
    ]
    s = score(alarms, labels, (T0, T0 + timedelta(hours=1)), w)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == 0.5
    assert s.median_delay_s == 60.0
    assert s.normal_hours == pytest.approx(52 / 60)
    assert s.false_alarms == 2 and s.false_alarms_per_hour == pytest.approx(2 / (52 / 60))


def test_normal_hours_merge_overlapping_labels() -> None:
    labels = [
        Label({}, T0, T0 + timedelta(minutes=30)), Label({}, T0 + timedelta(minutes=20), T0 + timedelta(minutes=40))
    ]
    assert normal_hours(labels, (T0, T0 + timedelta(hours=1)), timedelta(0)) == pytest.approx(1 / 3)


# -- the benchmark end to end (short runs) -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["regionalOutage", "malformedStorm"])
def test_bench_detects_a_scenario_without_false_alarms(scenario: str) -> None:
    result = run_scenario(scenario, seed=3, hours=0.75, rate=20.0)
    assert result.labels >= 1
    assert result.recall == 1.0 and result.false_alarms == 0
    assert result.median_delay_s is not None and result.median_delay_s <= 120


# -- direction, per-detector settings, state round trip ------------------------------------------------------


@pytest.mark.parametrize(("direction", "flags_high", "flags_low"),
                         [("both", True, True), ("above", True, False), ("below", False, True)])  # fmt: skip
def test_direction_of_statistical_detectors(direction: str, flags_high: bool, flags_low: bool) -> None:
    normal = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.3, 10.0, 9.7]
    for make in (lambda: RobustZDetector(RobustZScore(threshold=4, min_count=1, direction=direction)),
                 lambda: EwmaDetector(Ewma(alpha=0.3, threshold=4, min_count=1, warmup=5, direction=direction))):
        high, low = make(), make()
        for v in normal:
            high.judge((), v, 1)
            low.judge((), v, 1)
        up, down = high.judge((), 30.0, 1), low.judge((), -10.0, 1)
        assert up is not None and down is not None
        assert (up.severity is not None, down.severity is not None) == (flags_high, flags_low)
        assert up.statistic > 0 > down.statistic  # the statistic keeps its sign whatever the direction
        assert all(0.0 <= v.score <= 1.0 for v in (up, down))
        assert (up.score >= 0.5, down.score >= 0.5) == (flags_high, flags_low)  # the score sees only the direction


def test_threshold_min_count_from_the_rule_wins() -> None:
    assert ThresholdDetector(ThresholdRule(warning_above=1, min_count=3), min_count=50).min_count == 3
    assert ThresholdDetector(ThresholdRule(warning_above=1), min_count=50).min_count == 50


def test_per_detector_resolve_after() -> None:
    spec = DetectionSpec.model_validate({"detectors": [
        {"name": "slow", "feature": "f", "metric": "rate", "threshold": {"warningBelow": 0.9}, "resolveAfter": 4},
        {"name": "fast", "feature": "f", "metric": "rate", "threshold": {"warningBelow": 0.9}},
    ]})  # fmt: skip
    engine = DetectionEngine(pipeline="p", detection=spec, resolve_after=1)
    assert {a.type for a in engine.process(_record(0, 0.5))} == {"slow", "fast"}
    resolved_at = {}
    for minute in range(1, 6):
        for a in engine.process(_record(minute, 0.95)):
            resolved_at[a.type] = minute
    assert resolved_at == {"fast": 1, "slow": 4}


def _mixed_engine() -> DetectionEngine:
    spec = DetectionSpec.model_validate({"detectors": [
        {"name": "low-rate", "feature": "f", "metric": "rate", "threshold": {"warningBelow": 0.9},
         "resolveAfter": 3},
        {"name": "rate-z", "feature": "f", "metric": "rate", "robustZScore": {"threshold": 3, "minCount": 1}},
        {"name": "rate-ewma", "feature": "f", "metric": "rate",
         "ewma": {"alpha": 0.3, "threshold": 3, "minCount": 1, "warmup": 4}},
    ]})  # fmt: skip
    return DetectionEngine(pipeline="p", detection=spec)


def _mixed_records() -> list[FeatureRecord]:
    out = []
    for minute in range(40):
        for shift, geo in enumerate(("US", "DE")):
            bad = (minute + 3 * shift) % 13 in (9, 10)
            value = 0.5 if bad else 0.95 + 0.01 * ((minute * 7 + shift) % 4)
            out.append(_record(minute, value, geo=geo))
    return out


def test_snapshot_and_load_resume_exactly_at_every_point() -> None:
    from adnomaly.detector.checkpoint import DECODER as CP_DECODER
    from adnomaly.detector.checkpoint import ENCODER as CP_ENCODER
    from adnomaly.detector.checkpoint import Checkpoint

    records = _mixed_records()
    whole = _mixed_engine()
    straight = [ENCODER.encode(a) for r in records for a in whole.process(r)]
    assert len(straight) > 10 and any(b'"resolved"' in a for a in straight)
    for cut in range(0, len(records), 7):
        first = _mixed_engine()
        before = [ENCODER.encode(a) for r in records[:cut] for a in first.process(r)]
        state = CP_DECODER.decode(CP_ENCODER.encode(Checkpoint(engine=first.snapshot()))).engine
        second = _mixed_engine()
        second.load(state)
        after = [ENCODER.encode(a) for r in records[cut:] for a in second.process(r)]
        assert before + after == straight, f"resuming at record {cut} changed the anomalies"


def test_load_skips_detectors_that_changed_or_went() -> None:
    engine = _mixed_engine()
    for r in _mixed_records()[:24]:  # minutes 0-11: US opened at 9, one normal window since
        engine.process(r)
    state = engine.snapshot()
    assert state.open and state.detectors["rate-z"].state
    other = _engine()  # only `low-rate` (same method) and `other`
    other.load(state)
    assert {key[0] for key in other.open} == {"low-rate"}
    assert all(o.normal_streak == engine.open[k].normal_streak for k, o in other.open.items())
    assert [o.normal_streak for o in other.open.values()] == [1]  # the streak survives, not just the anomaly


def test_invalid_share_windows_fire_by_the_lagging_partitions_and_round_trip() -> None:
    w = InvalidShareWindows(60 * US, lateness_us=10 * US)
    assert w.watermark(["raw:0"]) < _us(0)  # nothing seen yet
    for i in range(10):
        assert w.count_raw(_us(i), "raw:0")
    assert w.count_invalid(_us(1), "dlq:0")
    assert w.count_raw(_us(100), "raw:0")
    assert w.watermark(["raw:1"]) < _us(0)  # raw:1 has records to read but none read yet: hold back
    assert w.fire(w.watermark(["raw:1"])) == []
    assert w.count_raw(_us(2), "raw:1")  # the other partition's backlog: still counted
    assert w.watermark(["raw:1"]) == _us(2)
    assert w.watermark([]) == _us(100)  # all caught up: the newest time seen
    assert w.fire(_us(65)) == []  # 5 s past the end: still waiting for dead letters
    assert w.count_invalid(_us(3), "dlq:0")  # a dead letter produced late, still counted
    restored = InvalidShareWindows.from_state(60 * US, 10 * US, w.state())
    (record,) = restored.fire(restored.watermark([]))
    assert record.metrics == {"invalid_share": 2 / 11, "invalid_count": 2.0, "event_count": 11.0}
    assert record.window_end == T0 + timedelta(minutes=1)
    assert not restored.count_invalid(_us(5), "dlq:0") and restored.late == 1  # its window fired: dropped
    with pytest.raises(ValueError, match="window"):
        InvalidShareWindows(0)
