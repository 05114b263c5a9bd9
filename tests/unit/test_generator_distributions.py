"""The generated traffic looks like the systems it imitates: shares, ranges, correlations, daily drift."""

from __future__ import annotations

import re
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from adnomaly.events.schemas import BUILTIN_SCHEMAS
from adnomaly.generator import EventStream, GeneratorSettings
from adnomaly.generator.catalog import COUNTRIES, REGIONS
from adnomaly.generator.drift import daily_factor, local_hour
from adnomaly.generator.sampling import decimals, lognormal_table, lookup_table
from adnomaly.generator.sources.probe import fleet_layout

START = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)


def generate(schema: str, n: int, *, rate: float = 100.0, seed: int = 11) -> list[Any]:
    decoder = msgspec.json.Decoder(BUILTIN_SCHEMAS[schema].struct)
    stream = EventStream(GeneratorSettings(schema=schema, seed=seed, rate=rate, start=START))
    return [decoder.decode(e.value) for e in stream.take(n)]


@pytest.fixture(scope="module")
def clicks() -> list[Any]:
    return generate("clickstream", 20_000)


def test_platform_shares_are_40_30_30(clicks: list[Any]) -> None:
    shares = Counter(e.platform for e in clicks)
    for platform, expected in (("web", 0.40), ("ios", 0.30), ("android", 0.30)):
        assert abs(shares[platform] / len(clicks) - expected) < 0.02


def test_36_iso_countries_weighted_plausibly(clicks: list[Any]) -> None:
    geos = Counter(e.geo for e in clicks)
    assert set(geos) == {c.code for c in COUNTRIES} and len(geos) == 36
    assert all(re.fullmatch("[A-Z]{2}", g) for g in geos)
    assert geos.most_common(1)[0][0] == "US"
    assert geos["US"] > 5 * geos["IE"]


def test_metric_ranges(clicks: list[Any]) -> None:
    assert all(0.005 <= e.CTR <= 0.05 for e in clicks)
    assert all(0.10 <= e.CPC <= 1.20 for e in clicks)
    assert all(0.20 <= e.bounce_rate <= 0.90 for e in clicks)
    assert {e.conversion for e in clicks} == {0, 1}
    # spread over the ranges, not stuck at a bound
    assert statistics.pstdev(e.CTR for e in clicks) > 0.004
    assert statistics.pstdev(e.CPC for e in clicks) > 0.1
    assert statistics.pstdev(e.bounce_rate for e in clicks) > 0.05


def test_conversion_is_correlated_with_ctr(clicks: list[Any]) -> None:
    ctr = [e.CTR for e in clicks]
    conv = [float(e.conversion) for e in clicks]
    assert statistics.correlation(ctr, conv) > 0.1
    converted = statistics.fmean(e.CTR for e in clicks if e.conversion)
    not_converted = statistics.fmean(e.CTR for e in clicks if not e.conversion)
    assert converted > 1.2 * not_converted


def test_users_repeat_and_keep_their_platform_and_agent(clicks: list[Any]) -> None:
    by_user = defaultdict(set)
    for e in clicks:
        assert re.fullmatch("[0-9a-f]{32}", e.user_id_hash)
        by_user[e.user_id_hash].add((e.geo, e.platform, e.user_agent))
    assert len(by_user) < 0.8 * len(clicks)  # a finite population: users come back
    assert max(Counter(e.user_id_hash for e in clicks).values()) >= 3
    assert all(len(profiles) == 1 for profiles in by_user.values())


def test_user_agents_match_platforms(clicks: list[Any]) -> None:
    for e in clicks:
        if e.platform == "ios":
            assert "iPhone" in e.user_agent or "iPad" in e.user_agent
        elif e.platform == "android":
            assert "Android" in e.user_agent
        else:
            assert "Mobile" not in e.user_agent and ("Windows" in e.user_agent or "Mac" in e.user_agent
                                                      or "Linux" in e.user_agent)  # fmt: skip
    assert len({e.user_agent for e in clicks}) >= 15


def test_campaigns_have_ads(clicks: list[Any]) -> None:
    campaign_of = defaultdict(set)
    for e in clicks:
        campaign_of[e.ad_id].add(e.campaign_id)
    assert all(len(c) == 1 for c in campaign_of.values())  # an ad belongs to one campaign
    ads_per_campaign = Counter(next(iter(c)) for c in campaign_of.values())
    assert len(ads_per_campaign) > 50 and max(ads_per_campaign.values()) > 1


def test_clickstream_ctr_and_volume_follow_the_local_day() -> None:
    day = generate("clickstream", 21_600, rate=0.25)  # one simulated day
    us_ctr = defaultdict(list)
    jp_count = Counter()
    for e in day:
        hour = int(local_hour(e.timestamp.timestamp(), -5))
        if e.geo == "US":
            us_ctr[hour].append(e.CTR)
        if e.geo == "JP":
            jp_count[int(local_hour(e.timestamp.timestamp(), 9))] += 1
    evening = statistics.fmean(x for h in (19, 20, 21, 22, 23) for x in us_ctr[h])
    morning = statistics.fmean(x for h in (7, 8, 9, 10, 11) for x in us_ctr[h])
    assert evening > 1.3 * morning
    jp_evening = sum(jp_count[h] for h in (18, 19, 20, 21, 22))
    jp_morning = sum(jp_count[h] for h in (6, 7, 8, 9, 10))
    assert jp_evening > 2 * jp_morning


