"""`adnomaly bench features`: the features job and its same-run ceiling (a COUNT(*) over the job's own
source tables) on a real Kafka and a local Flink, with a short event count (two JVM starts dominate)."""

from __future__ import annotations

import json

import pytest
from adnomaly.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

# Enough events that neither job has read them all by the first sighting of its source counter (refreshed
# every 0.2 s): a source reads a pre-filled topic into the buffers before its operators as fast as Kafka
# serves it, and on a fast idle machine 40,000 were all read before the first sighting (2026-12-07, the
# bench then refuses to report a rate). 200,000 keep several sightings on a machine twice as fast again.
EVENTS = 200_000


def test_features_rate_comes_with_its_source_count_ceiling(capsys: pytest.CaptureFixture[str]) -> None:
    # 100 events per simulated second: 200k events span ~33 min of event time, so windows fire and commit.
    assert main(["bench", "features", "--events", str(EVENTS), "--rate", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["events"] == EVENTS
    assert out["events_per_second"] > 0 and out["ceiling_events_per_second"] > 0
    # the ratio is the two figures', as every benchmark reports it
    assert out["ratio"] == round(out["events_per_second"] / out["ceiling_events_per_second"], 3)
    assert out["ceiling_events_per_cpu_second"] > 0 and out["cpu_ratio"] > 0
    # both jobs were timed on (nearly) every event, from their own source counters
    assert 0 < out["measured_events"] <= EVENTS and 0 < out["ceiling_measured_events"] <= EVENTS
    assert out["feature_records"] > 0  # the features job committed its windows (read_committed)
    assert out["nproc"] >= 1 and "load_average_1m" in out and "load_average_1m_after" in out
