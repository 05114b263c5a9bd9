"""`adnomaly bench all --tiny` end to end: real services, every tiny benchmark, the README table rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adnomaly.bench.all import MARKERS, TINY
from adnomaly.cli import main

pytestmark = pytest.mark.integration


def test_bench_all_tiny_rebuilds_the_table_with_ceilings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{MARKERS[0]}\nold\n{MARKERS[1]}\n\n## Kept\n")
    assert main(["bench", "all", "--tiny", "--readme", str(readme), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["failed"] == []
    assert set(out["results"]) == set(TINY)
    for name, result in out["results"].items():
        assert result["ratio"] is not None and result["ratio"] > 0, name
        assert result["nproc"] >= 1 and "load_average_1m" in result, name
    processor = out["results"]["processor"]
    assert processor["events_per_second"] > 0
    # the bound the processor's, PostgreSQL's and the broker's CPU per event set on this machine
    assert processor["broker_cpu_us_per_event"] >= 0 and processor["processor_cpu_us_per_event"] > 0
    assert processor["cpu_bound_events_per_second"] > 0 and processor["cpu_bound_ratio"] > 0
    assert 0 < processor["reachable_ratio"] <= 1
    text = readme.read_text()
    assert "old" not in text and text.endswith("## Kept\n")
    assert "| CPU steal |" in text  # the hypervisor's share while each ran, beside the load
    for name in TINY:
        assert f"`adnomaly bench {name} " in text