def test_daily_factor() -> None:
    noon_utc = datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()
    assert daily_factor(noon_utc, 0, 0.5, 12) == pytest.approx(1.5)
    assert daily_factor(noon_utc, 0, 0.5, 0) == pytest.approx(0.5)
    assert daily_factor(noon_utc, 9, 0.5, 21) == pytest.approx(1.5)  # 21:00 in Tokyo
    assert daily_factor(noon_utc, 0, -0.25, 12) == pytest.approx(0.75)


def test_signal_events() -> None:
    events = generate("signal", 5000)
    assert all(isinstance(e.event_id, uuid.UUID) for e in events)
    sources = Counter(e.source for e in events)
    assert set(sources) == {"web", "mobile", "api"} and sources["web"] > sources["api"]
    types = Counter(e.type for e in events)
    assert {"login", "purchase", "click", "view", "signup", "logout"} <= set(types)
    assert types["view"] > types["purchase"]
    for e in events:
        if e.type == "purchase":
            assert e.payload["amount"] > 0 and re.fullmatch("[A-Z]{3}", e.payload["currency"])
            assert e.payload["items"] >= 1
        elif e.type == "login":
            assert isinstance(e.payload["success"], bool) and e.payload["method"]
        elif e.type == "view":
            assert e.payload["page"].startswith("/") and e.payload["duration_ms"] >= 0
    users = Counter(e.user_id for e in events)
    assert max(users.values()) >= 2


def test_probe_fleet_is_fixed_and_uptime_grows_per_node() -> None:
    events = generate("probe", 6000)
    layout = {node_id: (name, REGIONS[region].name) for node_id, name, region in fleet_layout()}
    seen = {e.node_id for e in events}
    assert seen == set(layout)  # the whole fleet reports, and nothing else
    assert {e.node_id for e in generate("probe", 2000, seed=99)} <= set(layout)
    last_uptime: dict[str, float] = {}
    for e in events:
        assert (e.node_name, e.region) == layout[e.node_id]
        assert e.uptime > last_uptime.get(e.node_id, 0.0)
        last_uptime[e.node_id] = e.uptime
        assert 0.0 <= e.packet_loss <= 0.02
    latency = defaultdict(list)
    for e in events:
        latency[e.region].append(e.latency_ms)
    assert statistics.median(latency["af-south"]) > 2.5 * statistics.median(latency["us-east"])
    us = latency["us-east"]
    assert statistics.fmean(us) > statistics.median(us)  # right-skewed (log-normal)
    assert sum(e.packet_loss == 0.0 for e in events) > 0.6 * len(events)


def test_download_duration_matches_speed_and_success_is_the_norm() -> None:
    events = generate("download", 8000)
    assert {e.device_type for e in events} == {"mobile", "tablet", "desktop", "tv"}
    success = sum(e.success for e in events) / len(events)
    assert 0.95 < success < 0.995
    volume = defaultdict(set)  # megabits per content item: speed * duration for complete downloads
    for e in events:
        if e.success:
            volume[e.content_id].add(round(e.speed_mbps * e.duration_s, -1))
    for content_id, sizes in volume.items():
        assert max(sizes) - min(sizes) <= 20, content_id
    speeds = defaultdict(list)
    for e in events:
        speeds[e.device_type].append(e.speed_mbps)
    assert statistics.median(speeds["tv"]) > statistics.median(speeds["mobile"])
    assert {e.os_version for e in events if e.device_type == "tv"} <= {
        "tvOS 17.5", "Android TV 12", "Tizen 7.0", "webOS 23", "Roku OS 13",
    }  # fmt: skip


def test_lookup_table_shares_are_exact_to_one_entry() -> None:
    table = lookup_table(["a", "b", "c"], [0.5, 0.3, 0.2], bits=10)
    counts = Counter(table)
    assert len(table) == 1024
    assert abs(counts["a"] - 512) <= 1 and abs(counts["b"] - 307) <= 1 and abs(counts["c"] - 205) <= 1
    assert Counter(lookup_table(["x", "y"], [1000.0, 1e-9], bits=4))["y"] == 1  # tiny weights still appear
    with pytest.raises(ValueError):
        lookup_table(["a"], [0.0])


def test_noise_helpers() -> None:
    table = lognormal_table(0.5, bits=10)
    assert statistics.median(table) == pytest.approx(1.0, rel=0.01)
    assert table == sorted(table) and table[-1] > 3 * table[len(table) // 2]
    assert decimals(0.123456, 3) == 0.123 and decimals(2.0005, 3) == 2.001
