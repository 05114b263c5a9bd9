"""`adnomaly bench online --rate`: the open-loop mode against a real Redis and the real API process."""

from __future__ import annotations

import json

import pytest
from adnomaly.cli import main

pytestmark = pytest.mark.integration


def test_open_loop_keeps_the_asked_rate_and_times_from_when_each_lookup_was_due(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "online", "--requests", "600", "--entities", "30", "--rate", "200", "--connections", "4",
            "--rounds", "2"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rate_requested"] == 200 and out["connections"] == 4 and out["requests"] == 600
    assert out["rounds"] == 2  # the API and its HTTP floor took turns twice, 300 timed lookups each time
    # 200/s is far below what the API serves: the achieved rate is the asked one (the schedule, not the API)
    assert 170 <= out["requests_per_second"] <= 210, out
    assert out["load_generator"] == "vegeta"
    assert 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"]
    assert out["ceiling_p99_ms"] > 0 and out["ratio"] > 0
    # 30 entities looked up 1,100 times: after the first lookup of each, the kept answers serve them
    assert 0.9 <= out["cache_hit_ratio"] < 1.0, out
    # ... and the 500 warm-ups of the first round asked each of the 30 before any timed lookup did
    assert out["first_lookups"] == 0 and out["repeat_p99_ms"] == out["p99_ms"]
    assert 0 <= out["cpu_steal_share"] <= 1
    # the HTTP floor: the same load against the API's server stack answering constant bytes
    assert 0 < out["http_floor_p50_ms"] <= out["http_floor_p99_ms"]
    assert out["http_floor_ratio"] == round(out["http_floor_p99_ms"] / out["p99_ms"], 3)
    assert 0 <= out["http_floor_cpu_steal_share"] <= 1
    assert out["http_floor_cpu_us_per_request"] > 0 and out["api_cpu_us_per_request"] > 0


def test_without_the_cache_every_lookup_asks_redis(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "online", "--requests", "300", "--entities", "30", "--cache-keys", "0", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["cache_hit_ratio"] == 0.0 and out["p99_ms"] > 0
