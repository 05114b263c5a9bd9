"""Content downloads: a catalogue of movies, episodes, apps, music and games fetched from ten regions.

Normal traffic: speed is log-normal around the region's median, scaled by device (TVs and desktops on
fixed lines, phones often on cellular) and dipping in the local evening when networks are busy; the
duration is the size over the speed (a failed download stops part-way); about 1.5 % fail. Scenario
regionalOutage: in one region most downloads fail and the rest crawl.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from adnomaly.events.schemas import Download
from adnomaly.generator.catalog import CONTENT_KINDS, DEVICES, REGIONS
from adnomaly.generator.drift import daily_factor
from adnomaly.generator.sampling import TABLE_BITS, decimals, lognormal_table, lookup_table
from adnomaly.generator.sources.base import EventSource, Faults

CATALOGUE = 3_000
CONTENT_TABLE_BITS = 14
SPEED_SIGMA = 0.5
MIN_SPEED_MBPS = 0.5
SPEED_AMPLITUDE, SPEED_LOW_H = -0.25, 21.0  # speeds dip in the local evening
VOLUME_AMPLITUDE, VOLUME_PEAK_H = 0.5, 21.0
FAILURE_RATE = 0.012
SLOW_FAILURE_RATE = 0.06  # extra failure chance below SLOW_MBPS
SLOW_MBPS = 3.0
OUTAGE_SUCCESS = 0.35
OUTAGE_SPEED = (0.03, 0.15)


class Content(NamedTuple):
    content_id: str
    size_mb: float


class Variant(NamedTuple):
    device_type: str
    os_version: str
    speed_factor: float


class DownloadSource(EventSource):
    schema = "download"
    scenarios = frozenset({"regionalOutage"})
    faults = Faults(
        text_field="os_version",
        nan_path=("speed_mbps",),
        wrong_types={"success": "yes", "speed_mbps": "fast", "duration_s": None, "device_type": 2},
        out_of_range={"speed_mbps": -1.0, "duration_s": -3.5, "device_type": "fridge", "content_id": ""},
    )

    def __init__(self, seed: int, rng: random.Random, start_s: float) -> None:
        super().__init__(seed, rng, start_s)
        pools = self.pool_rng()
        kinds = lookup_table(list(CONTENT_KINDS), [k.weight for k in CONTENT_KINDS])
        catalogue = []
        for n in range(CATALOGUE):
            kind = kinds[pools.getrandbits(TABLE_BITS)]
            size = math.exp(pools.uniform(math.log(kind.min_mb), math.log(kind.max_mb)))
            catalogue.append(Content(f"{kind.prefix}-{n + 1:05d}", round(size, 1)))
        popularity = [1.0 / (rank + 1) ** 0.9 for rank in range(CATALOGUE)]  # a few hits, a long tail
        self._content_table = lookup_table(catalogue, popularity, CONTENT_TABLE_BITS)
        variants: list[Variant] = []
        weights: list[float] = []
        for device in DEVICES:
            total = sum(w for _, w in device.os_versions)
            for os_version, w in device.os_versions:
                variants.append(Variant(device.type, os_version, device.speed_factor))
                weights.append(device.weight * w / total)
        self._variant_table = lookup_table(variants, weights)
        self._noise = lognormal_table(SPEED_SIGMA)
        self._region_table: list[int] = []
        self._speed_mult: list[float] = []
        self._outage_region: int | None = None
        self.refresh(start_s)

    def refresh(self, t_s: float) -> None:
        volume = [r.traffic_weight * daily_factor(t_s, r.utc_offset_h, VOLUME_AMPLITUDE, VOLUME_PEAK_H)
                  for r in REGIONS]  # fmt: skip
        self._region_table = lookup_table(list(range(len(REGIONS))), volume)
        self._speed_mult = [daily_factor(t_s, r.utc_offset_h, SPEED_AMPLITUDE, SPEED_LOW_H) for r in REGIONS]

    def scenario_key(self, scenario: str, rng: random.Random) -> dict[str, str]:
        if scenario == "regionalOutage":
            busy = [r.name for r in REGIONS if r.traffic_weight >= 8.0]
            return {"region": rng.choice(busy)}
        raise ValueError(f"the download source cannot act out {scenario}")

    def activate(self, scenario: str | None, key: Mapping[str, str] | None) -> None:
        self._outage_region = None
        if scenario == "regionalOutage" and key is not None:
            self._outage_region = next(i for i, r in enumerate(REGIONS) if r.name == key["region"])

    def make(self, event_id: str, when: datetime, t_s: float) -> Download:
        rng = self.rng
        random_ = rng.random
        region = self._region_table[rng.getrandbits(TABLE_BITS)]
        variant = self._variant_table[rng.getrandbits(TABLE_BITS)]
        content = self._content_table[rng.getrandbits(CONTENT_TABLE_BITS)]
        speed = (REGIONS[region].median_speed_mbps * variant.speed_factor * self._speed_mult[region]
                 * self._noise[rng.getrandbits(TABLE_BITS)])  # fmt: skip
        if region == self._outage_region:
            speed *= rng.uniform(*OUTAGE_SPEED)
            success = random_() < OUTAGE_SUCCESS
        else:
            fail = FAILURE_RATE + (SLOW_FAILURE_RATE if speed < SLOW_MBPS else 0.0)
            success = random_() >= fail
        speed = decimals(max(speed, MIN_SPEED_MBPS), 2)
        duration = content.size_mb * 8.0 / speed
        if not success:
            duration *= 0.02 + 0.88 * random_()  # gave up or broke part-way
        return Download(
            event_id=event_id, content_id=content.content_id, region=REGIONS[region].name,
            device_type=variant.device_type, os_version=variant.os_version, speed_mbps=speed,
            duration_s=decimals(duration, 3), success=success, ts=when,
        )  # fmt: skip
