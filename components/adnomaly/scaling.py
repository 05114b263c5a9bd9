"""The one scaling decision: consumer lag per partition → replicas of a Kafka-consuming component. Pure.

Two executors run it. On Kubernetes, KEDA's Kafka scaler feeds a HorizontalPodAutoscaler; on one machine
the local backend calls `decide()` itself. For the two to agree, this module follows what those two do,
step by step, with the trigger settings the operator renders (`allowIdleConsumers: false`,
`limitToPartitionsWithLag: true`, `offsetResetPolicy: earliest`):

1. KEDA reports the group's total lag on the topic, but never more than `lagThreshold` times the number of
   partitions that have lag: one partition is read by one consumer, so replicas beyond the partitions with
   lag would sit idle (`lag_metric`). An idle topic reports 0.
2. The HPA treats that as an `AverageValue` external metric with target `lagThreshold`:
   desired = ceil(lag / lagThreshold), unless the ratio to the current replicas is within the HPA's 10 %
   tolerance, in which case nothing changes (`recommend`). Then the bounds apply: minReplicas, and
   maxReplicas, which the plan has already capped at the topic's partition count.
3. Scale-down stabilization (`behavior.scaleDown.stabilizationWindowSeconds`): replicas go down only to
   the highest recommendation seen within the window, so a lag that dips to zero between bursts does not
   remove consumers (each removal is a group rebalance); scale-up is not delayed (`decide`). A "time since
   the last change" rule would not do: after a quiet period, the first dip would remove replicas at once.
4. The HPA's default scale-up rate: per 15 s round at most double the replicas or add 4, whichever is
   more; below `minReplicas` it goes straight to it. An executor calls `decide` once per round
   (`ROUND_S`), as the HPA controller syncs.

A partition the group has never committed on counts as wholly unread (the components start from the
earliest offset; `partition_lag`).

**Lag in seconds** (`targetLagSeconds`). The records threshold is then the lag one replica clears in that
many seconds: `threshold = target * (records/s one replica consumes)`, and the steps above run unchanged
with it (`threshold`). Where the rate comes from differs by executor, because KEDA's Kafka scaler counts
records and cannot measure a rate: on Kubernetes the operator renders `lagThreshold = targetLagSeconds *
replicaRecordsPerSecond` (the rate the spec states); the local executor measures the rate from the
group's committed offsets over time (`replica_rate`, smoothed by `smooth_rate`) and uses the stated rate
until it has a measurement. A consumer that keeps up (no lag) consumes what arrives, not what it could,
so only intervals with lag throughout count as a measurement, and none across a change of replicas (a
rebalance pauses consumption and would understate the rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HPA_TOLERANCE = 0.1  # kube-controller-manager's --horizontal-pod-autoscaler-tolerance default
ROUND_S = 15.0  # the HPA's sync period (--horizontal-pod-autoscaler-sync-period) and its scale-up policy period
RATE_WEIGHT = 0.5  # weight of a new rate measurement against the running estimate (`smooth_rate`)


@dataclass(frozen=True)
class LagScaling:
    """A component's lag-based scaling, as planned: which group on which topic, within which bounds."""

    topic: str
    consumer_group: str
    partitions: int  # of the topic: the most consumers that can each own a partition
    min_replicas: int
    max_replicas: int  # already capped at `partitions`
    lag_threshold: int  # target lag (records) per replica; with target_lag_s, at the stated rate (KEDA's)
    scale_down_stabilization_s: float
    target_lag_s: float | None = None  # target lag in seconds of one replica's consumption instead
    replica_rate: float | None = None  # records/s one replica consumes, as stated (with target_lag_s)


@dataclass(frozen=True)
class CpuScaling:
    """A component's CPU-based scaling (the ingest API): a HorizontalPodAutoscaler's settings."""

    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int  # percent of the pods' CPU request
    scale_down_stabilization_s: float


@dataclass(frozen=True)
class Recommendation:
    at: float  # seconds on the executor's monotonic clock
    replicas: int


@dataclass(frozen=True)
class Decision:
    replicas: int  # what the component should run now
    recommended: int  # this round's recommendation, before stabilization
    history: tuple[Recommendation, ...]  # recommendations still inside the window: pass to the next call


