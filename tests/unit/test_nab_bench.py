"""`adnomaly bench nab` on a small NAB-shaped directory (two series with level shifts and spikes)."""

from __future__ import annotations

import argparse
import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from adnomaly.bench import nab

T0 = datetime(2015, 1, 1)


def _write_series(root: Path, name: str, anomaly_at: int, n: int = 600, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    lines = ["timestamp,value"]
    for i in range(n):
        value = 50 + 5 * math.sin(i / 30) + rng.gauss(0, 1)
        if anomaly_at <= i < anomaly_at + 5:
            value += 60
        lines.append(f"{(T0 + timedelta(minutes=5 * i)).strftime('%Y-%m-%d %H:%M:%S')},{value:.3f}")
    path = root / "data" / "synthetic" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    start, end = T0 + timedelta(minutes=5 * (anomaly_at - 20)), T0 + timedelta(minutes=5 * (anomaly_at + 20))
    return [start.strftime("%Y-%m-%d %H:%M:%S.%f"), end.strftime("%Y-%m-%d %H:%M:%S.%f")]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    nab.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_nab_bench_scores_detectors_on_a_checkout(tmp_path: Path) -> None:
    labels = {
        "synthetic/a.csv": [_write_series(tmp_path, "a.csv", 400, seed=1)],
        "synthetic/b.csv": [_write_series(tmp_path, "b.csv", 450, seed=2)],
    }
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    args = _parse(["nab", "--nab-dir", str(tmp_path), "--json"])
    result = args.func(args)
    assert result["files"] == 2
    for name in nab.NAB_DETECTORS:
        standard = result["detectors"][name]["standard"]
        assert 50.0 < standard <= 100.0, (name, standard)  # both spikes are found early, few false alarms
    json.dumps(result)


def test_nab_bench_rejects_a_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    args = _parse(["nab", "--nab-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a NAB checkout"):
        args.func(args)
