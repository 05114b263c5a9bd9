"""The Pipeline the fault suite runs: every component, the lake on MinIO, features in Redis and PostgreSQL.

Features: one tumbling window per (geo, platform). `allowedLateness` is longer than any outage the schedule
makes (events held back by a stopped broker or ingest API must still count in their windows), so the
features the pipeline computed can be compared with features recomputed from the lake, window by window.
"""

from __future__ import annotations

from adnomaly.spec import Pipeline, parse_pipeline

NAME = "chaos"
WINDOW = "10s"
ALLOWED_LATENESS = "60s"


def reliability_pipeline(seed: int, name: str = NAME, raw_partitions: int = 3) -> Pipeline:
    """The suite's pipeline. The generator component is off: the load driver produces (and records) instead."""
    return parse_pipeline({
        "metadata": {"name": name},
        "spec": {
            "events": {"schema": "clickstream"},
            "source": {"generator": {"enabled": False, "seed": seed}, "ingest": {"replicas": 1}},
            "kafka": {"topics": {"raw": {"partitions": raw_partitions, "retention": "1d"},
                                 "features": {"partitions": 2, "retention": "1d"}}},
            "lake": {"partitioning": "hourly"},
            "features": [{
                "name": "traffic",
                "dimensions": ["geo", "platform"],
                "window": {"type": "tumbling", "size": WINDOW},
                "allowedLateness": ALLOWED_LATENESS,
                "metrics": [
                    {"name": "events", "agg": "count"},
                    {"name": "ctr_avg", "agg": "avg", "field": "CTR"},
                    {"name": "cpc_sum", "agg": "sum", "field": "CPC"},
                ],
            }],
            "detection": {"detectors": [
                {"name": "ctr-high", "feature": "traffic", "metric": "ctr_avg",
                 "threshold": {"warningAbove": 0.5, "criticalAbove": 0.8}},
            ]},
        },
    })  # fmt: skip
