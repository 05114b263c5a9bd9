"""Feast's Redis layout (adnomaly.feast.layout), the generated repository (adnomaly.feast.repo) and the operator's
ConfigMap of it. The bytes are checked against Feast itself in tests/integration/test_feast.py; here, against
values Feast 0.67 produced, so these run without Feast."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from adnomaly.feast import layout
from adnomaly.feast.repo import ENV_CONNECTIONS, FeastConnections, feast_repo, source_query
from adnomaly.sinks.sections import feature_sink_section
from adnomaly.spec import load_pipeline
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.render import Owner, RenderContext, render

from tests.conftest import REPO_ROOT

EXAMPLE = load_pipeline(REPO_ROOT / "manifests" / "examples" / "clickstream-ad-fraud.yaml")
LOCAL = FeastConnections(redis="127.0.0.1:6380,password=pw", pg_host="127.0.0.1", pg_port="5433",
                         pg_database="adnomaly", pg_user="postgres", pg_password="secret")  # fmt: skip


def test_murmur3_and_values_match_feasts() -> None:
    assert layout.murmur3_32(b"") == 0 and layout.murmur3_32(b"abc") == 0xB3DD93FA
    assert layout.double_value(0.5) == bytes.fromhex("29000000000000e03f")
    assert layout.int64_value(100) == bytes.fromhex("2064") and layout.int64_value(0) == b"\x20\x00"
    assert layout.double_value(None) == b"" and layout.decode_value(b"") is None
    assert layout.decode_value(layout.int64_value(-5)) == -5 and layout.decode_value(layout.double_value(0.25)) == 0.25
    assert layout.timestamp(1_000) == b"\x08\x01" and layout.timestamp(1_250) == b"\x08\x01\x10\x80\xe5\x9a\x77"


def test_entity_key_sorts_join_keys_and_ends_with_the_project() -> None:
    key = layout.redis_key("ad_fraud", {"platform": "ios", "geo": "US"})
    assert key == layout.redis_key("ad_fraud", {"geo": "US", "platform": "ios"})
    assert key.startswith(b"\x02\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00geo") and key.endswith(b"ad_fraud")


def test_the_entity_key_decodes_back_to_the_entity() -> None:
    for entity in ({"geo": "US", "platform": "ios"}, {"region": "DÉ"}, {"a": "", "b": "x" * 300}, {}):
        assert layout.decode_entity_key(layout.entity_key_bytes(entity)) == entity
        key = layout.redis_key("ad_fraud", entity)
        assert layout.entity_of(key, "ad_fraud") == entity
    key = layout.redis_key("x_ad_fraud", {"geo": "US"})  # ends like "ad_fraud" but is another project's
    assert layout.entity_of(key, "ad_fraud") is None and layout.entity_of(key, "x_ad_fraud") == {"geo": "US"}
    assert layout.entity_of(b"adnomaly:ad_fraud", "ad_fraud") is None  # not Feast's layout
    whole = layout.entity_key_bytes({"geo": "US"})
    for bad in (whole[:-1], whole + b"!", whole[:3], b""):
        with pytest.raises(ValueError):
            layout.decode_entity_key(bad)
    with pytest.raises(ValueError):  # an int64 value (type 4): not a key the sink writes
        layout.decode_entity_key(whole[:-10] + b"\x04" + whole[-9:])


def test_fields_keep_our_end_ms_first_then_our_window_feasts_ts_and_typed_metrics() -> None:
    view = layout.FeastView("v", frozenset({"event_count"}))
    fields = layout.feast_fields(view, 60_000, b"{}", {"event_count": 7.0, "ctr_avg": None})
    assert fields == [
        (b"_adnomaly_end_ms:v", b"60000"), (b"_adnomaly_window:v", b"{}"), (b"_ts:v", b"\x08\x3c"),
        (layout.feature_field("v", "ctr_avg"), b""), (layout.feature_field("v", "event_count"), b"\x20\x07"),
    ]
    assert [name.startswith(layout.OWN_FIELD_PREFIX) for name, _ in fields] == [True, True, False, False, False]


def test_the_sink_writes_feasts_layout_by_default() -> None:
    section = feature_sink_section(EXAMPLE, db_schema="p_ad_fraud")
    assert section is not None and section.feast_project == "ad_fraud"
    assert section.features[0].int64_metrics == ["event_count"]


def test_repository_of_the_example() -> None:
    files = feast_repo(EXAMPLE, "p_ad_fraud", LOCAL)
    assert set(files) == {"feature_store.yaml", "features.py"}
    config = yaml.safe_load(files["feature_store.yaml"])
    assert config["project"] == "ad_fraud" and config["entity_key_serialization_version"] == 3
    assert config["online_store"] == {"type": "redis", "connection_string": LOCAL.redis, "key_ttl_seconds": 259200}
    assert config["offline_store"]["db_schema"] == "p_ad_fraud" and config["offline_store"]["port"] == "5433"
    assert config["registry"] == {"registry_type": "file", "path": "data/registry.db"}
    code = files["features.py"]
    compile(code, "features.py", "exec")
    assert "entity_geo = Entity(name='geo', join_keys=['geo'], value_type=ValueType.STRING)" in code
    assert "ttl=timedelta(seconds=259200)" in code and "Field(name='event_count', dtype=Int64)" in code
    assert "Field(name='ctr_avg', dtype=Float64)" in code
    query = source_query(EXAMPLE.spec.features[0], "p_ad_fraud")
    assert query.endswith("""FROM "p_ad_fraud"."feature_aggregates" WHERE feature = 'traffic_5m_by_geo_platform'""")
    assert "(metrics->>'event_count')::double precision::bigint AS \"event_count\"" in query
    assert feast_repo(EXAMPLE, "p", LOCAL) == feast_repo(EXAMPLE, "p", LOCAL)  # pure


def test_the_operator_publishes_the_repository_as_a_configmap() -> None:
    kp = kube_plan(EXAMPLE, "team-a")
    out = {(d.kind, d.name): d for d in render(kp, RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline",
                                                                       "ad-fraud", "uid-1")))}  # fmt: skip
    cm = out[("ConfigMap", "ad-fraud-feast")].obj
    assert set(cm["data"]) == {"feature_store.yaml", "features.py"}
    config = yaml.safe_load(cm["data"]["feature_store.yaml"])
    assert config["online_store"]["connection_string"] == (
        "ad-fraud-redis.team-a.svc:6379,password=${ADNOMALY_FEAST_REDIS_PASSWORD}")
    assert config["offline_store"]["host"] == "ad-fraud-postgres.team-a.svc"
    assert config["offline_store"]["password"] == "${ADNOMALY_FEAST_PG_PASSWORD}"  # never a secret's value
    assert cm["data"]["features.py"] == feast_repo(EXAMPLE, kp.plan.db_schema, LOCAL)["features.py"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_external_stores_leave_every_connection_to_the_environment() -> None:
    document = EXAMPLE.model_dump(by_alias=True, exclude_none=True)
    document["spec"]["storage"] = {"postgres": {"external": {"dsnSecretRef": {"name": "pg"}}}}
    document["spec"]["featureStore"] = {"redis": {"external": {"urlSecretRef": {"name": "rd"}}}}
    from adnomaly.spec import parse_pipeline

    pipeline = parse_pipeline(document)
    out = {(d.kind, d.name): d for d in render(kube_plan(pipeline, "ns"), RenderContext(Owner(
        "adnomaly.io/v1alpha1", "Pipeline", "ad-fraud", "u")))}  # fmt: skip
    config = yaml.safe_load(out[("ConfigMap", "ad-fraud-feast")].obj["data"]["feature_store.yaml"])
    assert config["online_store"]["connection_string"] == ENV_CONNECTIONS.redis
    assert config["offline_store"]["host"] == ENV_CONNECTIONS.pg_host


def test_the_command_writes_the_repository_with_private_connections(tmp_path: Path) -> None:
    from adnomaly.cli import main

    example = str(REPO_ROOT / "manifests" / "examples" / "clickstream-ad-fraud.yaml")
    assert main(["feast", "-f", example, "-o", str(tmp_path / "env"), "--env"]) == 0
    written = (tmp_path / "env" / "feature_store.yaml")
    assert written.stat().st_mode & 0o777 == 0o600 and (tmp_path / "env" / "data").is_dir()
    assert yaml.safe_load(written.read_text())["online_store"]["connection_string"] == ENV_CONNECTIONS.redis

    state = tmp_path / "state" / "services"
    for service, files in {"redis": {"port": "6390", "redis.password": "rpw"},
                           "postgres": {"port": "5440", "superuser.password": "ppw"}}.items():  # fmt: skip
        (state / service).mkdir(parents=True)
        for name, text in files.items():
            (state / service / name).write_text(text + "\n")
    args = ["feast", "-f", example, "-o", str(tmp_path / "local"), "--state-dir", str(tmp_path / "state")]
    assert main(args) == 0
    config = yaml.safe_load((tmp_path / "local" / "feature_store.yaml").read_text())
    assert config["online_store"]["connection_string"] == "127.0.0.1:6390,password=rpw"
    assert config["offline_store"]["port"] == "5440" and config["offline_store"]["password"] == "ppw"
