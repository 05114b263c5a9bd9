"""What `adnomaly up` shows: counters consistent at every refresh, real rates, anomalies as they open and resolve."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from adnomaly.anomalies.models import AnomalyOut
from adnomaly.kafka_client import KafkaAdminError
from adnomaly.local import progress as progress_module
from adnomaly.local.anomalies import AnomalyCounts, transitions
from adnomaly.local.live import LiveView
from adnomaly.local.progress import Progress, ProgressProbe, rate, settled
from confluent_kafka import KafkaError, KafkaException


def test_a_sample_never_shows_more_stored_than_produced() -> None:
    ahead = Progress(produced=12_219, ingested=0, stored=12_484, dlq=60)
    shown = settled(ahead)
    assert shown.stored + shown.dlq == shown.produced + shown.ingested == 12_544
    behind = Progress(produced=500, ingested=20, stored=400, dlq=5)
    assert settled(behind) == behind
    only_ingest = settled(Progress(ingested=10, stored=12, dlq=1), "ingested")
    assert (only_ingest.produced, only_ingest.ingested) == (0, 13)


def test_the_summary_is_never_settled_and_carries_the_anomalies() -> None:
    sample = Progress(produced=10, stored=12, opened=2, resolved=1)
    assert sample.summary() == {"produced": 10, "ingested": 0, "duplicates": 0, "stored": 12, "dlq": 0, "lag": 0,
                                "anomalies": {"opened": 2, "resolved": 1}}  # fmt: skip


def test_re_sent_events_are_accounted_as_duplicates_not_as_sinks_ahead() -> None:
    # 100 lines ingested, 10 of them re-sends of ids already stored: 90 rows, nothing to settle
    resent = Progress(produced=0, ingested=100, duplicates=10, stored=88, dlq=2)
    assert settled(resent, "ingested") == resent
    ahead = settled(Progress(ingested=100, duplicates=10, stored=95, dlq=2), "ingested")
    assert ahead.stored + ahead.dlq == ahead.ingested - ahead.duplicates


class World:
    """A generator that keeps producing while the probe reads: each read of a counter takes time."""

    def __init__(self, stats: Path) -> None:
        self.stats = stats
        self.produced = 0
        self.reads: list[str] = []

    def tick(self, what: str) -> None:
        self.reads.append(what)
        self.produced += 100  # events produced (and stored at once) while this read ran
        self.stats.write_text(json.dumps({"produced": self.produced}))

    def stored(self) -> int:
        self.tick("stored")
        return self.produced  # the processor keeps up: everything produced so far is stored


def test_the_probe_reads_the_sinks_before_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(tmp_path / "stats.json")
    monkeypatch.setattr(progress_module.DistinctDeadLetters, "count", lambda self: world.tick("dlq") or 0)
    monkeypatch.setattr(progress_module, "consumer_lag", lambda *a, **k: world.tick("lag") or {})
    probe = ProgressProbe(
        bootstrap="kafka", raw_topic="raw", dlq_topic="dlq", group_id="g", count_stored=world.stored,
        count_duplicates=lambda: world.tick("duplicates") or 0,
        generator_stats=world.stats, ingest_metrics_url=None,
        anomalies=lambda: (world.tick("anomalies"), (AnomalyCounts(3, 1), []))[1],
    )  # fmt: skip
    sample = probe.read()
    assert world.reads.index("stored") < world.reads.index("dlq")
    assert sample.stored <= sample.produced  # the generator was read after the table
    assert (sample.opened, sample.resolved) == (3, 1)


def test_rates_span_seconds_of_samples() -> None:
    # The generator reports in steps; between two samples a second apart the count moves by 0, 1 or 2 steps.
    steps = [(t * 1.3, int(t * 1.3 / 0.25) * 50) for t in range(12)]  # 200/s reported every 0.25 s
    consecutive = [rate(steps[i : i + 2]) for i in range(len(steps) - 1)]
    assert min(consecutive) < 170 or max(consecutive) > 230  # what the old view showed
    assert rate(steps[-5:]) == pytest.approx(200, rel=0.06)
    assert rate(steps[:1]) == 0.0


def test_the_live_view_rates_over_its_window() -> None:
    view = LiveView("p", live=False)
    rates = [view._rates(Progress(produced=int(t * 1.3 / 0.25) * 50, stored=int(t * 1.3) * 200, at=t * 1.3))[0]
             for t in range(12)]  # fmt: skip
    assert all(r == pytest.approx(200, rel=0.06) for r in rates[5:]), rates


def row(id_: str, status: str, **overrides: object) -> AnomalyOut:
    values: dict[str, object] = dict(
        id=id_, detector="ctr-spike", method="auto", severity="critical", status=status, feature="ctr_by_platform",
        metric="ctr_avg", key={"platform": "ios"}, window_start=datetime(2026, 12, 5, 7, 12, 4, tzinfo=UTC),
        window_end=datetime(2026, 12, 5, 7, 12, 5, tzinfo=UTC), observed=0.0934, expected=0.0186, score=0.9999,
        statistic=None, reason="", context={}, detected_at=datetime(2026, 12, 5, 7, 12, 5, tzinfo=UTC),
        resolved_at=datetime(2026, 12, 5, 7, 12, 26, tzinfo=UTC) if status == "resolved" else None,
    )  # fmt: skip
    values.update(overrides)
    return AnomalyOut(**values)  # type: ignore[arg-type]


def test_each_anomaly_is_announced_once_when_it_opens_and_once_when_it_resolves() -> None:
    seen: dict[str, str] = {}
    assert transitions(seen, []) == []
    opened = transitions(seen, [row("a", "open")])
    assert opened == ["anomaly opened: ctr-spike (auto) platform=ios: critical, observed 0.0934 vs expected 0.0186, "
                      "score 1.000"]  # fmt: skip
    assert transitions(seen, [row("a", "open")]) == []
    assert transitions(seen, [row("a", "resolved")]) == ["anomaly resolved: ctr-spike platform=ios"]
    assert transitions(seen, [row("a", "resolved")]) == []
    both = transitions(seen, [row("b", "resolved", expected=None, key={})])
    assert both == ["anomaly opened: ctr-spike (auto) (all): critical, observed 0.0934, score 1.000",
                    "anomaly resolved: ctr-spike (all)"]  # fmt: skip


def test_the_live_view_announces_this_runs_anomalies_only(capsys: pytest.CaptureFixture[str]) -> None:
    view = LiveView("p", live=False)
    view.update(Progress(recent=(row("old", "open"),), at=1.0))
    view.update(Progress(recent=(row("new", "open"), row("old", "open")), at=2.0))
    view.update(Progress(recent=(row("new", "resolved"), row("old", "open")), at=3.0))
    out = capsys.readouterr().out
    assert out.count("anomaly opened:") == 1 and out.count("anomaly resolved:") == 1


class FreshTopicConsumer:
    """A consumer of a topic created a moment ago: its partition has no leader for the first two asks."""

    asks = 0

    def __init__(self, config: object) -> None:
        pass

    def list_topics(self, topic: str, timeout: float) -> object:
        partitions = {0: None}
        return type("Meta", (), {"topics": {topic: type("Topic", (), {"partitions": partitions})()}})()

    def get_watermark_offsets(self, partition: object, timeout: float) -> tuple[int, int]:
        FreshTopicConsumer.asks += 1
        if FreshTopicConsumer.asks <= 2:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 0, 42

    def close(self) -> None:
        pass


def test_a_topic_without_a_leader_yet_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "Consumer", FreshTopicConsumer)
    assert progress_module.topic_end_offsets("kafka", "dlq", timeout=5.0) == 42
    assert FreshTopicConsumer.asks == 3


class FlakyProbe:
    """A probe whose first `failures` samples time out, as on a loaded machine."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def live(self) -> Progress:
        return self.read()

    def read(self) -> Progress:
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return Progress(produced=7, stored=7, at=1.0)


def test_a_failed_sample_never_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adnomaly.local import up

    monkeypatch.setattr(up.time, "sleep", lambda _: None)
    view = LiveView("p", live=False)
    flaky = FlakyProbe(3)
    for _ in range(4):  # three failures in a row are one outage, said once; the fourth sample ends it
        up.refresh(view, flaky)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("counters not current: KafkaException") == 1 and "counters current again" in out
    lagging = FlakyProbe(0)
    lagging.read = lambda: (_ for _ in ()).throw(KafkaAdminError("Not coordinator"))  # type: ignore[method-assign]
    up.refresh(LiveView("p", live=False), lagging)  # type: ignore[arg-type]
    assert "Not coordinator" in capsys.readouterr().out
    assert up.retried(FlakyProbe(up.FINAL_READ_ATTEMPTS - 1).read).produced == 7
    with pytest.raises(KafkaException):
        up.retried(FlakyProbe(up.FINAL_READ_ATTEMPTS).read)
