"""`adnomaly up`, the README's first command, run the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp tree: PostgreSQL runs as the `postgres` user when tests run as root.
    path = Path(tempfile.mkdtemp(prefix="adnomaly-up-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
    assert set(summary) == {"produced", "ingested", "stored", "dlq", "lag"}
    assert summary["produced"] > 60 * 100  # the manifest asks for 200 events/s
    assert summary["dlq"] > 0
    assert summary["stored"] + summary["dlq"] == summary["produced"] + summary["ingested"], summary
    assert summary["lag"] == 0


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
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-3000:]
    summary = json.loads(first.read_text())
    assert summary["produced"] > 500
    assert summary["stored"] + summary["dlq"] == summary["produced"] and summary["lag"] == 0

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


def test_invalid_pipeline_is_refused_with_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: adnomaly.io/v1alpha1\nkind: Pipeline\nmetadata: {name: x}\n"
                   "spec: {kafka: {topics: {raw: {partitions: 0, retention: 1d}}}}\n")
    done = subprocess.run(adnomaly("up", "-f", str(bad)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "spec.kafka.topics.raw.partitions" in done.stdout