def partition_lag(end_offset: int, committed: int | None) -> int:
    """Records of one partition the group has not consumed; `committed` None: nothing committed yet."""
    if committed is None or committed < 0:
        return max(0, end_offset)
    return max(0, end_offset - committed)


def lag_metric(lags: Sequence[int], lag_threshold: int) -> int:
    """KEDA's metric: the total lag, capped at `lag_threshold` times the partitions that have lag."""
    total = sum(max(0, lag) for lag in lags)
    with_lag = sum(1 for lag in lags if lag > 0)
    if total // lag_threshold > with_lag:
        return with_lag * lag_threshold
    return total


def threshold(policy: LagScaling, rate: float | None = None) -> int:
    """The target lag (records) per replica: `lagThreshold`, or with `targetLagSeconds` the records one
    replica consumes in that time at `rate` (measured records/s per replica), else at the stated rate."""
    if policy.target_lag_s is None:
        return policy.lag_threshold
    per_replica = rate if rate is not None and rate > 0 else policy.replica_rate
    if per_replica is None:
        return policy.lag_threshold
    return max(1, round(policy.target_lag_s * per_replica))


def recommend(lags: Sequence[int], current: int, policy: LagScaling, rate: float | None = None) -> int:
    """One round's replicas from the lag, before stabilization (what the HPA computes from KEDA's metric);
    `rate`: the measured records/s per replica, for `targetLagSeconds` (`threshold`)."""
    target = threshold(policy, rate)
    metric = lag_metric(lags, target)
    if current > 0 and abs(metric / (target * current) - 1.0) <= HPA_TOLERANCE:
        desired = current
    else:
        desired = math.ceil(metric / target)
    return max(policy.min_replicas, min(desired, policy.max_replicas, policy.partitions))


def scale_up_limit(current: int) -> int:
    """The most replicas one round may reach from `current` (the HPA's default scale-up policies)."""
    return max(2 * current, current + 4)


def decide(
    lags: Sequence[int], current: int, policy: LagScaling, now: float, history: Sequence[Recommendation] = (),
    rate: float | None = None,
) -> Decision:
    """Replicas for now, given the lag of every partition of the topic, the replicas running, the
    recommendations of earlier rounds (`Decision.history` of the previous call) and, for `targetLagSeconds`,
    the measured records/s per replica (None: not measured yet)."""
    recommended = recommend(lags, current, policy, rate)
    window = policy.scale_down_stabilization_s
    kept = (*(r for r in history if now - r.at < window), Recommendation(now, recommended))
    # scaling up (or staying) is never delayed; down, only to the window's highest recommendation
    replicas = recommended if recommended >= current else min(current, max(r.replicas for r in kept))
    if current > 0:
        replicas = min(replicas, scale_up_limit(current))
    replicas = max(replicas, policy.min_replicas)
    return Decision(replicas, recommended, kept)


@dataclass(frozen=True)
class OffsetSample:
    """What one look at a consumer group gives the rate measurement."""

    at: float  # seconds on the executor's monotonic clock
    position: int  # the group's committed offsets summed over the topic's partitions (log start where none)
    lag: int  # records behind, summed
    replicas: int  # consumers running


def replica_rate(before: OffsetSample, after: OffsetSample) -> float | None:
    """Records/s one replica consumed between two samples, or None when the interval says nothing about
    what a replica can do: lag gone at either end (the group consumed what arrived, not what it could), a
    change of replicas (a rebalance pauses consumption), no time passed, nothing committed (a stall, e.g. the
    database away, is no capacity: taken as a rate it would scale to the maximum) or offsets that went
    backwards."""
    elapsed = after.at - before.at
    consumed = after.position - before.position
    if elapsed <= 0 or consumed <= 0 or before.lag <= 0 or after.lag <= 0:
        return None
    if before.replicas != after.replicas or after.replicas <= 0:
        return None
    return consumed / elapsed / after.replicas


def smooth_rate(estimate: float | None, measured: float | None, weight: float = RATE_WEIGHT) -> float | None:
    """The running rate estimate after one measurement (exponentially weighted: one slow interval, e.g. a
    database stall, moves the threshold half-way, not all the way); no measurement keeps the estimate."""
    if measured is None:
        return estimate
    if estimate is None:
        return measured
    return estimate + weight * (measured - estimate)
