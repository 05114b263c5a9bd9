"""The original Adnomaly's Feast snippet, unchanged, against a running `adnomaly up` of the ad-fraud example: generator
events → Flink windows → the feature sink → Feast's `get_online_features`, equal to `GET /v1/features/...`; and
`get_historical_features` at that window's end returns the same window from `feature_aggregates`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from adnomaly.services.feast import ensure_feast

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = "manifests/examples/clickstream-ad-fraud.yaml"
VIEW = "traffic_5m_by_geo_platform"
METRICS = ("ctr_avg", "bounce_rate_avg", "event_count")
SNIPPET = """
import json
from feast import FeatureStore

store = FeatureStore(repo_path="{repo}")
features = store.get_online_features(
    features=[
        "traffic_5m_by_geo_platform:ctr_avg",
        "traffic_5m_by_geo_platform:bounce_rate_avg",
        "traffic_5m_by_geo_platform:event_count",
    ],
    entity_rows=[{{"geo": "US", "platform": "ios"}}],
).to_dict()
print("\\n" + json.dumps(features))
"""
HISTORICAL = """
import json
import pandas as pd
from feast import FeatureStore

store = FeatureStore(repo_path="{repo}")
rows = pd.DataFrame([{{"geo": "US", "platform": "ios", "event_timestamp": pd.Timestamp("{at}")}}])
frame = store.get_historical_features(entity_df=rows, features=[
    "traffic_5m_by_geo_platform:ctr_avg",
    "traffic_5m_by_geo_platform:bounce_rate_avg",
    "traffic_5m_by_geo_platform:event_count",
]).to_df()
row = {{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[0].items()}}
print("\\n" + json.dumps(row, default=str))
"""


def adnomaly(*args: str) -> list[str]:
    return [sys.executable, "-m", "adnomaly.cli", *args]


def served_window(port: int) -> dict[str, Any] | None:
    answer = httpx.get(f"http://127.0.0.1:{port}/v1/features/{VIEW}", params={"geo": "US", "platform": "ios"},
                       timeout=5)  # fmt: skip
    return answer.json() if answer.status_code == 200 else None


def served(port: int) -> dict[str, Any] | None:
    window = served_window(port)
    return None if window is None else window["metrics"]


def in_feast(script: str) -> dict[str, Any]:
    done = subprocess.run([str(ensure_feast()), "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])
    return answer


def snippet(repo: Path) -> dict[str, Any]:
    answer = in_feast(SNIPPET.format(repo=repo))
    return {name: answer[name][0] for name in METRICS}


def test_the_original_snippet_reads_a_running_pipeline_as_the_serving_api_does(state_dir: Path, tmp_path: Path
                                                                               ) -> None:  # fmt: skip
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(adnomaly("up", "-f", EXAMPLE, "--state-dir", str(state_dir)), cwd=REPO_ROOT,
                               stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        ports = state_dir / "pipelines" / "ad-fraud" / "ports.json"
        deadline = time.monotonic() + 420
        port = None
        while time.monotonic() < deadline:  # the first 5-minute hopping windows close a minute or two in
            assert process.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            if port is None and ports.exists():
                port = json.loads(ports.read_text())["serving"]
            try:
                if port is not None and served(port) is not None:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        assert port is not None and served(port) is not None, (tmp_path / "up.log").read_text()[-3000:]

        repo = tmp_path / "feature_repo"
        command = adnomaly("feast", "-f", EXAMPLE, "-o", str(repo), "--state-dir", str(state_dir), "--apply")
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        # A new window may land between two reads: equal means Feast answered what the API answered just
        # before and just after it.
        for _ in range(5):
            before = served(port)
            feast = snippet(repo)
            after = served(port)
            if before == after:
                break
        assert before == after and feast == before, (before, feast, after)
        assert isinstance(feast["event_count"], int) and feast["event_count"] > 0

        # Training rows: at a window's end, get_historical_features hands back that window (PostgreSQL).
        window = served_window(port)
        assert window is not None
        historical = in_feast(HISTORICAL.format(repo=repo, at=window["window_end"]))
        assert {name: historical[name] for name in METRICS} == window["metrics"], (historical, window)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
