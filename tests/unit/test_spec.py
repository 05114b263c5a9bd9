"""The Pipeline model: defaults make small manifests complete; bad input is refused, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from adnomaly.spec import Auto, SpecError, load_pipeline, parse_pipeline

REPO = Path(__file__).resolve().parents[2]


def doc(spec: dict | None = None, name: str = "demo") -> dict:
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec or {}}


def error_of(document: dict) -> str:
    with pytest.raises(SpecError) as info:
        parse_pipeline(document)
    return str(info.value)


def test_the_first_run_manifest_is_short_and_complete() -> None:
    pipeline = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    spec = pipeline.spec
    lines = (REPO / "manifests" / "pipeline.yaml").read_text().strip().splitlines()
    assert len([line for line in lines if not line.lstrip().startswith("#")]) <= 30  # the example people copy
    assert spec.events.resolved_schema == "clickstream"
    assert spec.events.effective_time_field == "timestamp"
    assert spec.events.effective_dimensions == ["geo", "platform"]
    assert spec.kafka.effective_managed is not None and spec.kafka.effective_managed.version == "4.1.0"
    assert spec.deletion_policy == "Retain"
    # What the first run shows: a labelled scenario, a feature, and the untuned default detector.
    assert spec.source.generator.scenarios == ["clickFraudBurst"]
    assert [d.method for d in spec.detection.detectors] == ["auto"]
    assert spec.detection.detectors[0].auto == Auto()


@pytest.mark.parametrize("path", sorted((REPO / "manifests" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    assert load_pipeline(path).spec.detection.detectors


def test_one_example_per_builtin_schema() -> None:
    schemas = {load_pipeline(p).spec.events.resolved_schema for p in (REPO / "manifests" / "examples").glob("*.yaml")}
    assert schemas == {"clickstream", "signal", "probe", "download"}


def test_empty_spec_gets_defaults() -> None:
    pipeline = parse_pipeline(doc())
    assert pipeline.spec.source.generator.events_per_second == 100
    assert pipeline.spec.components.processor.batch_size == 5000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"bogus": 1}, "spec.bogus: Extra inputs are not permitted"),
        ({"kafka": {"topics": {"raw": {"partitions": 0, "retention": "7d"}}}}, "spec.kafka.topics.raw.partitions"),
        ({"kafka": {"topics": {"dlq": {"partitions": 1, "retention": "7 days"}}}}, "spec.kafka.topics.dlq.retention"),
        ({"events": {"schema": "weblogs"}}, "spec.events.schema"),
        ({"events": {"schema": "clickstream", "jsonSchema": {}}}, "set either `schema` or `jsonSchema`"),
        ({"events": {"jsonSchema": {"type": "object"}}}, "needs `timeField`"),
        ({"events": {"dimensions": ["country"]}}, "dimension `country` is not a field of schema clickstream"),
        ({"source": {"generator": {"invalidRate": 1.5}}}, "spec.source.generator.invalidRate"),
        ({"source": {"generator": {"scenarios": ["aliens"]}}}, "spec.source.generator.scenarios.0"),
        ({"kafka": {"managed": {}, "external": {"bootstrapServers": "k:9092"}}}, "set either `managed` or `external`"),
        ({"kafka": {"external": {"bootstrapServers": "a b"}}}, "spec.kafka.external.bootstrapServers"),
        ({"deletionPolicy": "Keep"}, "spec.deletionPolicy"),
        ({"components": {"processor": {"replicas": -1}}}, "spec.components.processor.replicas"),
    ],
)
def test_bad_values_name_the_field(spec: dict, expected: str) -> None:
    assert expected in error_of(doc(spec))


def test_bad_metadata_name() -> None:
    assert "metadata.name" in error_of(doc(name="Not_A_Name"))


def test_feature_and_detector_references_are_checked() -> None:
    feature = {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "ctr", "agg": "avg", "field": "CTR"}]}
    ok = {"features": [feature], "detection": {"detectors": [
        {"name": "d", "feature": "f", "metric": "ctr", "threshold": {"warningAbove": 0.1}}]}}
    assert parse_pipeline(doc(ok)).spec.detection.detectors[0].metric == "ctr"
    assert "no feature named `g`" in error_of(doc({**ok, "detection": {"detectors": [
        {"name": "d", "feature": "g", "metric": "ctr", "threshold": {"warningAbove": 0.1}}]}}))
    assert "has no metric `x`" in error_of(doc({**ok, "detection": {"detectors": [
        {"name": "d", "feature": "f", "metric": "x", "threshold": {"warningAbove": 0.1}}]}}))
    no_method = {"name": "d", "feature": "f", "metric": "ctr"}
    assert "exactly one of" in error_of(doc({**ok, "detection": {"detectors": [no_method]}}))
    bad_dim = {**feature, "dimensions": ["country"]}
    assert "dimension `country` is not an event field" in error_of(doc({"features": [bad_dim]}))


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"type": "hopping", "size": "5m"}, "needs `slide`"),
        ({"type": "hopping", "size": "5m", "slide": "2m"}, "whole multiple"),
        ({"type": "tumbling", "size": "1m", "slide": "1m"}, "has no `slide`"),
        ({"type": "hopping", "size": "1m", "slide": "0s"}, "`slide` must be positive"),
    ],
)
def test_window_rules(window: dict, expected: str) -> None:
    feature = {"name": "f", "dimensions": ["geo"], "window": window, "metrics": [{"name": "n", "agg": "count"}]}
    assert expected in error_of(doc({"features": [feature]}))


def test_metric_operands() -> None:
    def feature(metric: dict) -> dict:
        return doc({"features": [{"name": "f", "dimensions": ["geo"], "metrics": [metric]}]})

    assert "`count` takes no field" in error_of(feature({"name": "n", "agg": "count", "field": "CTR"}))
    assert "`avg` takes `field`" in error_of(feature({"name": "n", "agg": "avg"}))
    assert "`ratio` takes" in error_of(feature({"name": "n", "agg": "ratio", "numerator": "conversion"}))


def test_file_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("kind: Pipeline\n  metadata: [")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pipeline(bad_yaml)
    none = tmp_path / "none.yaml"
    none.write_text("kind: ConfigMap\n")
    with pytest.raises(SpecError, match="exactly one `kind: Pipeline`"):
        load_pipeline(none)


def test_round_trip_by_alias() -> None:
    pipeline = load_pipeline(REPO / "manifests" / "examples" / "clickstream-ad-fraud.yaml")
    again = parse_pipeline(pipeline.model_dump(by_alias=True, exclude_none=True))
    assert again == pipeline


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"source": {"generator": {"scenarios": ["regionalOutage"]}}}, "needs events of schema download"),
        ({"events": {"schema": "probe"}, "source": {"generator": {"scenarios": ["clickFraudBurst"]}}},
         "needs events of schema clickstream, not probe"),
        ({"events": {"jsonSchema": {"type": "object"}, "timeField": "t"}}, "built-in schemas only"),
        ({"events": {"maxEventBytes": 512}}, "at least 1024 with the generator on"),
    ],
)
def test_generator_must_fit_the_events(spec: dict, expected: str) -> None:
    assert expected in error_of(doc(spec))


def test_malformed_storm_fits_every_schema_and_custom_schemas_work_without_generator() -> None:
    for schema in ("clickstream", "signal", "probe", "download"):
        parse_pipeline(doc({"events": {"schema": schema}, "source": {"generator": {"scenarios": ["malformedStorm"]}}}))
    parse_pipeline(doc({"events": {"jsonSchema": {"type": "object"}, "timeField": "t", "maxEventBytes": 512},
                        "source": {"generator": {"enabled": False}}}))


def test_scenario_table_matches_the_generator() -> None:
    from adnomaly.generator.sources import SOURCES
    from adnomaly.spec import SCENARIO_SCHEMAS

    for scenario, schemas in SCENARIO_SCHEMAS.items():
        if schemas is None:
            continue
        for schema, source in SOURCES.items():
            assert (scenario in source.scenarios) == (schema in schemas), (scenario, schema)


def test_a_scenario_must_fit_its_slot() -> None:
    with pytest.raises(SpecError, match="`duration` must fit its slot"):
        parse_pipeline({"metadata": {"name": "x"}, "spec": {"source": {"generator": {
            "scenarioSchedule": {"every": "1m", "duration": "2m"}}}}})
    with pytest.raises(SpecError, match=r"scenarioSchedule\.every"):
        parse_pipeline({"metadata": {"name": "x"}, "spec": {"source": {"generator": {
            "scenarioSchedule": {"every": "0s"}}}}})


def test_resources_take_kubernetes_quantities_including_millicores() -> None:
    spec = parse_pipeline(doc({"components": {"processor": {
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1.5"}}}}})).spec
    resources = spec.components.processor.resources
    assert resources is not None and resources.requests == {"cpu": "250m", "memory": "512Mi"}
    assert "resources" in error_of(doc({"components": {"processor": {"resources": {"limits": {"cpu": "1 core"}}}}}))
