"""The detection section of the Pipeline model: direction, per-detector minCount/resolveAfter, the reserved
feature `_dlq`; bad input is refused with an error naming the field."""

from __future__ import annotations

import pytest
from adnomaly.spec import DLQ_FEATURE, SpecError, parse_pipeline

FEATURE = {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "ctr", "agg": "avg", "field": "CTR"}]}


def doc(detectors: list[dict], features: list[dict] | None = None, **detection: object) -> dict:
    spec = {"features": [FEATURE] if features is None else features, "detection": {"detectors": detectors, **detection}}
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "demo"}, "spec": spec}


def error_of(document: dict) -> str:
    with pytest.raises(SpecError) as info:
        parse_pipeline(document)
    return str(info.value)


def test_defaults() -> None:
    spec = parse_pipeline(doc([
        {"name": "z", "feature": "f", "metric": "ctr", "robustZScore": {}},
        {"name": "e", "feature": "f", "metric": "ctr", "ewma": {}},
        {"name": "t", "feature": "f", "metric": "ctr", "threshold": {"warningAbove": 0.1}},
    ])).spec.detection  # fmt: skip
    z, e, t = spec.detectors
    assert z.robust_z_score is not None and z.robust_z_score.direction == "both"
    assert e.ewma is not None and e.ewma.direction == "both"
    assert t.threshold is not None and t.threshold.min_count is None  # the component's default applies
    assert z.resolve_after is None
    assert (spec.dlq.window, spec.dlq.allowed_lateness) == ("1m", "10s")


def test_direction_min_count_and_resolve_after_are_read() -> None:
    spec = parse_pipeline(doc([
        {"name": "z", "feature": "f", "metric": "ctr", "robustZScore": {"direction": "below"}, "resolveAfter": 5},
        {"name": "t", "feature": "f", "metric": "ctr", "threshold": {"warningAbove": 0.1, "minCount": 3}},
    ])).spec.detection  # fmt: skip
    z, t = spec.detectors
    assert z.robust_z_score is not None and z.robust_z_score.direction == "below" and z.resolve_after == 5
    assert t.threshold is not None and t.threshold.min_count == 3


def test_dlq_feature_needs_no_declared_feature() -> None:
    spec = parse_pipeline(doc(
        [{"name": "malformed-storm", "feature": DLQ_FEATURE, "metric": "invalid_share",
          "threshold": {"warningAbove": 0.1, "criticalAbove": 0.3}}],
        features=[], dlq={"window": "30s", "allowedLateness": "5s"},
    )).spec.detection  # fmt: skip
    assert spec.detectors[0].feature == "_dlq" and spec.dlq.window == "30s"


@pytest.mark.parametrize(
    ("detector", "expected"),
    [
        ({"robustZScore": {"direction": "up"}}, "spec.detection.detectors.0.robustZScore.direction"),
        ({"ewma": {"direction": "sideways"}}, "spec.detection.detectors.0.ewma.direction"),
        ({"threshold": {"warningAbove": 1, "minCount": 0}}, "spec.detection.detectors.0.threshold.minCount"),
        ({"threshold": {"warningAbove": 1}, "resolveAfter": 0}, "spec.detection.detectors.0.resolveAfter"),
        (
            {"threshold": {"warningAbove": 1}, "feature": "_dlq", "metric": "ctr"},
            "the reserved feature `_dlq` has the metrics invalid_share, invalid_count, event_count, not `ctr`",
        ),
    ],
)
def test_bad_detection_values_name_the_field(detector: dict, expected: str) -> None:
    assert expected in error_of(doc([{"name": "d", "feature": "f", "metric": "ctr", **detector}]))


def test_bad_dlq_window_and_reserved_feature_name() -> None:
    assert "spec.detection.dlq.window" in error_of(doc([], dlq={"window": "0s"}))
    assert "spec.detection.dlq.window" in error_of(doc([], dlq={"window": "1 minute"}))
    assert "spec.detection.dlq.allowedLateness" in error_of(doc([], dlq={"allowedLateness": "soon"}))
    reserved = {**FEATURE, "name": "_dlq"}
    assert "the feature name `_dlq` is reserved" in error_of(doc([], features=[reserved]))
