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


def test_with_a_target_in_seconds_the_executor_measures_the_rate_and_decides_with_it() -> None:
    policy = LagScaling(topic="raw", consumer_group="g", partitions=4, min_replicas=1, max_replicas=4,
                        lag_threshold=1000, scale_down_stabilization_s=60,
                        target_lag_s=10, replica_rate=100)  # fmt: skip
    scaler = LocalScaler({"processor": policy}, round_s=15)
    # 2000 behind: at the stated 100/s that is 20 s of work, two replicas' 10 s
    assert scaler.round(0.0, {"processor": [500] * 4}, {"processor": 1}, {"processor": 10_000}) == [
        ScaleEvent("processor", 1, 2, 2000)]
    assert "processor" not in scaler.rates  # one look is no rate yet
    # the interval across the scale-up had a rebalance in it: no measurement
    assert scaler.round(15.0, {"processor": [500] * 4}, {"processor": 2}, {"processor": 12_000}) == []
    assert "processor" not in scaler.rates
    # 15 s later two replicas committed 6000 more while lag stayed: 200/s each, a 2000-record threshold
    assert scaler.round(30.0, {"processor": [500] * 4}, {"processor": 2}, {"processor": 18_000}) == []
    assert scaler.rates["processor"] == 200.0
    # the executor uses the measured rate: 4000 behind is 2 replicas' worth now (at the stated rate, 4)
    assert scaler.round(45.0, {"processor": [1000] * 4}, {"processor": 2}, {"processor": 24_000}) == []
    # an idle round (no lag) measures nothing and keeps the estimate
    scaler.round(60.0, {"processor": [0] * 4}, {"processor": 2}, {"processor": 24_100})
    assert scaler.rates["processor"] == 200.0
