"""The local executor of the scaling decision: rounds, history between rounds, and what it reports."""

from __future__ import annotations

from adnomaly.local.autoscale import LocalScaler, ScaleEvent
from adnomaly.scaling import LagScaling

POLICY = LagScaling(topic="raw", consumer_group="g", partitions=4, min_replicas=1, max_replicas=4,
                    lag_threshold=1000, scale_down_stabilization_s=60)  # fmt: skip


def test_rounds_are_due_every_round_period_and_never_without_policies() -> None:
    scaler = LocalScaler({"processor": POLICY}, round_s=15)
    assert scaler.due(0.0)
    scaler.round(0.0, {"processor": [0, 0, 0, 0]}, {"processor": 1})
    assert not scaler.due(14.9) and scaler.due(15.0)
    assert not LocalScaler({}).due(0.0)


def test_a_backlog_scales_up_at_once_and_down_only_after_the_window() -> None:
    scaler = LocalScaler({"processor": POLICY}, round_s=15)
    up = scaler.round(0.0, {"processor": [3000, 3000, 3000, 3000]}, {"processor": 1})
    assert up == [ScaleEvent("processor", 1, 4, 12_000)]  # 12 wanted: one round may go to 1 + 4, the cap is 4
    assert scaler.round(15.0, {"processor": [2000] * 4}, {"processor": 4}) == []
    # drained: the lag is 0, but the window remembers the higher recommendations for 60 s
    assert scaler.round(30.0, {"processor": [0] * 4}, {"processor": 4}) == []
    assert scaler.round(60.0, {"processor": [0] * 4}, {"processor": 4}) == []
    down = scaler.round(90.0, {"processor": [0] * 4}, {"processor": 4})
    assert down == [ScaleEvent("processor", 4, 1, 0)]
    assert [e.after for e in scaler.events] == [4, 1]
    assert down[0].text() == "scaled processor down: 4 → 1 replicas (lag 0)"


def test_a_component_whose_lag_is_unknown_keeps_its_replicas() -> None:
    scaler = LocalScaler({"processor": POLICY, "lake-sink": POLICY}, round_s=15)
    changes = scaler.round(0.0, {"lake-sink": [5000, 0, 0, 0]}, {"processor": 3, "lake-sink": 1})
    assert changes == []  # lag on one partition is one consumer's work; the processor was not judged
    assert "processor" not in scaler.history


def test_the_benchmark_load_follows_its_rate_step() -> None:
    from adnomaly.bench.autoscale import Step

    step = Step(base_rate=500, step_rate=20_000, before_s=10, step_s=60)
    assert [step.due(t) for t in (0, 10, 40, 70, 72)] == [0, 5000, 605_000, 1_205_000, 1_206_000]
    assert step.step_end_s == 70
