"""Config sections of the lake sink, feature sink and online API, and how a Pipeline renders them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from adnomaly.plan import Endpoints, plan
from adnomaly.sinks.config import (
    FEATURE_SINK_SECTION,
    LAKE_SECTION,
    FeatureSinkConfig,
    LakeConfig,
    load_section,
    render_config,
)
from adnomaly.sinks.sections import feature_sink_section, lake_section, serving_section
from adnomaly.spec import parse_pipeline
from pydantic import ValidationError

FEATURE = {
    "name": "traffic_5m", "dimensions": ["geo", "platform"], "window": {"type": "tumbling", "size": "5m"},
    "ttl": "2h", "metrics": [{"name": "ctr_avg", "agg": "avg", "field": "CTR"}, {"name": "n", "agg": "count"}],
}  # fmt: skip


def pipeline(**spec: Any) -> Any:
    return parse_pipeline({"kind": "Pipeline", "metadata": {"name": "shop"}, "spec": spec})


def test_managed_minio_lake() -> None:
    lake = lake_section(pipeline(), managed_s3_endpoint="http://minio:9000")
    assert lake == LakeConfig(group_id="shop-lake-sink", uri="s3://adnomaly-data/shop/events",
                              s3_endpoint="http://minio:9000", partitioning="hourly")  # fmt: skip


def test_managed_lake_needs_the_backend_endpoint() -> None:
    with pytest.raises(ValueError, match="S3 endpoint"):
        lake_section(pipeline(), managed_s3_endpoint=None)


def test_external_s3_and_uri_lakes() -> None:
    external = pipeline(lake={"s3": {"external": {"endpoint": "https://s3.eu.example", "region": "eu-1"},
                                     "bucket": "data-lake"}, "partitioning": "daily"})  # fmt: skip
    lake = lake_section(external, managed_s3_endpoint=None)
    assert lake is not None
    assert (lake.uri, lake.s3_endpoint, lake.s3_region, lake.partitioning) == (
        "s3://data-lake/shop/events", "https://s3.eu.example", "eu-1", "daily",
    )  # fmt: skip
    local = lake_section(pipeline(lake={"uri": "file:///data/lake/"}), managed_s3_endpoint=None)
    assert local is not None and (local.uri, local.s3_endpoint) == ("file:///data/lake/shop/events", None)


def test_disabled_lake_has_no_section() -> None:
    assert lake_section(pipeline(lake={"enabled": False}), managed_s3_endpoint="http://m:9000") is None


@pytest.mark.parametrize("uri", ["file://relative/path", "s3:///no-bucket", "http://x/y", "/data"])
def test_bad_lake_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValidationError):
        LakeConfig(group_id="g", uri=uri)


def test_feature_sections_come_from_the_features() -> None:
    spec = pipeline(events={"schema": "clickstream"}, features=[FEATURE])
    sink = feature_sink_section(spec, db_schema="p_shop")
    assert sink is not None
    assert (sink.group_id, sink.db_schema, sink.feast_project) == ("shop-feature-sink", "p_shop", "shop")
    (view,) = sink.features
    assert (view.name, view.dimensions, view.metrics, view.ttl_s) == (
        "traffic_5m", ["geo", "platform"], ["ctr_avg", "n"], 7200.0,
    )  # fmt: skip
    serving = serving_section(spec, port=8123)
    assert serving is not None and serving.port == 8123 and serving.features == sink.features
    assert serving.feast_project == sink.feast_project  # the API reads the hashes the sink writes
    assert feature_sink_section(pipeline(), db_schema="x") is None
    assert serving_section(pipeline()) is None


def test_a_rendered_config_loads_whether_or_not_component_config_declares_the_section(tmp_path: Path) -> None:
    spec = pipeline(features=[FEATURE])
    base = plan(spec, Endpoints(kafka_bootstrap="k:9092")).components["processor"].config
    section = feature_sink_section(spec, db_schema="p_shop")
    assert section is not None
    path = tmp_path / "c.json"
    path.write_text(render_config(base, FEATURE_SINK_SECTION, section))
    config, loaded = load_section(path, FEATURE_SINK_SECTION, FeatureSinkConfig)
    assert loaded == section
    assert config.pipeline == "shop" and config.kafka.bootstrap_servers == "k:9092"
    with pytest.raises(SystemExit, match="no `lake` section"):
        load_section(path, LAKE_SECTION, LakeConfig)
    assert json.loads(path.read_text())[FEATURE_SINK_SECTION]["features"][0]["ttl_s"] == 7200.0


def test_unreadable_or_invalid_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot read the component config"):
        load_section(tmp_path / "missing.json", LAKE_SECTION, LakeConfig)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(SystemExit, match="not valid JSON"):
        load_section(broken, LAKE_SECTION, LakeConfig)
    base = plan(pipeline(), Endpoints(kafka_bootstrap="k:9092")).components["processor"].config
    document = json.loads(base.to_json())
    document[LAKE_SECTION] = {"group_id": "g", "uri": "ftp://x"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(SystemExit, match="must start with s3:// or file://"):
        load_section(bad, LAKE_SECTION, LakeConfig)
