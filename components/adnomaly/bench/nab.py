"""`adnomaly bench nab --nab-dir DIR`: the pipeline's detectors on the Numenta Anomaly Benchmark, scored as NAB does.

DIR is NAB-shaped: data/<category>/<file>.csv with `timestamp,value`, and labels/combined_windows.json. Each
series is one key of one detector, one row per window (event count 1), judged by the very `Detector` class the
detector component runs; NAB's rules hold: one parameter set for every file, a detector sees only the rows up
to the current one, the first 15 % of each file is probationary (NAB ignores alarms there).

Two figures per profile, both with NAB's weights, probation and threshold optimisation (one threshold per
profile for the whole corpus):
- the NAB figure (`standard`, `reward_low_fp`, `reward_low_fn`): each row's anomaly score is its *opening*
  score (`adnomaly.detection.engine.opening_scores`: its score where it rises above every score of the
  lifecycle's hold-down before it, else 0), thresholded as NAB does (`optimise_threshold`). These are the
  results files NAB's own `run.py` scores. "score >= t" cannot express the lifecycle exactly: it also counts
  rows that climb above an anomaly still open (escalations);
- the pipeline's figure (`lifecycle`): the engine's own rule at every threshold, exactly
  (`optimise_lifecycle`): what the detector component would have raised.
A binary detector is not exempt: a method that alarms too often scores 0, as NAB's "never alarm" does.

With `--results-dir OUT --detector-name NAME` the run also writes NAB results files,
OUT/NAME/<category>/NAME_<file>.csv (`timestamp,value,anomaly_score,label`), which NAB's own
`run.py -d NAME --optimize --score --normalize` scores.

Cost is reported too: rows per second per detector (CPU time of one core, judging and the lifecycle's
opening scores) beside the same loop's ceiling measured in the same run (a stateless threshold rule through
the very same path: what the loop costs without a model), their ratio, and the JSON size of one key's state
after a whole file (mean and max over the files).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adnomaly.detection.detectors import build_detector
from adnomaly.detection.engine import prior_maxima
from adnomaly.detection.nab import (
    LOW_FN,
    LOW_FP,
    STANDARD,
    LifecycleFile,
    Optimum,
    ScoredFile,
    optimise_lifecycle,
    optimise_threshold,
    window_rows,
)
from adnomaly.spec import DetectorSpec

# One parameter set per method for every file (NAB's rule). `auto` runs exactly as a pipeline declares it.
NAB_DETECTORS: dict[str, dict[str, Any]] = {
    "auto": {"auto": {}},
    "robustZScore": {"robustZScore": {"threshold": 5, "minCount": 1, "history": 288}},
    "ewma": {"ewma": {"alpha": 0.05, "threshold": 5, "minCount": 1, "warmup": 50}},
}
PROFILES = (("standard", STANDARD), ("reward_low_fp", LOW_FP), ("reward_low_fn", LOW_FN))
# NAB v1.1 standard profile, whole corpus (results/final_results.json upstream).
REFERENCE_STANDARD = {"artime": 74.9, "numenta_htm": 70.1, "cad_ose": 69.9, "knncad": 58.0,
                      "windowed_gaussian": 39.6, "random": 16.8, "null": 0.0}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("nab", help="score the detectors on a NAB-shaped directory, as NAB scores them")
    parser.add_argument("--nab-dir", required=True, type=Path, help="data/ and labels/combined_windows.json")
    parser.add_argument("--detectors", default=",".join(NAB_DETECTORS),
                        help=f"comma-separated, of {', '.join(NAB_DETECTORS)} (default: all)")  # fmt: skip
    parser.add_argument("--detector-spec", action="append", default=[], metavar="NAME=JSON",
                        help='another detector, e.g. \'strict={"auto": {"threshold": 0.95}}\' (repeatable)')
    parser.add_argument("--results-dir", type=Path, help="also write NAB results files under this directory")
    parser.add_argument("--detector-name", help="the results' detector name (default: each detector's own)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Series:
    relative: str  # <category>/<file>.csv
    stamps: list[str]  # as written in the file (NAB's results keep them)
    times: list[float]
    values: list[float]
    windows: list[tuple[int, int]]


def _time(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def read_corpus(root: Path) -> list[Series]:
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise SystemExit(f"{root} is not a NAB checkout: {labels_path} is missing")
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text())
    corpus = []
    for relative, windows in sorted(labels.items()):
        path = root / "data" / relative
        if not path.is_file():
            raise SystemExit(f"labelled file {relative} is missing under {root / 'data'}")
        stamps, times, values = [], [], []
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                stamps.append(row["timestamp"])
                times.append(_time(row["timestamp"]))
                values.append(float(row["value"]))
        rows = window_rows(times, [(_time(a), _time(b)) for a, b in windows])
        corpus.append(Series(relative, stamps, times, values, rows))
    return corpus


def detector_spec(name: str, method: dict[str, Any]) -> DetectorSpec:
    return DetectorSpec.model_validate({"name": "nab", "feature": "nab", "metric": "value", **method})


def score_series(spec: DetectorSpec, series: Series) -> tuple[list[float | None], int]:
    """The row-by-row scores of one series (None: not judged), and the JSON size of the key's state after."""
    detector = build_detector(spec, threshold_min_count=1)
    key = ("nab",)
    scores: list[float | None] = []
    judge = detector.judge
    for at, value in zip(series.times, series.values, strict=True):
        verdict = judge(key, value, 1, at)
        scores.append(None if verdict is None else verdict.score)
    return scores, len(json.dumps(detector.state()))


