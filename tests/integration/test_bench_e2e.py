"""`adnomaly bench e2e`: produce → row committed latency, read from PostgreSQL's commit timestamps."""

from __future__ import annotations

import json

import pytest
from adnomaly.cli import main

pytestmark = pytest.mark.integration


def test_only_the_events_after_the_warmup_are_measured_and_each_once(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "e2e", "--rate", "500", "--warmup", "2", "--seconds", "3", "--commits", "50", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["events"] == 2500 and out["warmup_seconds"] == 2 and out["seconds"] == 3
    # The measured rows are the events produced after the warm-up: 3 s of 500/s (the clock's edge may move
    # a tick's worth of events, 5 at 500/s, across it), never the primer or the warm-up's 1,000.
    assert 1480 <= out["measured"] <= 1520, out
    assert 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"]
    # The ceiling is the processor's batch timeout plus one commit: above the timeout, never below.
    assert out["ceiling_p99_ms"] >= out["batch_timeout_ms"] > 0 and out["ratio"] > 0
