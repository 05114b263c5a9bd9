"""`adnomaly bench detector` offline: its records decode, its judging path runs, and both rates come out."""

from __future__ import annotations

import argparse

import adnomaly.detection
from adnomaly.bench import detector
from adnomaly.features.record import DECODER


def test_records_cycle_the_keys_one_window_per_minute() -> None:
    records = [DECODER.decode(raw) for raw in detector.feature_records(9, keys=3)]
    assert len({tuple(sorted(r.dimensions.items())) for r in records}) == 3
    ends = [r.window_end for r in records]
    assert ends == sorted(ends) and len(set(ends)) == 3


def test_run_reports_the_rate_its_ceiling_and_their_ratio() -> None:
    out = detector.run(argparse.Namespace(records=600, keys=6, batch_size=100, json=True))
    assert out["records"] == 600
    assert 0 < out["records_per_second"] <= out["ceiling_records_per_second"] * 1.5
    assert out["ratio"] == round(out["records_per_second"] / out["ceiling_records_per_second"], 3)
    assert out["nproc"] >= 1
    # which code judged: mypyc's extensions, or the sources (make compiled not run, or ADNOMALY_PURE_PYTHON=1)
    assert out["detector_code"] in ("compiled", "sources", "stale")
    assert out["detector_code"] == adnomaly.detection.RUNNING