CEILING = {"threshold": {"warningAbove": 1e300}}  # never fires: the loop's own cost


def _timed(spec: DetectorSpec, corpus: Sequence[Series]) -> tuple[float, list[LifecycleFile], list[int]]:
    """CPU seconds to judge the corpus and derive each row's opening score; per file its rows' scores and
    prior maxima; per file the state size."""
    started = time.process_time()
    files, sizes = [], []
    for series in corpus:
        scores, size = score_series(spec, series)
        plain = [0.0 if s is None else s for s in scores]
        files.append(LifecycleFile(series.relative, plain, prior_maxima(plain, spec.hold_down), series.windows))
        sizes.append(size)
    return time.process_time() - started, files, sizes


def _detail(best: Optimum) -> dict[str, Any]:
    return {"threshold": best.threshold if best.alarms else None, "alarms": best.alarms,
            "false_alarms": best.false_alarms, "windows_hit": best.windows_hit, "windows": best.windows}  # fmt: skip


def evaluate(spec: DetectorSpec, corpus: Sequence[Series]) -> tuple[dict[str, Any], list[list[float]]]:
    """The detector's figures on the corpus, and each file's opening scores (its NAB results)."""
    cpu, files, sizes = _timed(spec, corpus)
    ceiling_cpu, _, _ = _timed(detector_spec("ceiling", CEILING), corpus)
    rows = sum(len(s.values) for s in corpus)
    scored = [[s if s > m else 0.0 for s, m in zip(f.scores, f.prior_max, strict=True)] for f in files]
    opening = [ScoredFile(f.name, scores, f.windows) for f, scores in zip(files, scored, strict=True)]
    result: dict[str, Any] = {}
    lifecycle: dict[str, Any] = {}
    for profile, weights in PROFILES:
        best = optimise_threshold(opening, weights)
        result[profile] = round(best.normalised, 2)
        result[f"{profile}_detail"] = _detail(best)
        exact = optimise_lifecycle(files, weights)
        lifecycle[profile] = round(exact.normalised, 2)
        lifecycle[f"{profile}_detail"] = _detail(exact)
    result["lifecycle"] = lifecycle
    result["rows_per_second"] = round(rows / cpu) if cpu > 0 else None
    result["ceiling_rows_per_second"] = round(rows / ceiling_cpu) if ceiling_cpu > 0 else None
    result["ratio"] = round(ceiling_cpu / cpu, 3) if cpu > 0 else None
    result["state_bytes_per_key"] = {
        "mean": round(sum(sizes) / len(sizes)) if sizes else 0, "max": max(sizes, default=0),
    }  # fmt: skip
    return result, scored


def write_results(out: Path, name: str, corpus: Sequence[Series], scored: Sequence[Sequence[float]]) -> None:
    """NAB results files: OUT/NAME/<category>/NAME_<file>.csv with timestamp,value,anomaly_score,label."""
    for series, scores in zip(corpus, scored, strict=True):
        category, filename = series.relative.split("/", 1)
        path = out / name / category / f"{name}_{filename}"
        path.parent.mkdir(parents=True, exist_ok=True)
        inside = [0] * len(series.values)
        for left, right in series.windows:
            for i in range(left, right + 1):
                inside[i] = 1
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            for stamp, value, score, label in zip(series.stamps, series.values, scores, inside, strict=True):
                writer.writerow([stamp, repr(value), repr(score), label])


def _detectors(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for name in filter(None, (n.strip() for n in args.detectors.split(","))):
        if name not in NAB_DETECTORS:
            raise SystemExit(f"unknown detector {name!r}: choose from {', '.join(NAB_DETECTORS)}")
        chosen[name] = NAB_DETECTORS[name]
    for item in args.detector_spec:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--detector-spec takes NAME=JSON, not {item!r}")
        try:
            chosen[name] = json.loads(text)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--detector-spec {name}: not JSON ({e})") from e
    if args.detector_name and len(chosen) != 1:
        raise SystemExit("--detector-name names one detector: choose it with --detectors or --detector-spec")
    return chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = _detectors(args)
    corpus = read_corpus(args.nab_dir)
    results: dict[str, Any] = {}
    for name, method in chosen.items():
        try:
            spec = detector_spec(name, method)
        except ValueError as e:
            raise SystemExit(f"detector {name}: {e}") from e
        results[name], scored = evaluate(spec, corpus)
        if args.results_dir is not None:
            write_results(args.results_dir, args.detector_name or name, corpus, scored)
    return {
        "files": len(corpus), "windows": sum(len(s.windows) for s in corpus),
        "rows": sum(len(s.values) for s in corpus), "detectors": results, "reference_standard": REFERENCE_STANDARD,
    }  # fmt: skip
