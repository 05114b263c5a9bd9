"""Anomalies reach a real Alertmanager (Debian's binary, on loopback) and, through its webhook receiver (an
HTTP server run here), a person: one firing and one resolved notification per anomaly, also when the
detector is killed with SIGKILL in between and restarted."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from adnomaly.config import SecretEnv
from adnomaly.detector.config import DETECTOR_SECTION
from adnomaly.local.alertmanager import AlertmanagerServer, alertmanager_config
from adnomaly.notify.config import NotifyConfig
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.prometheus import find_alertmanager

from tests.integration.component_process import ComponentProcess
from tests.integration.test_detector import detector_setup, produce, record

pytestmark = pytest.mark.skipif(
    find_alertmanager() is None, reason="prometheus-alertmanager missing: make services"
)
PASSWORD = "am-secret-0f3c9a"


class Webhook:
    """An Alertmanager webhook receiver: every notification's alerts as (key, status, labels)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[tuple[str, str, dict[str, str]]]:
        return [(a["labels"]["key"], a["status"], a["labels"]) for n in list(self.received) for a in n["alerts"]]

    def count(self) -> Counter[tuple[str, str]]:
        return Counter((key, status) for key, status, _ in self.alerts())


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def alertmanager(webhook: Webhook, tmp_path: Path) -> Iterator[AlertmanagerServer]:
    directory = tmp_path / "alertmanager"
    directory.mkdir()
    config = directory / "alertmanager.yml"
    config.write_text(alertmanager_config(webhook.url, group_wait="1s", group_interval="1s"))
    binary = find_alertmanager()
    assert binary is not None
    server = AlertmanagerServer(binary, config, directory)
    server.start(timeout=60)
    yield server
    server.stop()


def wait_for(check: Callable[[], bool], timeout: float, what: str, detector: ComponentProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not detector.alive():
            raise AssertionError(f"the detector died while waiting for {what}:\n{detector.log[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{detector.log[-3000:]}")


def test_one_firing_and_one_resolved_notification_per_anomaly_across_kill_9(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str], webhook: Webhook,
    alertmanager: AlertmanagerServer, sinks: list[ComponentProcess], tmp_path: Path,
) -> None:  # fmt: skip
    notify = NotifyConfig(url=alertmanager.url, resend_interval_s=1.0, firing_hold_s=6.0)
    config, section = detector_setup(kafka, topic_factory, "notify-itest", batch_size=50, batch_timeout_s=0.2,
                                     notify=notify)  # fmt: skip
    features = config.kafka.topics.features
    env = {SecretEnv.POSTGRES_DSN: postgres.dsn, SecretEnv.ALERTMANAGER_USERNAME: "adnomaly",
           SecretEnv.ALERTMANAGER_PASSWORD: PASSWORD}  # fmt: skip

    def detector(workdir: str) -> ComponentProcess:
        process = ComponentProcess(tmp_path / workdir, "detector", config, DETECTOR_SECTION, section, env)
        sinks.append(process)
        return process.start()

    # eu opens as a warning, escalates to critical, resolves; us opens and stays open.
    produce(kafka.bootstrap_servers, features,
            [*(record(m, "eu", s) for m, s in enumerate([0.97, 0.85, 0.4, 0.97, 0.97])),
             *(record(m, "us", s) for m, s in enumerate([0.97, 0.5, 0.5]))])  # fmt: skip
    first = detector("a")
    want = {("region=eu", "firing"), ("region=eu", "resolved"), ("region=us", "firing")}
    wait_for(lambda: want <= set(webhook.count()), 90, "eu firing and resolved, us firing", first)
    time.sleep(3)  # several re-sends of us (every second): Alertmanager notifies no one of them

    # ap opens and resolves in one batch: its resolution is held back 6 s after its firing was accepted,
    # and the detector is killed in that time, so only the restarted one can send it.
    produce(kafka.bootstrap_servers, features, [record(m, "ap", s) for m, s in enumerate([0.97, 0.5, 0.97, 0.97])])
    wait_for(lambda: ("region=ap", "firing") in webhook.count(), 60, "ap firing", first)
    first.process.kill()
    assert ("region=ap", "resolved") not in webhook.count()

    produce(kafka.bootstrap_servers, features, [record(m, "us", 0.97) for m in (3, 4)])  # us resolves
    second = detector("b")
    everything = {(f"region={r}", s) for r in ("eu", "us", "ap") for s in ("firing", "resolved")}
    wait_for(lambda: set(webhook.count()) == everything, 90, "every resolution", second)
    time.sleep(5)  # re-sends and Alertmanager's group intervals: nothing more may arrive
    assert second.terminate() == 0

    assert webhook.count() == Counter({key: 1 for key in everything}), webhook.alerts()
    eu = [labels for key, _, labels in webhook.alerts() if key == "region=eu"]
    assert [labels["severity"] for labels in eu] == ["warning", "warning"]  # the alert's identity stays
    assert all(labels["pipeline"] == "notify-itest" and labels["detector"] == "low-success"
               for _, _, labels in webhook.alerts())  # fmt: skip
    for log in (first.log, second.log):
        assert PASSWORD not in log


def test_adnomaly_up_runs_alertmanager_on_the_users_config(tmp_path: Path) -> None:
    import httpx
    from adnomaly.local.state import open_state_dir
    from adnomaly.local.up import start_alertmanager
    from adnomaly.spec import parse_pipeline

    spec = {"events": {"schema": "download"},
            "features": [{"name": "downloads", "dimensions": ["region"],
                          "metrics": [{"name": "success_rate", "agg": "avg", "field": "success"}]}],
            "detection": {"detectors": [{"name": "low", "feature": "downloads", "metric": "success_rate",
                                         "threshold": {"warningBelow": 0.9}}],
                          "notify": {"alertmanager": {}}}}  # fmt: skip
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "shop"}, "spec": spec})
    state = open_state_dir(tmp_path / ".adnomaly")
    for run in range(2):
        said: list[str] = []
        server = start_alertmanager(pipeline, state, said.append)
        assert server is not None, said
        try:
            assert server.config_path == state.service_dir("alertmanager") / "alertmanager.yml"
            original = httpx.get(f"{server.url}/api/v2/status", timeout=5).json()["config"]["original"]
            assert (state.service_dir("alertmanager") / "url").read_text().strip() == server.url
        finally:
            server.stop()
        if run == 0:
            assert "http://127.0.0.1:5001/" in original
            server.config_path.write_text(server.config_path.read_text().replace("127.0.0.1:5001", "127.0.0.1:5002"))
    assert "http://127.0.0.1:5002/" in original, "the user's edit is what runs"
