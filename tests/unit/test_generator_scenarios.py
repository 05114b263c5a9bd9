"""Labelled anomaly scenarios: a reproducible schedule, clear errors, and effects visible in the data."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from adnomaly.events.schemas import BUILTIN_SCHEMAS
from adnomaly.generator import EventStream, GeneratorSettings, ScenarioLabel, ScheduleSettings
from adnomaly.generator.scenarios import SCENARIO_NAMES
from adnomaly.generator.stats import LabelWriter, read_labels

START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SCHEDULE = ScheduleSettings(first_after_s=60, every_s=120, duration_s=40)


def stream(schema: str, scenarios: tuple[str, ...], *, seed: int = 21, rate: float = 40.0, **kw: Any) -> EventStream:
    return EventStream(GeneratorSettings(
        schema=schema, seed=seed, rate=rate, start=START, scenarios=scenarios, schedule=SCHEDULE, **kw,
    ))  # fmt: skip


def labels_of(s: EventStream, slots: int) -> list[ScenarioLabel]:
    return [s.schedule.window(k)[2] for k in range(slots)]


def split(s: EventStream, n: int) -> tuple[list[tuple[ScenarioLabel, Any]], list[Any], ScenarioLabel]:
    """Decode n valid events; return (events inside a scenario window with their label, events outside)."""
    decoder = msgspec.json.Decoder(BUILTIN_SCHEMAS[s.settings.schema].struct)
    inside, outside = [], []
    for e in s.take(n):
        if e.malformed is not None:
            continue
        label, _ = s.schedule.active(e.time_us)
        (inside.append((label, decoder.decode(e.value))) if label else outside.append(decoder.decode(e.value)))
    return inside, outside, s.schedule.window(0)[2]


def matches(event: Any, key: dict[str, str]) -> bool:
    return all(str(getattr(event, k)) == v for k, v in key.items())


def test_the_five_scenarios_exist() -> None:
    assert set(SCENARIO_NAMES) == {
        "clickFraudBurst", "brokenCampaign", "regionalOutage", "probeLatencySpike", "malformedStorm",
    }  # fmt: skip


def test_labels_are_deterministic_and_follow_the_schedule() -> None:
    names = ("clickFraudBurst", "brokenCampaign", "malformedStorm")
    labels = labels_of(stream("clickstream", names), 9)
    assert labels == labels_of(stream("clickstream", names), 9)
    assert [label.scenario for label in labels] == list(names) * 3  # round robin, in the configured order
    for k, label in enumerate(labels):
        slot_start = START + timedelta(seconds=60 + 120 * k)
        assert slot_start <= label.start < slot_start + timedelta(seconds=120 - 40)
        assert label.end - label.start == timedelta(seconds=40)
        assert label.schema == "clickstream"
    keys = {label.scenario: label.key for label in labels}
    assert set(keys["clickFraudBurst"]) == {"geo", "platform"}
    assert set(keys["brokenCampaign"]) == {"campaign_id"}
    assert keys["malformedStorm"] == {}
    others = labels_of(stream("clickstream", names, seed=22), 9)
    assert [(lb.start, lb.key) for lb in others] != [(lb.start, lb.key) for lb in labels]


@pytest.mark.parametrize(
    ("schema", "scenario"),
    [
        ("signal", "clickFraudBurst"), ("signal", "probeLatencySpike"), ("probe", "regionalOutage"),
        ("download", "brokenCampaign"), ("clickstream", "probeLatencySpike"), ("probe", "clickFraudBurst"),
    ],
)  # fmt: skip
def test_scenarios_that_do_not_fit_the_schema_are_rejected(schema: str, scenario: str) -> None:
    with pytest.raises(ValueError, match=f"scenario {scenario} does not apply to schema {schema}"):
        stream(schema, (scenario,))


def test_unknown_scenarios_and_bad_schedules_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'spikes'"):
        stream("clickstream", ("spikes",))
    with pytest.raises(ValueError, match="must fit its slot"):
        ScheduleSettings(every_s=60, duration_s=90)


@pytest.mark.parametrize("schema", list(BUILTIN_SCHEMAS))
def test_malformed_storm_applies_to_every_schema(schema: str) -> None:
    s = stream(schema, ("malformedStorm",), invalid_rate=0.01)
    label = s.schedule.window(0)[2]
    inside = outside = bad_inside = bad_outside = 0
    for e in s.take(40 * 180):  # three minutes: the first slot
        if label.contains(datetime.fromtimestamp(e.time_us / 1e6, UTC)):
            inside += 1
            bad_inside += e.malformed is not None
        else:
            outside += 1
            bad_outside += e.malformed is not None
    assert inside > 1000
    assert 0.4 < bad_inside / inside < 0.6
    assert bad_outside / outside < 0.03


def test_click_fraud_burst_surges_ctr_bounce_and_volume_with_repeated_users() -> None:
    inside, outside, label = split(stream("clickstream", ("clickFraudBurst",)), 40 * 180)
    key = label.key
    hit = [e for lb, e in inside if matches(e, key)]
    normal_key = [e for e in outside if matches(e, key)]
    assert statistics.fmean(e.CTR for e in hit) > 5 * statistics.fmean(e.CTR for e in normal_key)
    assert statistics.fmean(e.bounce_rate for e in hit) > statistics.fmean(e.bounce_rate for e in normal_key) + 0.2
    share_inside = len(hit) / len(inside)
    share_outside = len(normal_key) / len(outside)
    assert share_inside > 4 * share_outside  # the key's volume surges
    users = Counter(e.user_id_hash for e in hit)
    assert users.most_common(1)[0][1] >= 10  # bots come back again and again
    assert sum(1 for e in hit if e.CTR > 0.05) > 0.5 * len(hit)


def test_broken_campaign_ctr_collapses() -> None:
    inside, outside, label = split(stream("clickstream", ("brokenCampaign",), rate=60.0), 60 * 180)
    campaign = label.key["campaign_id"]
    broken = [e.CTR for _, e in inside if e.campaign_id == campaign]
    before = [e.CTR for e in outside if e.campaign_id == campaign]
    assert len(broken) > 30 and len(before) > 30
    assert statistics.fmean(broken) < 0.1 * statistics.fmean(before)
    others_inside = [e.CTR for _, e in inside if e.campaign_id != campaign]
    assert statistics.fmean(others_inside) > 0.005  # only that campaign


def test_regional_outage_drops_success_and_speed_in_one_region() -> None:
    inside, outside, label = split(stream("download", ("regionalOutage",)), 40 * 180)
    region = label.key["region"]
    hit = [e for _, e in inside if e.region == region]
    before = [e for e in outside if e.region == region]
    assert sum(e.success for e in hit) / len(hit) < 0.5
    assert sum(e.success for e in before) / len(before) > 0.95
    assert statistics.median(e.speed_mbps for e in hit) < 0.2 * statistics.median(e.speed_mbps for e in before)
    elsewhere = [e for _, e in inside if e.region != region]
    assert sum(e.success for e in elsewhere) / len(elsewhere) > 0.95


def test_probe_latency_spike_in_one_region() -> None:
    inside, outside, label = split(stream("probe", ("probeLatencySpike",)), 40 * 180)
    region = label.key["region"]
    hit = [e for _, e in inside if e.region == region]
    before = [e for e in outside if e.region == region]
    assert statistics.median(e.latency_ms for e in hit) > 3 * statistics.median(e.latency_ms for e in before)
    assert statistics.fmean(e.packet_loss for e in hit) > 0.04 > statistics.fmean(e.packet_loss for e in before)
    elsewhere = [e for _, e in inside if e.region != region]
    assert statistics.fmean(e.packet_loss for e in elsewhere) < 0.01


def test_label_feed_hands_out_each_label_once_when_it_starts(tmp_path: Path) -> None:
    s = stream("probe", ("probeLatencySpike", "malformedStorm"))
    feed = s.labels()
    first, second = s.schedule.window(0), s.schedule.window(1)
    start_us = int(START.timestamp() * 1_000_000)
    assert feed.started_by(start_us) == []
    assert feed.started_by(first[0] - 1) == []
    assert feed.started_by(first[0]) == [first[2]]
    assert feed.started_by(first[1]) == []
    assert feed.started_by(second[0] + 1) == [second[2]]
    writer = LabelWriter(tmp_path / "labels.jsonl")
    writer.write([first[2], second[2]])
    writer.close()
    assert read_labels(tmp_path / "labels.jsonl") == [first[2], second[2]]
    line = msgspec.json.decode((tmp_path / "labels.jsonl").read_bytes().splitlines()[0])
    assert set(line) == {"scenario", "schema", "start", "end", "key"}
    assert line["start"].endswith("Z")


def test_no_scenarios_no_labels() -> None:
    s = stream("download", ())
    assert s.labels().started_by(10**18) == []
    assert s.schedule.active(10**17)[0] is None
