"""Alertmanager notifications: the alert payload, the notice decisions, the background sender."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from adnomaly.config import SecretEnv
from adnomaly.detection.anomaly import Anomaly, anomaly_id
from adnomaly.detection.engine import EngineState
from adnomaly.detector.checkpoint import DECODER, ENCODER, Checkpoint
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.notify import state
from adnomaly.notify.alerts import dimension_key, labels, postable, rfc3339
from adnomaly.notify.config import NotifyConfig
from adnomaly.notify.sender import Notifier, NotifyError, auth_from_env
from prometheus_client import CollectorRegistry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAME = "AdnomalyAnomaly"


def anomaly(region: str = "eu", minute: int = 3, status: str = "open", severity: str = "warning",
            resolved_minute: int | None = None) -> Anomaly:  # fmt: skip
    end = T0 + timedelta(minutes=minute)
    dims = {"region": region, "device": "ios"}
    return Anomaly(
        id=anomaly_id("shop", "low-success", dims, end), pipeline="shop", type="low-success", detector="threshold",
        severity=severity, status=status, feature="downloads", metric="success_rate", dimensions=dims,  # type: ignore[arg-type]
        window_start=end - timedelta(minutes=1), window_end=end, observed=0.42, expected=0.9, score=0.97,
        reason="success_rate 0.42 < 0.9", detected_at=end,
        resolved_at=T0 + timedelta(minutes=resolved_minute) if resolved_minute is not None else None,
    )  # fmt: skip


def resolved(a: Anomaly, minute: int, severity: str | None = None) -> Anomaly:
    return msgspec.structs.replace(a, status="resolved", resolved_at=T0 + timedelta(minutes=minute),
                                   severity=severity or a.severity)  # fmt: skip


# --- the payload ---------------------------------------------------------------------------------------


def test_labels_identify_the_anomaly_and_annotations_explain_it() -> None:
    a = anomaly()
    n = state.notice(a, NAME)
    assert n.labels == {"alertname": NAME, "pipeline": "shop", "detector": "low-success", "feature": "downloads",
                        "metric": "success_rate", "key": "device=ios,region=eu", "severity": "warning"}  # fmt: skip
    assert n.annotations["observed"] == "0.42" and n.annotations["expected"] == "0.9"
    assert n.annotations["score"] == "0.97" and n.annotations["reason"] == "success_rate 0.42 < 0.9"
    assert n.annotations["anomaly_id"] == a.id
    assert "low-success" in n.annotations["summary"] and "device=ios,region=eu" in n.annotations["summary"]
    assert dimension_key({"b": "2", "a": "1"}) == dimension_key({"a": "1", "b": "2"}) == "a=1,b=2"


def test_firing_alert_has_no_end_and_a_resolved_one_ends_at_the_resolution() -> None:
    a = anomaly()
    now = T0 + timedelta(hours=1)
    firing = postable(labels(a, NAME), {"summary": "s"}, a.detected_at, None, now)
    assert firing == {"labels": labels(a, NAME), "annotations": {"summary": "s"},
                      "startsAt": "2026-03-01T12:03:00.000Z"}  # fmt: skip
    done = postable(labels(a, NAME), {}, a.detected_at, T0 + timedelta(minutes=9), now, "http://ui/x")
    assert done["endsAt"] == "2026-03-01T12:09:00.000Z" and done["generatorURL"] == "http://ui/x"


def test_times_never_lie_in_the_future() -> None:
    """Alertmanager refuses an alert that ends before it starts; event time may run ahead of the clock."""
    now = T0
    ahead = postable({}, {}, T0 + timedelta(minutes=2), T0 + timedelta(minutes=5), now)
    assert ahead["startsAt"] == ahead["endsAt"] == rfc3339(now)
    assert postable({}, {}, T0 + timedelta(minutes=2), None, now)["startsAt"] == rfc3339(now)


# --- the decisions -------------------------------------------------------------------------------------


def test_open_anomaly_is_sent_then_resent_every_interval() -> None:
    notices = state.observe({}, [anomaly()], NAME)
    assert [s.status for s in state.due(notices, 1000.0, 60, 30)] == ["firing"]
    notices = state.acknowledge(notices, state.due(notices, 1000.0, 60, 30), 1000.0)
    assert state.due(notices, 1059.0, 60, 30) == []
    assert [s.status for s in state.due(notices, 1060.0, 60, 30)] == ["firing"]


def test_resolution_waits_for_the_firing_then_is_sent_until_accepted_and_forgotten() -> None:
    a = anomaly()
    notices = state.observe({}, [a, resolved(a, 5)], NAME)  # opened and resolved in one batch
    first = state.due(notices, 1000.0, 60, 30)
    assert [s.status for s in first] == ["firing"], "the receiver must hear of it firing first"
    notices = state.acknowledge(notices, first, 1000.0)
    assert state.due(notices, 1029.0, 60, 30) == []  # Alertmanager's group_wait has to pass first
    second = state.due(notices, 1030.0, 60, 30)
    assert [s.status for s in second] == ["resolved"]
    assert second[0].notice.ends_at == T0 + timedelta(minutes=5)
    assert state.due(notices, 1031.0, 60, 30) == second  # not accepted yet: again
    assert state.acknowledge(notices, second, 1031.0) == {}


def test_a_resolved_anomaly_is_never_sent_firing_again() -> None:
    a = anomaly()
    notices = state.observe({}, [a], NAME)
    notices = state.acknowledge(notices, state.due(notices, 1000.0, 60, 30), 1000.0)
    notices = state.observe(notices, [resolved(a, 5)], NAME)
    for now in (1030.0, 1100.0, 5000.0):
        assert [s.status for s in state.due(notices, now, 60, 30)] == ["resolved"]
    # a replay of its opening window (after a restart) changes nothing
    assert state.observe(notices, [a], NAME) == notices
    # a firing alert accepted after the resolution (in flight meanwhile) only records that it fired
    late = state.acknowledge(notices, [state.Send(notices[a.id], "firing")], 1200.0)
    assert [s.status for s in state.due(late, 1200.0, 60, 30)] == ["resolved"]


def test_escalation_keeps_the_alert_identity() -> None:
    a = anomaly(severity="warning")
    notices = state.observe({}, [a], NAME)
    notices = state.observe(notices, [resolved(a, 6, severity="critical")], NAME)
    assert notices[a.id].labels["severity"] == "warning"


def test_a_resolution_of_an_unknown_anomaly_is_told_as_firing_then_resolved() -> None:
    a = anomaly()
    notices = state.observe({}, [resolved(a, 5)], NAME)
    assert [s.status for s in state.due(notices, 1000.0, 60, 30)] == ["firing"]


def test_trim_drops_the_oldest_resolved_first() -> None:
    old, new, live = anomaly("a", 1), anomaly("b", 2), anomaly("c", 3)
    notices = state.observe({}, [old, new, live, resolved(old, 4), resolved(new, 5)], NAME)
    kept, dropped = state.trim(notices, 2)
    assert dropped == 1 and set(kept) == {new.id, live.id}
    assert state.trim(notices, 5) == (notices, 0)


def test_keep_open_drops_untracked_open_notices_only() -> None:
    gone, done = anomaly("a"), anomaly("b")
    notices = state.observe({}, [gone, done, resolved(done, 6)], NAME)
    assert set(state.keep_open(notices, [])) == {done.id}


def test_notices_round_trip_through_the_checkpoint() -> None:
    a, b = anomaly("a"), anomaly("b")
    notices = state.observe({}, [a, b, resolved(b, 7)], NAME)
    notices = state.acknowledge(notices, state.due(notices, 1000.0, 60, 30), 1000.0)
    cp = DECODER.decode(ENCODER.encode(Checkpoint(engine=EngineState(), notify=notices)))
    assert cp.notify == notices
    legacy = DECODER.decode(ENCODER.encode(Checkpoint(engine=EngineState())))  # older checkpoints: none
    assert legacy.notify is None


# --- the sender ----------------------------------------------------------------------------------------


class FakePoster:
    def __init__(self) -> None:
        self.posts: list[list[dict[str, Any]]] = []
        self.fail: NotifyError | None = None
        self.gate = threading.Event()
        self.gate.set()

    def post(self, alerts: list[dict[str, Any]]) -> None:
        self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self.posts.append(alerts)

    def close(self) -> None:
        pass


NOW = (T0 + timedelta(hours=1)).timestamp()


def notifier(poster: FakePoster, clock: list[float]) -> tuple[Notifier, DetectorMetrics]:
    metrics = DetectorMetrics(CollectorRegistry())
    config = NotifyConfig(url="http://am:9093", resend_interval_s=60, firing_hold_s=30)
    return Notifier(config, poster, metrics, clock=lambda: clock[0]), metrics


def count(metrics: DetectorMetrics, status: str, result: str) -> float:
    return metrics.notifications.labels(status, result)._value.get()


def test_sender_posts_what_is_due_and_counts_it() -> None:
    poster, clock = FakePoster(), [NOW]
    n, metrics = notifier(poster, clock)
    a = anomaly()
    n.observe([a])
    assert n.send_due() is True
    assert [alert["labels"]["key"] for alert in poster.posts[0]] == ["device=ios,region=eu"]
    assert "endsAt" not in poster.posts[0][0]
    assert n.send_due() is False  # nothing due until the re-send interval has passed
    n.observe([resolved(a, 5)])
    clock[0] = NOW + 30
    assert n.send_due() is True and poster.posts[1][0]["endsAt"] == "2026-03-01T12:05:00.000Z"
    assert n.snapshot() == {}
    assert (count(metrics, "firing", "sent"), count(metrics, "resolved", "sent")) == (1, 1)


def test_sender_failures_are_counted_and_retried_rejections_are_not() -> None:
    poster, clock = FakePoster(), [NOW]
    n, metrics = notifier(poster, clock)
    n.observe([anomaly()])
    poster.fail = NotifyError("connection refused")
    with pytest.raises(NotifyError):
        n.send_due()
    assert count(metrics, "firing", "failed") == 1
    assert state.due(n.snapshot(), NOW, 60, 30), "a failed alert stays due"
    poster.fail = NotifyError("HTTP 400", permanent=True)
    assert n.send_due() is True
    assert count(metrics, "firing", "rejected") == 1 and n.send_due() is False


def test_observe_never_waits_for_alertmanager() -> None:
    poster, clock = FakePoster(), [NOW]
    n, _ = notifier(poster, clock)
    poster.gate.clear()  # Alertmanager hangs
    n.observe([anomaly("a")])
    n.start()
    try:
        time.sleep(0.2)  # the sender is now blocked in its post
        started = time.perf_counter()
        n.observe([anomaly("b")])
        n.preview([anomaly("c")])
        assert time.perf_counter() - started < 0.1
    finally:
        poster.gate.set()
        n.close()
    assert poster.posts, "the sender thread posted once Alertmanager answered"


def test_credentials_come_from_the_environment_and_are_not_shown() -> None:
    basic = auth_from_env({SecretEnv.ALERTMANAGER_USERNAME: "u", SecretEnv.ALERTMANAGER_PASSWORD: "pw-123"})
    assert basic is not None and type(basic).__name__ == "BasicAuth"
    bearer = auth_from_env({SecretEnv.ALERTMANAGER_TOKEN: "tok-456"})
    assert bearer is not None and "tok-456" not in repr(bearer)
    assert auth_from_env({}) is None


# --- planning and the local Alertmanager's config ------------------------------------------------------

DETECTION = {"features": [{"name": "downloads", "dimensions": ["region"],
                           "metrics": [{"name": "success_rate", "agg": "avg", "field": "success"}]}]}  # fmt: skip


def planned(notify: dict[str, Any] | None, alertmanager_url: str | None = None) -> Any:
    from adnomaly.plan import Endpoints, plan
    from adnomaly.spec import parse_pipeline

    detection: dict[str, Any] = {"detectors": [{"name": "low", "feature": "downloads", "metric": "success_rate",
                                                "threshold": {"warningBelow": 0.9}}]}  # fmt: skip
    if notify is not None:
        detection["notify"] = notify
    p = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "shop"},
                        "spec": {"events": {"schema": "download"}, **DETECTION, "detection": detection}})  # fmt: skip
    return plan(p, Endpoints(kafka_bootstrap="k:9092", alertmanager_url=alertmanager_url))


def test_the_plan_sends_to_the_specs_alertmanager_else_the_backends() -> None:
    from adnomaly.plan import wants_local_alertmanager

    spec_url = planned({"alertmanager": {"url": "http://am.example:9093"}}, alertmanager_url="http://127.0.0.1:1")
    section = spec_url.components["detector"].config.detector
    assert section.notify.url == "http://am.example:9093" and "notify" not in section.detection
    local = planned({"alertmanager": {}}, alertmanager_url="http://127.0.0.1:1")
    assert local.components["detector"].config.detector.notify.url == "http://127.0.0.1:1"
    nowhere = planned({"alertmanager": {}})
    assert nowhere.components["detector"].config.detector.notify is None
    assert "AlertmanagerNotPlanned" in [reason for reason, _ in nowhere.conditions]
    off = planned(None, alertmanager_url="http://127.0.0.1:1")
    assert off.components["detector"].config.detector.notify is None
    assert "AlertmanagerNotPlanned" not in [reason for reason, _ in off.conditions]
    from adnomaly.spec import parse_pipeline

    assert not wants_local_alertmanager(parse_pipeline({"kind": "Pipeline", "metadata": {"name": "x"}, "spec": {
        "detection": {"notify": {"alertmanager": {}}}}}))  # no detectors: nothing to notify


def test_local_alertmanager_config_notifies_each_anomaly_once_and_is_the_users(tmp_path: Any) -> None:
    import yaml
    from adnomaly.local.alertmanager import alertmanager_config, ensure_config

    doc = yaml.safe_load(alertmanager_config("http://127.0.0.1:7/hook"))
    route = doc["route"]
    assert route["group_by"] == ["..."] and route["repeat_interval"] == "720h"
    assert doc["receivers"] == [{"name": "webhook", "webhook_configs": [
        {"url": "http://127.0.0.1:7/hook", "send_resolved": True}]}]  # fmt: skip
    path = ensure_config(tmp_path)
    path.write_text("# edited\n" + path.read_text())
    assert ensure_config(tmp_path).read_text().startswith("# edited"), "an edit is never overwritten"


def test_local_prometheus_sends_its_alerts_to_the_local_alertmanager() -> None:
    from adnomaly.local.prometheus import scrape_config

    assert scrape_config({"detector": 9}, alertmanager="127.0.0.1:9093")["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    assert "alerting" not in scrape_config({"detector": 9})
