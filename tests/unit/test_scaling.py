"""The one scaling decision (adnomaly.scaling): KEDA's Kafka scaler + the HPA, as a pure function."""

from __future__ import annotations

import pytest
from adnomaly.scaling import (
    LagScaling,
    OffsetSample,
    Recommendation,
    decide,
    lag_metric,
    partition_lag,
    recommend,
    replica_rate,
    smooth_rate,
    threshold,
)


def policy(**overrides: object) -> LagScaling:
    base: dict[str, object] = dict(
        topic="p-raw", consumer_group="p-processor", partitions=6, min_replicas=1, max_replicas=6,
        lag_threshold=100, scale_down_stabilization_s=300.0,
    )
    return LagScaling(**{**base, **overrides})  # type: ignore[arg-type]


# --- the metric (KEDA) ----------------------------------------------------------------------------


def test_partition_lag_counts_an_uncommitted_partition_wholly() -> None:
    assert partition_lag(500, 120) == 380
    assert partition_lag(500, None) == 500  # the components start from the earliest offset
    assert partition_lag(500, -1001) == 500  # librdkafka's "no offset"
    assert partition_lag(100, 120) == 0  # a committed offset past the end (truncation) is no lag


def test_an_idle_topic_reports_no_lag() -> None:
    assert lag_metric([0, 0, 0, 0, 0, 0], 100) == 0
    assert lag_metric([], 100) == 0


def test_the_metric_is_capped_at_the_partitions_with_lag() -> None:
    # 10 000 records behind on one partition: one consumer can read it, so the metric asks for one replica
    assert lag_metric([10_000, 0, 0, 0, 0, 0], 100) == 100
    assert lag_metric([10_000, 5_000, 0, 0, 0, 0], 100) == 200
    assert lag_metric([50, 30, 0, 0, 0, 0], 100) == 80  # below the cap: the total


# --- one round (HPA) ------------------------------------------------------------------------------


def test_lag_on_one_partition_never_asks_for_more_than_one_replica() -> None:
    assert recommend([1_000_000, 0, 0, 0, 0, 0], 1, policy()) == 1


def test_replicas_are_total_lag_over_the_threshold_rounded_up() -> None:
    assert recommend([100] * 6, 1, policy()) == 6  # 600 / 100
    assert recommend([150, 150, 150, 150, 0, 0], 1, policy()) == 4  # 600 / 100, but 4 partitions have lag
    assert recommend([80, 80, 80, 80, 0, 0], 1, policy()) == 4  # ceil(320 / 100)
    # KEDA compares whole thresholds with the partitions with lag (303 // 100 == 3 is not above 3), so the
    # HPA's ceil may ask for one replica more than those partitions: kept, so that both backends agree
    assert recommend([101, 101, 101, 0, 0, 0], 1, policy()) == 4


def test_within_the_hpa_tolerance_nothing_changes() -> None:
    assert recommend([105, 100, 100, 0, 0, 0], 3, policy()) == 3  # 305 / 300 is within 10 %
    assert recommend([150, 100, 100, 0, 0, 0], 3, policy()) == 4  # 350 / 300 is not


def test_bounds_hold() -> None:
    lags = [10_000] * 6
    assert recommend(lags, 1, policy(max_replicas=4)) == 4
    assert recommend([0] * 6, 3, policy(min_replicas=2)) == 2
    assert recommend(lags, 1, policy(partitions=3, max_replicas=6)) == 3  # never more than partitions


def test_an_idle_topic_goes_to_min_replicas() -> None:
    assert recommend([0] * 6, 5, policy(min_replicas=1)) == 1


def test_nothing_running_is_not_within_tolerance() -> None:
    assert recommend([0] * 6, 0, policy(min_replicas=1)) == 1
    assert recommend([300, 0, 0, 0, 0, 0], 0, policy()) == 1  # capped: one partition has lag


# --- over time: stabilization ---------------------------------------------------------------------


def test_scale_up_is_immediate() -> None:
    history = (Recommendation(0.0, 1),)
    decision = decide([400, 400, 0, 0, 0, 0], 1, policy(), now=1.0, history=history)
    assert decision.replicas == 2 and decision.recommended == 2


def test_scale_up_is_rate_limited_like_the_hpa() -> None:
    p = policy(partitions=24, max_replicas=24)
    lags = [10_000] * 24
    steps = [1]
    for round_ in range(4):
        steps.append(decide(lags, steps[-1], p, now=15.0 * round_).replicas)
    assert steps == [1, 5, 10, 20, 24]  # +4, then doubling, then the bound
    assert decide(lags, 3, p, now=0.0).replicas == 7  # max(2 * 3, 3 + 4)
    assert decide([0] * 6, 1, policy(min_replicas=6), now=0.0).replicas == 6  # below the minimum: straight to it


def test_a_dip_inside_the_window_does_not_scale_down() -> None:
    p = policy(scale_down_stabilization_s=300.0)
    busy = [200, 200, 200, 200, 0, 0]
    first = decide(busy, 1, p, now=0.0)
    assert first.replicas == 8 // 2 == 4
    dip = decide([0] * 6, 4, p, now=60.0, history=first.history)
    assert dip.recommended == 1 and dip.replicas == 4  # the burst at t=0 is still in the window
    back = decide(busy, 4, p, now=120.0, history=dip.history)
    assert back.replicas == 4  # no flapping: the group never rebalanced


def test_scale_down_happens_once_the_window_has_passed() -> None:
    p = policy(scale_down_stabilization_s=300.0)
    decision = decide([200, 200, 200, 200, 0, 0], 1, p, now=0.0)
    for t in (60.0, 120.0, 240.0):
        decision = decide([0] * 6, 4, p, now=t, history=decision.history)
        assert decision.replicas == 4
    later = decide([0] * 6, 4, p, now=301.0, history=decision.history)
    assert later.replicas == 1
    assert all(301.0 - r.at < 300.0 for r in later.history)  # the history keeps only the window


