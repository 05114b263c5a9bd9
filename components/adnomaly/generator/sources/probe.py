"""Network probes: a fixed fleet of nodes in ten regions measuring latency and packet loss.

Normal traffic: latency is log-normal around each region's median (times a per-node factor), a little
higher in the local evening; uptime counts seconds since each node's boot, so it only grows; packet loss
is mostly zero with a small tail. Scenario probeLatencySpike: one region's latency jumps several-fold and
its packet loss rises to a few percent and more.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from adnomaly.events.schemas import Probe
from adnomaly.generator.catalog import PROBE_AGENT_VERSIONS, PROBE_PROTOCOLS, PROBE_TARGETS, REGIONS
from adnomaly.generator.drift import daily_factor
from adnomaly.generator.sampling import TABLE_BITS, decimals, lognormal_table
from adnomaly.generator.sources.base import EventSource, Faults

LATENCY_SIGMA = 0.3
LATENCY_AMPLITUDE, LATENCY_PEAK_H = 0.2, 20.0
MAX_BOOT_AGE_S = 40 * 86_400.0
MIN_BOOT_AGE_S = 2 * 3600.0
LOSS_FREE_SHARE = 0.75
SPIKE_FACTOR = (4.0, 9.0)
SPIKE_LOSS = (0.05, 0.30)


class Node(NamedTuple):
    node_id: str
    node_name: str
    region: int  # index into REGIONS
    latency_median_ms: float
    boot_s: float
    metadata: dict[str, Any]


def fleet_layout() -> list[tuple[str, str, int]]:
    """The fixed fleet: (node_id, node_name, region index), the same for every seed."""
    nodes = []
    for index, region in enumerate(REGIONS):
        for n in range(region.nodes):
            site = region.sites[n % len(region.sites)]
            nodes.append((f"{region.code}-probe-{n + 1:02d}", f"{site}-probe-{n + 1:02d}.{region.name}", index))
    return nodes


class ProbeSource(EventSource):
    schema = "probe"
    scenarios = frozenset({"probeLatencySpike"})
    faults = Faults(
        text_field="node_name",
        nan_path=("latency_ms",),
        wrong_types={"latency_ms": "12ms", "uptime": True, "region": 3, "packet_loss": {"value": 0.0}},
        out_of_range={"latency_ms": -4.0, "packet_loss": 1.5, "uptime": -10.0, "node_id": ""},
    )

    def __init__(self, seed: int, rng: random.Random, start_s: float) -> None:
        super().__init__(seed, rng, start_s)
        pools = self.pool_rng()
        self._nodes = [
            Node(
                node_id, node_name, region, REGIONS[region].median_latency_ms * pools.uniform(0.85, 1.2),
                start_s - pools.uniform(MIN_BOOT_AGE_S, MAX_BOOT_AGE_S),
                {
                    "agent_version": pools.choice(PROBE_AGENT_VERSIONS), "target": pools.choice(PROBE_TARGETS),
                    "protocol": pools.choice(PROBE_PROTOCOLS), "site": node_name.split("-", 1)[0],
                },
            )
            for node_id, node_name, region in fleet_layout()
        ]  # fmt: skip
        self._noise = lognormal_table(LATENCY_SIGMA)
        self._latency_mult: list[float] = []
        self._spike_region: int | None = None
        self._spike_factor = 1.0
        self.refresh(start_s)

    def refresh(self, t_s: float) -> None:
        self._latency_mult = [
            daily_factor(t_s, r.utc_offset_h, LATENCY_AMPLITUDE, LATENCY_PEAK_H) for r in REGIONS
        ]

    def scenario_key(self, scenario: str, rng: random.Random) -> dict[str, str]:
        if scenario == "probeLatencySpike":
            return {"region": rng.choice(REGIONS).name}
        raise ValueError(f"the probe source cannot act out {scenario}")

    def activate(self, scenario: str | None, key: Mapping[str, str] | None) -> None:
        self._spike_region = None
        if scenario == "probeLatencySpike" and key is not None:
            self._spike_region = next(i for i, r in enumerate(REGIONS) if r.name == key["region"])
            self._spike_factor = self.rng.uniform(*SPIKE_FACTOR)

    def make(self, event_id: str, when: datetime, t_s: float) -> Probe:
        rng = self.rng
        random_ = rng.random
        node = self._nodes[int(random_() * len(self._nodes))]
        latency = node.latency_median_ms * self._latency_mult[node.region] * self._noise[rng.getrandbits(TABLE_BITS)]
        r = random_()
        loss = 0.0 if r < LOSS_FREE_SHARE else ((r - LOSS_FREE_SHARE) / (1 - LOSS_FREE_SHARE)) ** 3 * 0.02
        if node.region == self._spike_region:
            latency *= self._spike_factor * (0.8 + 0.4 * random_())
            loss = rng.uniform(*SPIKE_LOSS)
        return Probe(
            event_id=event_id, node_id=node.node_id, node_name=node.node_name, region=REGIONS[node.region].name,
            latency_ms=decimals(latency, 2), uptime=decimals(t_s - node.boot_s, 3), packet_loss=decimals(loss, 4),
            ts=when, metadata=node.metadata,
        )  # fmt: skip
