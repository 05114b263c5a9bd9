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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HPA_TOLERANCE = 0.1  # kube-controller-manager's --horizontal-pod-autoscaler-tolerance default
ROUND_S = 15.0  # the HPA's sync period (--horizontal-pod-autoscaler-sync-period) and its scale-up policy period


@dataclass(frozen=True)
class LagScaling:
    """A component's lag-based scaling, as planned: which group on which topic, within which bounds."""

    topic: str
    consumer_group: str
    partitions: int  # of the topic: the most consumers that can each own a partition
    min_replicas: int
    max_replicas: int  # already capped at `partitions`
    lag_threshold: int  # target lag (records) per replica
    scale_down_stabilization_s: float


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


def recommend(lags: Sequence[int], current: int, policy: LagScaling) -> int:
    """One round's replicas from the lag, before stabilization (what the HPA computes from KEDA's metric)."""
    metric = lag_metric(lags, policy.lag_threshold)
    if current > 0 and abs(metric / (policy.lag_threshold * current) - 1.0) <= HPA_TOLERANCE:
        desired = current
    else:
        desired = math.ceil(metric / policy.lag_threshold)
    return max(policy.min_replicas, min(desired, policy.max_replicas, policy.partitions))


def scale_up_limit(current: int) -> int:
    """The most replicas one round may reach from `current` (the HPA's default scale-up policies)."""
    return max(2 * current, current + 4)


def decide(
    lags: Sequence[int], current: int, policy: LagScaling, now: float, history: Sequence[Recommendation] = ()
) -> Decision:
    """Replicas for now, given the lag of every partition of the topic, the replicas running and the
    recommendations of earlier rounds (`Decision.history` of the previous call)."""
    recommended = recommend(lags, current, policy)
    window = policy.scale_down_stabilization_s
    kept = (*(r for r in history if now - r.at < window), Recommendation(now, recommended))
    # scaling up (or staying) is never delayed; down, only to the window's highest recommendation
    replicas = recommended if recommended >= current else min(current, max(r.replicas for r in kept))
    if current > 0:
        replicas = min(replicas, scale_up_limit(current))
    replicas = max(replicas, policy.min_replicas)
    return Decision(replicas, recommended, kept)
