"""Ad impressions/clicks: users from 36 countries on web/iOS/Android seeing ads of a finite set of campaigns.

Normal traffic: each country's volume and CTR follow its local hour; CTR stays in 0.005-0.05, CPC in
0.10-1.20, bounce rate in 0.20-0.90, and conversions become likelier as CTR rises and bounce falls.
Scenarios: clickFraudBurst (a bot farm on one geo/platform: volume, CTR and bounce surge, a few user
hashes repeat) and brokenCampaign (one campaign's CTR collapses).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from adnomaly.events.schemas import Clickstream
from adnomaly.generator.catalog import BOT_USER_AGENTS, COUNTRIES, PLATFORM_SHARES, USER_AGENTS
from adnomaly.generator.drift import daily_factor
from adnomaly.generator.sampling import TABLE_BITS, clamp, decimals, lookup_table
from adnomaly.generator.sources.base import EventSource, Faults

POPULATION = 40_000  # users, split over countries by traffic weight
CAMPAIGNS = 150
ADS_PER_CAMPAIGN = (2, 8)
AD_TABLE_BITS = 14
CTR_RANGE = (0.005, 0.05)
CPC_RANGE = (0.10, 1.20)
BOUNCE_RANGE = (0.20, 0.90)
PLATFORM_CTR = {"web": 0.85, "ios": 1.15, "android": 1.05}
PLATFORM_BOUNCE = {"web": 0.42, "ios": 0.50, "android": 0.55}
VOLUME_AMPLITUDE, VOLUME_PEAK_H = 0.6, 20.0
CTR_AMPLITUDE, CTR_PEAK_H = 0.25, 21.0

FRAUD_SHARE = 0.12  # of all events while a click-fraud burst runs
FRAUD_BOTS = 16
FRAUD_ADS = 3
FRAUD_MIN_COUNTRY_WEIGHT = 1.0  # bursts hit a country with enough baseline traffic to compare with
BROKEN_CAMPAIGN_CTR_FACTOR = 0.03
BROKEN_CAMPAIGN_TOP = 10  # a broken campaign is one of the busiest, so the collapse is visible


class User(NamedTuple):
    user_id_hash: str
    platform: str
    user_agent: str


class Ad(NamedTuple):
    ad_id: str
    campaign_id: str
    base_ctr: float
    cpc_span: float  # CPC above the 0.10 floor in a market with factor 1.0


def user_hash(seed: int, label: str) -> str:
    return hashlib.blake2b(f"{seed}:{label}".encode(), digest_size=16).hexdigest()


class ClickstreamSource(EventSource):
    schema = "clickstream"
    scenarios = frozenset({"clickFraudBurst", "brokenCampaign"})
    faults = Faults(
        text_field="user_agent",
        nan_path=("CTR",),
        wrong_types={"CTR": "0.012", "conversion": "yes", "geo": 840, "CPC": [0.5]},
        out_of_range={"CTR": 1.7, "bounce_rate": -0.2, "geo": "USA", "conversion": 3, "platform": "tv"},
    )

    def __init__(self, seed: int, rng: random.Random, start_s: float) -> None:
        super().__init__(seed, rng, start_s)
        pools = self.pool_rng()
        self._users = [self._country_users(pools, i) for i in range(len(COUNTRIES))]
        self._ads, ad_weights, self._campaign_weight = self._campaigns(pools)
        self._ad_table = lookup_table(self._ads, ad_weights, AD_TABLE_BITS)
        self._cpc_factor = [c.cpc_factor for c in COUNTRIES]
        self._country_table: list[int] = []
        self._ctr_mult: list[float] = []
        self._fraud: tuple[int, str, list[str], list[Ad]] | None = None
        self._broken: str | None = None
        self.refresh(start_s)

    # -- pools ---------------------------------------------------------------------------------------

    def _country_users(self, pools: random.Random, index: int) -> list[User]:
        country = COUNTRIES[index]
        total = sum(c.weight for c in COUNTRIES)
        count = max(40, round(POPULATION * country.weight / total))
        platforms: list[str] = []
        for name, share in PLATFORM_SHARES:
            platforms += [name] * round(count * share)
        platforms = (platforms + ["web"] * count)[:count]
        pools.shuffle(platforms)
        return [
            User(user_hash(self.seed, f"user:{country.code}:{n}"), p, pools.choice(USER_AGENTS[p]))
            for n, p in enumerate(platforms)
        ]

    def _campaigns(self, pools: random.Random) -> tuple[list[Ad], list[float], dict[str, float]]:
        ads: list[Ad] = []
        weights: list[float] = []
        campaign_weight: dict[str, float] = {}
        low, high = math.log(0.008), math.log(0.03)
        for rank in range(CAMPAIGNS):
            campaign_id = f"cmp-{rank + 1:04d}"
            weight = 1.0 / (rank + 1) ** 0.7  # budgets: a few big campaigns, a long tail
            campaign_weight[campaign_id] = weight
            cpc_span = pools.uniform(0.25, 1.0)
            n_ads = pools.randint(*ADS_PER_CAMPAIGN)
            for _ in range(n_ads):
                ad_id = f"ad-{len(ads) + 1:06d}"
                ads.append(Ad(ad_id, campaign_id, math.exp(pools.uniform(low, high)), cpc_span))
                weights.append(weight / n_ads)
        return ads, weights, campaign_weight

    # -- drift and scenarios -------------------------------------------------------------------------

    def refresh(self, t_s: float) -> None:
        volume = [c.weight * daily_factor(t_s, c.utc_offset_h, VOLUME_AMPLITUDE, VOLUME_PEAK_H) for c in COUNTRIES]
        self._country_table = lookup_table(list(range(len(COUNTRIES))), volume)
        self._ctr_mult = [daily_factor(t_s, c.utc_offset_h, CTR_AMPLITUDE, CTR_PEAK_H) for c in COUNTRIES]

    def scenario_key(self, scenario: str, rng: random.Random) -> dict[str, str]:
        if scenario == "clickFraudBurst":
            candidates = [c.code for c in COUNTRIES if c.weight >= FRAUD_MIN_COUNTRY_WEIGHT]
            return {"geo": rng.choice(candidates), "platform": rng.choice([p for p, _ in PLATFORM_SHARES])}
        if scenario == "brokenCampaign":
            busiest = sorted(self._campaign_weight, key=lambda c: -self._campaign_weight[c])
            return {"campaign_id": rng.choice(busiest[:BROKEN_CAMPAIGN_TOP])}
        raise ValueError(f"the clickstream source cannot act out {scenario}")

    def activate(self, scenario: str | None, key: Mapping[str, str] | None) -> None:
        self._fraud = None
        self._broken = None
        if scenario == "clickFraudBurst" and key is not None:
            geo, platform = key["geo"], key["platform"]
            index = next(i for i, c in enumerate(COUNTRIES) if c.code == geo)
            bots = [user_hash(self.seed, f"bot:{geo}:{platform}:{n}") for n in range(FRAUD_BOTS)]
            ads = [self._ads[int(user_hash(self.seed, f"bot-ad:{geo}:{n}"), 16) % len(self._ads)]
                   for n in range(FRAUD_ADS)]  # fmt: skip
            self._fraud = (index, platform, bots, ads)
        elif scenario == "brokenCampaign" and key is not None:
            self._broken = key["campaign_id"]

    # -- events --------------------------------------------------------------------------------------

    def make(self, event_id: str, when: datetime, t_s: float) -> Clickstream:
        rng = self.rng
        random_ = rng.random
        if self._fraud is not None and random_() < FRAUD_SHARE:
            return self._fraud_event(event_id, when)
        country = self._country_table[rng.getrandbits(TABLE_BITS)]
        users = self._users[country]
        user = users[int(random_() * len(users))]
        ad = self._ad_table[rng.getrandbits(AD_TABLE_BITS)]
        platform = user.platform
        ctr = clamp(
            ad.base_ctr * self._ctr_mult[country] * PLATFORM_CTR[platform] * (0.8 + 0.4 * random_()), *CTR_RANGE
        )
        if ad.campaign_id == self._broken:
            ctr *= BROKEN_CAMPAIGN_CTR_FACTOR
        bounce = clamp(PLATFORM_BOUNCE[platform] + 0.3 * (random_() - 0.5) - (ctr - 0.02) * 4.0, *BOUNCE_RANGE)
        cpc = clamp(0.10 + ad.cpc_span * self._cpc_factor[country] * (0.85 + 0.3 * random_()), *CPC_RANGE)
        conversion = 1 if random_() < 4.0 * ctr * (1.1 - bounce) else 0
        return Clickstream(
            event_id=event_id, timestamp=when, user_id_hash=user.user_id_hash, ad_id=ad.ad_id,
            campaign_id=ad.campaign_id, geo=COUNTRIES[country].code, platform=platform,
            user_agent=user.user_agent, CPC=decimals(cpc, 3), CTR=decimals(ctr, 5), conversion=conversion,
            bounce_rate=decimals(bounce, 3),
        )  # fmt: skip

    def _fraud_event(self, event_id: str, when: datetime) -> Clickstream:
        assert self._fraud is not None
        rng = self.rng
        country, platform, bots, ads = self._fraud
        ad = ads[int(rng.random() * len(ads))]
        cpc = clamp(0.10 + ad.cpc_span * self._cpc_factor[country], *CPC_RANGE)
        return Clickstream(
            event_id=event_id, timestamp=when, user_id_hash=bots[int(rng.random() * len(bots))], ad_id=ad.ad_id,
            campaign_id=ad.campaign_id, geo=COUNTRIES[country].code, platform=platform,
            user_agent=BOT_USER_AGENTS[platform], CPC=decimals(cpc, 3), CTR=decimals(rng.uniform(0.25, 0.6), 5),
            conversion=0, bounce_rate=decimals(rng.uniform(0.93, 0.99), 3),
        )  # fmt: skip