def test_scale_down_goes_to_the_highest_recommendation_of_the_window() -> None:
    p = policy(scale_down_stabilization_s=300.0)
    history = (Recommendation(0.0, 6), Recommendation(100.0, 3), Recommendation(200.0, 2))
    assert decide([0] * 6, 6, p, now=350.0, history=history).replicas == 3  # 6 (t=0) has left the window


def test_without_a_window_it_follows_the_lag() -> None:
    p = policy(scale_down_stabilization_s=0.0)
    assert decide([0] * 6, 4, p, now=10.0, history=(Recommendation(9.0, 4),)).replicas == 1


@pytest.mark.parametrize("current", [1, 2, 3, 6])
def test_decisions_stay_within_bounds(current: int) -> None:
    p = policy(min_replicas=2, max_replicas=5)
    for lags in ([0] * 6, [10**9] * 6, [10**9, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]):
        replicas = decide(lags, current, p, now=0.0).replicas
        assert 2 <= replicas <= 5


# --- lag in seconds (targetLagSeconds) --------------------------------------------------------------


def seconds_policy(**overrides: object) -> LagScaling:
    # 10 s of lag per replica, stated at 50 records/s per replica: 500 records (what KEDA is given)
    return policy(lag_threshold=500, target_lag_s=10.0, replica_rate=50.0, **overrides)


def test_the_threshold_is_the_lag_one_replica_clears_in_the_target_seconds() -> None:
    assert threshold(policy()) == 100  # lagThreshold: records, no rate involved
    assert threshold(policy(), rate=1e6) == 100
    assert threshold(seconds_policy()) == 500  # no rate measured yet: the stated one
    assert threshold(seconds_policy(), rate=None) == 500
    assert threshold(seconds_policy(), rate=0.0) == 500  # a zero "rate" is no measurement
    assert threshold(seconds_policy(), rate=20.0) == 200  # measured slower than stated: a smaller threshold
    assert threshold(seconds_policy(), rate=0.01) == 1  # never 0 (the metric divides by it)


def test_lag_seconds_scale_with_the_measured_rate() -> None:
    lags = [500] * 6  # 3000 records behind
    assert recommend(lags, 1, seconds_policy()) == 6  # at the stated 50/s: 60 s of work, 10 s per replica
    assert recommend(lags, 1, seconds_policy(), rate=100.0) == 3  # twice as fast: half the replicas
    assert recommend(lags, 1, seconds_policy(), rate=600.0) == 1  # 3000 records are 5 s for one replica


def test_an_idle_topic_with_a_target_in_seconds_goes_to_min_replicas_whatever_the_rate() -> None:
    for rate in (None, 0.0, 1.0, 1e6):
        assert recommend([0] * 6, 4, seconds_policy(), rate=rate) == 1


def test_lag_seconds_on_one_partition_still_ask_for_one_replica() -> None:
    assert recommend([1_000_000, 0, 0, 0, 0, 0], 1, seconds_policy(), rate=1.0) == 1


def test_a_flapping_rate_does_not_flap_the_replicas() -> None:
    # the measured rate swings between 25/s and 100/s each round while the lag stays: scale-up follows the
    # slow rounds at once, but the window keeps the replicas up through the fast ones
    p = seconds_policy(scale_down_stabilization_s=60.0)
    lags, replicas, history, seen = [500] * 6, 1, (), []
    for i, rate in enumerate([25.0, 100.0, 25.0, 100.0, 25.0, 100.0]):
        d = decide(lags, replicas, p, now=15.0 * i, history=history, rate=rate)
        replicas, history = d.replicas, d.history
        seen.append(replicas)
    # slow: 3000 / 250 = 12 wanted, at most 1 + 4; fast: 3 wanted, held at 5 by the window; slow: the 6 partitions
    assert seen == [5, 5, 6, 6, 6, 6]


def sample(at: float, position: int, lag: int, replicas: int = 2) -> OffsetSample:
    return OffsetSample(at=at, position=position, lag=lag, replicas=replicas)


def test_the_rate_is_measured_per_replica_from_committed_offsets_over_time() -> None:
    assert replica_rate(sample(0, 1_000, 5_000), sample(10, 3_000, 4_000)) == 100.0  # 2000 in 10 s by 2


def test_no_rate_is_measured_without_lag_a_rebalance_or_progress() -> None:
    assert replica_rate(sample(0, 1_000, 0), sample(10, 3_000, 10)) is None  # kept up: arrivals, not capacity
    assert replica_rate(sample(0, 1_000, 10), sample(10, 3_000, 0)) is None  # caught up within the interval
    assert replica_rate(sample(0, 1_000, 50), sample(10, 3_000, 50, replicas=3)) is None  # rebalanced
    assert replica_rate(sample(0, 1_000, 50), sample(10, 1_000, 80)) is None  # a stall is no capacity
    assert replica_rate(sample(0, 5_000, 50), sample(10, 1_000, 80)) is None  # offsets went backwards
    assert replica_rate(sample(10, 1_000, 50), sample(10, 3_000, 50)) is None  # no time passed
    assert replica_rate(sample(0, 1_000, 50, 0), sample(10, 3_000, 50, 0)) is None  # nobody consuming


def test_the_rate_estimate_is_smoothed_and_kept_without_a_measurement() -> None:
    assert smooth_rate(None, None) is None
    assert smooth_rate(None, 80.0) == 80.0  # the first measurement is the estimate
    assert smooth_rate(80.0, None) == 80.0  # an idle interval keeps it
    assert smooth_rate(80.0, 40.0) == 60.0  # one slow interval moves it half-way
