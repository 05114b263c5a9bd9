"""`adnomaly bench nab --nab-dir DIR`: our detectors on the Numenta Anomaly Benchmark, NAB standard profile.

DIR is a NAB checkout (data/<category>/<file>.csv with `timestamp,value`; labels/combined_windows.json).
Each series runs through the detection engine as one key with one value per row (min count 1); a
detection is a row where an anomaly opens (the lifecycle's deduplication applies: one alarm per episode).
The detectors are binary, so NAB's threshold optimisation has nothing to choose. Scores via
`adnomaly.detection.nab` (reference, standard profile: Numenta HTM ≈ 70, Twitter ADVec ≈ 47, windowed
Gaussian ≈ 40, Etsy Skyline ≈ 36).
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adnomaly.detection.engine import DetectionEngine
from adnomaly.detection.nab import LOW_FN, LOW_FP, STANDARD, FileResult, normalised_score, window_rows
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import DetectionSpec

NAB_DETECTORS: dict[str, dict[str, Any]] = {
    "robustZScore": {"robustZScore": {"threshold": 5, "minCount": 1, "history": 288}},
    "ewma": {"ewma": {"alpha": 0.05, "threshold": 5, "minCount": 1, "warmup": 50}},
}
REFERENCE_STANDARD = {"numenta_htm": 70.1, "twitter_advec": 47.1, "windowed_gaussian": 39.6, "etsy_skyline": 35.7}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("nab", help="score the detectors on a NAB checkout (standard profile)")
    parser.add_argument("--nab-dir", required=True, type=Path, help="a checkout of numenta/NAB")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def _time(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def read_series(path: Path) -> tuple[list[float], list[float]]:
    times, values = [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            times.append(_time(row["timestamp"]))
            values.append(float(row["value"]))
    return times, values


def detect(values: list[float], times: list[float], detector: dict[str, Any]) -> list[int]:
    spec = DetectionSpec.model_validate(
        {"detectors": [{"name": "nab", "feature": "nab", "metric": "value", **detector}]}
    )
    engine = DetectionEngine(pipeline="nab", detection=spec, threshold_min_count=1)
    fired = []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        at = datetime.fromtimestamp(t, UTC)
        record = FeatureRecord(feature="nab", dimensions={}, window_start=at, window_end=at,
                               metrics={"value": v}, event_count=1)  # fmt: skip
        if any(a.status == "open" for a in engine.process(record)):
            fired.append(i)
    return fired


def run(args: argparse.Namespace) -> dict[str, Any]:
    root: Path = args.nab_dir
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise SystemExit(f"{root} is not a NAB checkout: {labels_path} is missing")
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text())
    results: dict[str, list[FileResult]] = {name: [] for name in NAB_DETECTORS}
    for relative, windows in sorted(labels.items()):
        path = root / "data" / relative
        if not path.is_file():
            raise SystemExit(f"labelled file {relative} is missing under {root / 'data'}")
        times, values = read_series(path)
        rows = window_rows(times, [(_time(a), _time(b)) for a, b in windows])
        for name, detector in NAB_DETECTORS.items():
            results[name].append(FileResult(relative, len(values), detect(values, times, detector), rows))
    profiles = (("standard", STANDARD), ("reward_low_fp", LOW_FP), ("reward_low_fn", LOW_FN))
    return {
        "files": len(labels),
        "detectors": {
            name: {profile: round(normalised_score(files, weights), 2) for profile, weights in profiles}
            for name, files in results.items()
        },
        "reference_standard": REFERENCE_STANDARD,
    }
