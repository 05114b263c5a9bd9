"""`adnomaly up`, the README's first command, run the way a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def adnomaly(*args: str) -> list[str]:
    return [sys.executable, "-m", "adnomaly.cli", *args]


def test_up_for_60s_accounts_for_every_event(state_dir: Path, tmp_path: Path) -> None:
    summary_path = tmp_path / "s.json"
    done = subprocess.run(
        adnomaly("up", "-f", "manifests/pipeline.yaml", "--for", "60", "--invalid-rate", "0.01",
                 "--summary-json", str(summary_path), "--state-dir", str(state_dir)),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert set(summary) == {"produced", "ingested", "duplicates", "stored", "dlq", "lag", "anomalies"}
    assert summary["produced"] > 60 * 100  # the manifest asks for 200 events/s
    assert summary["dlq"] > 0 and summary["duplicates"] == 0  # the generator never sends an id twice
    assert summary["stored"] + summary["dlq"] == summary["produced"] + summary["ingested"], summary
    assert summary["lag"] == 0


SAMPLE = re.compile(r"produced=(\d+) ingested=(\d+) stored=(\d+) dlq=(\d+) lag=\d+ in=(\d+)/s")


def first_run_diagnostics(state_dir: Path, output: str) -> str:
    """What a failed first run needs looked at: its messages, the Flink job's progress, the detector's log."""
    pipeline = state_dir / "pipelines" / "clickstream"
    lines = output.splitlines()
    flink = "\n".join(
        line[:160] for log in sorted((pipeline / "flink" / "logs").glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "Triggering checkpoint" in line or "Completed checkpoint" in line or "Exception" in line
    ).splitlines()
    detector = (pipeline / "detector" / "detector.log")
    detector_tail = detector.read_text(errors="replace")[-2000:] if detector.exists() else "(no detector log)"
    return "\n".join([
        "--- messages and feature windows:", *lines[:12], "...", *lines[-60:],
        "--- flink checkpoints (first and last):", *flink[:4], *flink[-4:],
        "--- detector log:", detector_tail,
    ])  # fmt: skip


def test_the_first_run_shows_an_anomaly_open_and_resolve(state_dir: Path, tmp_path: Path) -> None:
    """The first run as the README promises it: within 240 s on a fresh state directory the labelled
    click-fraud burst opens an anomaly on its platform and it resolves; every refresh adds up; every event is
    accounted for."""
    summary_path = tmp_path / "s.json"
    started = time.monotonic()
    done = subprocess.run(
        adnomaly("up", "-f", "manifests/pipeline.yaml", "--for", "240", "--summary-json", str(summary_path),
                 "--state-dir", str(state_dir)),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert time.monotonic() - started < 400  # start, 240 s, drain: about five minutes, more on a loaded machine
    summary = json.loads(summary_path.read_text())
    print("summary:", summary)
    assert summary["anomalies"]["opened"] >= 1 and summary["anomalies"]["resolved"] >= 1, (
        f"{summary}\n{first_run_diagnostics(state_dir, output)}"
    )
    assert summary["stored"] + summary["dlq"] == summary["produced"] + summary["ingested"], summary
    assert summary["lag"] == 0 and summary["produced"] > 200 * 200

    # The anomaly is the labelled burst's: same platform; announced when it opened and when it resolved.
    labels = state_dir / "pipelines" / "clickstream" / "generator" / "labels.jsonl"
    burst = json.loads(labels.read_text().splitlines()[0])
    assert burst["scenario"] == "clickFraudBurst"
    flat = " ".join(output.split())  # the console wraps long lines
    assert f"anomaly opened: ctr-spike (auto) platform={burst['key']['platform']}: " in flat, flat[-3000:]
    assert "observed " in flat and " vs expected " in flat and "score " in flat
    assert f"anomaly resolved: ctr-spike platform={burst['key']['platform']}" in flat

    # Every refresh is consistent, and once running the incoming rate is the generator's 200 events/s.
    samples = [tuple(map(int, m)) for m in SAMPLE.findall(flat)]
    assert len(samples) > 20
    for produced, ingested, stored, dlq, _ in samples:
        assert stored + dlq <= produced + ingested, samples
    rates = sorted(r for *_, r in samples[3:])
    assert 160 <= rates[len(rates) // 2] <= 240, rates


def test_sigterm_drains_and_a_second_run_keeps_counting(state_dir: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    process = subprocess.Popen(
        adnomaly("up", "-f", "manifests/pipeline.yaml", "--summary-json", str(first), "--state-dir", str(state_dir)),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        stats = state_dir / "pipelines" / "clickstream" / "generator" / "stats.json"
        while time.monotonic() < deadline:
            if stats.exists() and json.loads(stats.read_text() or "{}").get("produced", 0) > 500:
                break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(1)
        resent = send_with_retries(state_dir)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-3000:]
    summary = json.loads(first.read_text())
    assert summary["produced"] > 500 and summary["ingested"] == 100 and summary["duplicates"] == resent, summary
    assert summary["stored"] + summary["dlq"] == summary["produced"] + summary["ingested"] - summary["duplicates"]
    assert summary["lag"] == 0

    # The state directory is kept: a second run stores its own events on top, none of the first are lost.
    second = tmp_path / "second.json"
    done = subprocess.run(
        adnomaly("up", "-f", "manifests/pipeline.yaml", "--for", "10", "--summary-json", str(second),
                 "--state-dir", str(state_dir)),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = json.loads(second.read_text())
    assert again["produced"] > 0 and again["stored"] + again["dlq"] == again["produced"], again
    # ...and is reached where it was: clients and bookmarks need not rediscover the endpoints
    assert endpoints(output) and endpoints(done.stdout) == endpoints(output), (output[-2000:], done.stdout[-2000:])


def send_with_retries(state_dir: Path) -> int:
    """A client of the ingest API with its own event ids that re-sends: 60 events, then the first batch again
    and a third of the second, as a client retrying timed-out requests would. Returns how many were re-sent."""
    pipeline = state_dir / "pipelines" / "clickstream"
    port = json.loads((pipeline / "ports.json").read_text())["ingest"]
    token = (pipeline / "secrets" / "ingest-token").read_text().strip()
    now = datetime.now(UTC).isoformat()
    events = [{"event_id": f"client-{n}", "timestamp": now, "user_id_hash": f"u{n}", "ad_id": "ad-1",
               "campaign_id": "c-1", "geo": "US", "platform": "web", "user_agent": "Mozilla/5.0", "CPC": 0.5,
               "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4} for n in range(60)]  # fmt: skip
    batches = [events[:30], events[30:], events[:30] + events[30:40]]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    for batch in batches:
        body = "".join(json.dumps(event) + "\n" for event in batch)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/events", content=body, headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text
    return len(batches[2])


def endpoints(output: str) -> list[str]:
    return sorted(re.findall(r"(?:ingest API|console|prometheus): (http://127\.0\.0\.1:\d+)", output))


def test_invalid_pipeline_is_refused_with_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: adnomaly.io/v1alpha1\nkind: Pipeline\nmetadata: {name: x}\n"
                   "spec: {kafka: {topics: {raw: {partitions: 0, retention: 1d}}}}\n")
    done = subprocess.run(adnomaly("up", "-f", str(bad)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "spec.kafka.topics.raw.partitions" in done.stdout
