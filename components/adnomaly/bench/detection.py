"""`adnomaly bench detection`: precision, recall, F1, false alarms/hour and delay of the detectors against
the generator's labelled scenarios, offline and fast.

Per scenario: the generator's pure stream (a few simulated hours at a modest rate, 1 % malformed events
as background noise, scenarios from minute 30 on, one every 10 minutes, each 3 minutes long) → the
processor's codec (valid vs dead-lettered) → the windowing reference (`adnomaly.detection.windowing`, the
features job's semantics) and the raw-stream invalid share (`adnomaly.detection.dlq`) → the detection
engine with the schema's detector set below → opened anomalies scored against the labels
(`adnomaly.detection.scoring`). Every scenario runs with all detectors of its schema, so alarms a
detector raises for another scenario's symptoms count as false alarms.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adnomaly.detection.dlq import DLQ_FEATURE, InvalidShareWindows
from adnomaly.detection.engine import DetectionEngine
from adnomaly.detection.scoring import Alarm, Label, Score, score
from adnomaly.detection.windowing import FeatureWindows
from adnomaly.events.codec import InvalidEvent, codec_for
from adnomaly.generator.scenarios import SCENARIO_NAMES, ScheduleSettings
from adnomaly.generator.stream import EventStream, GeneratorSettings
from adnomaly.spec import DetectionSpec, FeatureSpec

WINDOW = "1m"
WINDOW_S = 60
SCHEDULE = ScheduleSettings(first_after_s=1800.0, every_s=600.0, duration_s=180.0)
BACKGROUND_INVALID_RATE = 0.01
SCENARIO_SCHEMA = {
    "clickFraudBurst": "clickstream", "brokenCampaign": "clickstream", "regionalOutage": "download",
    "probeLatencySpike": "probe", "malformedStorm": "clickstream",
}  # fmt: skip
DLQ_DETECTOR = {"name": "dlq-share", "feature": DLQ_FEATURE, "metric": "invalid_share",
                "threshold": {"warningAbove": 0.1, "criticalAbove": 0.3}}  # fmt: skip
_TUMBLING = {"type": "tumbling", "size": WINDOW}
_TUMBLING_30S = {"type": "tumbling", "size": "30s"}  # a campaign's collapse is seen within one minute

# The detection part of each schema's example pipeline (features + detectors, in spec form).
SETUPS: dict[str, dict[str, Any]] = {
    "clickstream": {
        "features": [
            {"name": "traffic_by_geo_platform", "dimensions": ["geo", "platform"], "window": _TUMBLING,
             "metrics": [{"name": "ctr_avg", "agg": "avg", "field": "CTR"},
                         {"name": "bounce_rate_avg", "agg": "avg", "field": "bounce_rate"}]},
            {"name": "traffic_by_campaign", "dimensions": ["campaign_id"], "window": _TUMBLING_30S,
             "metrics": [{"name": "ctr_avg", "agg": "avg", "field": "CTR"}]},
        ],
        "detectors": [
            {"name": "ctr-spike", "feature": "traffic_by_geo_platform", "metric": "ctr_avg",
             "threshold": {"warningAbove": 0.08, "criticalAbove": 0.15}},
            {"name": "campaign-ctr-collapse", "feature": "traffic_by_campaign", "metric": "ctr_avg",
             "threshold": {"warningBelow": 0.004, "criticalBelow": 0.002}},
        ],
    },
    "download": {
        "features": [
            {"name": "downloads_by_region", "dimensions": ["region"], "window": _TUMBLING,
             "metrics": [{"name": "success_rate", "agg": "avg", "field": "success"},
                         {"name": "speed_p50", "agg": "p50", "field": "speed_mbps"}]},
        ],
        "detectors": [
            {"name": "download-failures", "feature": "downloads_by_region", "metric": "success_rate",
             "threshold": {"warningBelow": 0.9, "criticalBelow": 0.8}},
        ],
    },
    "probe": {
        "features": [
            {"name": "probes_by_region", "dimensions": ["region"], "window": _TUMBLING,
             "metrics": [{"name": "latency_p50", "agg": "p50", "field": "latency_ms"},
                         {"name": "packet_loss_avg", "agg": "avg", "field": "packet_loss"}]},
        ],
        "detectors": [
            {"name": "latency-spike", "feature": "probes_by_region", "metric": "latency_p50",
             "ewma": {"alpha": 0.2, "threshold": 6, "minCount": 20, "warmup": 10}},
        ],
    },
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("detection", help="detector quality against the labelled scenarios")
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIO_NAMES])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours per scenario")
    parser.add_argument("--rate", type=float, default=50.0, help="simulated events per second")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = SCENARIO_NAMES if args.scenario == "all" else (args.scenario,)
    results = {name: run_scenario(name, args.seed, args.hours, args.rate).as_dict() for name in names}
    return {"seed": args.seed, "hours": args.hours, "rate": args.rate, "scenarios": results}


def run_scenario(name: str, seed: int, hours: float, rate: float) -> Score:
    schema = SCENARIO_SCHEMA[name]
    setup = SETUPS[schema]
    features = [FeatureSpec.model_validate(f) for f in setup["features"]]
    detection = DetectionSpec.model_validate({"detectors": [*setup["detectors"], DLQ_DETECTOR]})
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=(seed * 7) % 24)  # different hours of the day
    stream = EventStream(GeneratorSettings(
        schema=schema, seed=seed, rate=rate, start=start, invalid_rate=BACKGROUND_INVALID_RATE,
        scenarios=(name,), schedule=SCHEDULE,
    ))  # fmt: skip
    end_us = stream.start_us + int(hours * 3600 * 1_000_000)
    codec = codec_for(schema=schema)
    decode = msgspec.json.decode
    windows = [FeatureWindows(f) for f in features]
    dlq = InvalidShareWindows(WINDOW_S * 1_000_000)
    engine = DetectionEngine(pipeline=f"bench-{schema}", detection=detection)
    alarms: list[Alarm] = []

    def judge(records: list[Any]) -> None:
        for record in records:
            alarms.extend(Alarm(a.dimensions, a.detected_at) for a in engine.process(record) if a.status == "open")

    for event in stream:
        if event.time_us >= end_us:
            break
        try:
            payload = decode(codec.decode(event.value).payload)
        except InvalidEvent:
            judge(dlq.add(event.time_us, False))
            continue
        judge(dlq.add(event.time_us, True))
        for w in windows:
            judge(w.add(event.time_us, payload))
    span_end = start + timedelta(hours=hours)
    labels = []
    k = 0
    while True:
        lo, _, label = stream.schedule.window(k)
        if lo >= end_us:
            break
        labels.append(Label(dict(label.key), label.start, min(label.end, span_end)))
        k += 1
    return score(alarms, labels, (start, span_end), timedelta(seconds=WINDOW_S))
