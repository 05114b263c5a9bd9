"""The local executor of the scaling decision: `adnomaly up` runs `adnomaly.scaling.decide` on the real
consumer lag, as KEDA and the HorizontalPodAutoscaler run it on Kubernetes, and starts or stops component
processes to match.

Only what executes the decision lives here; the decision itself (tolerance, bounds, scale-up rate,
scale-down stabilization) is the one `adnomaly.scaling` module both executors share, so that a pipeline
scales the same way on one machine as in a cluster. Like the HPA controller, the executor decides once per
round (`adnomaly.scaling.ROUND_S`, 15 s), not on every refresh of the live view: more frequent rounds would
make the scale-up rate limit (per round) mean something else than it does on Kubernetes.

For `targetLagSeconds` the executor also measures what KEDA cannot: the records/s one replica consumes,
from the group's committed offsets at successive rounds (`adnomaly.scaling.replica_rate`, smoothed), and
hands it to the decision; until a round pair has measured one, the spec's stated rate applies.

`LocalScaler.round` is pure apart from the clock it is given; `adnomaly.local.up` reads the lag and the
offsets and starts and stops the processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adnomaly.scaling import (
    ROUND_S,
    LagScaling,
    OffsetSample,
    Recommendation,
    decide,
    replica_rate,
    smooth_rate,
)


@dataclass(frozen=True)
class ScaleEvent:
    """One change of a component's replicas, for the live view and the summary."""

    component: str
    before: int
    after: int
    lag: int  # the consumer group's lag (records) that the decision saw

    def text(self) -> str:
        direction = "up" if self.after > self.before else "down"
        return f"scaled {self.component} {direction}: {self.before} → {self.after} replicas (lag {self.lag:,})"


@dataclass
class LocalScaler:
    """The per-component state of the decision between rounds (the stabilization window's recommendations)."""

    policies: Mapping[str, LagScaling]
    round_s: float = ROUND_S
    history: dict[str, tuple[Recommendation, ...]] = field(default_factory=dict)
    last_round: float | None = None
    events: list[ScaleEvent] = field(default_factory=list)  # every change so far
    samples: dict[str, OffsetSample] = field(default_factory=dict)  # each component's previous round
    rates: dict[str, float] = field(default_factory=dict)  # measured records/s per replica, smoothed

    def due(self, now: float) -> bool:
        return bool(self.policies) and (self.last_round is None or now - self.last_round >= self.round_s)

    def round(
        self, now: float, lags: Mapping[str, Sequence[int]], current: Mapping[str, int],
        positions: Mapping[str, int] | None = None,
    ) -> list[ScaleEvent]:
        """One round: the replicas each autoscaled component should run, given the lag of every partition of
        its topic (`lags`; a component missing there keeps its replicas this round, e.g. the broker did not
        answer), what runs now and, for the rate of `targetLagSeconds`, where each group stands (`positions`:
        its committed offsets summed). Returns the changes, also kept in `events`."""
        self.last_round = now
        changes = []
        for name, policy in self.policies.items():
            if name not in lags:
                continue
            running = current.get(name, 0)
            if positions is not None and name in positions:
                self._measure(name, OffsetSample(now, positions[name], sum(lags[name]), running))
            decision = decide(lags[name], running, policy, now, self.history.get(name, ()), self.rates.get(name))
            self.history[name] = decision.history
            if decision.replicas != running:
                changes.append(ScaleEvent(name, running, decision.replicas, sum(lags[name])))
        self.events.extend(changes)
        return changes

    def _measure(self, name: str, sample: OffsetSample) -> None:
        before = self.samples.get(name)
        self.samples[name] = sample
        if before is not None:
            rate = smooth_rate(self.rates.get(name), replica_rate(before, sample))
            if rate is not None:
                self.rates[name] = rate
