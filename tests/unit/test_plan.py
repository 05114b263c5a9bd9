"""spec → plan: pure, deterministic, and what both backends rely on."""

from __future__ import annotations

import pytest
from adnomaly.plan import Endpoints, plan, topic_name
from adnomaly.scaling import LagScaling
from adnomaly.spec import SpecError, parse_pipeline

ENDPOINTS = Endpoints(kafka_bootstrap="kafka:9092")


def pipeline(spec: dict | None = None, name: str = "shop"):
    return parse_pipeline({"kind": "Pipeline", "metadata": {"name": name}, "spec": spec or {}})


def test_topics_follow_the_spec() -> None:
    spec = {"kafka": {"managed": {"replicas": 3}, "topics": {"raw": {"partitions": 12, "retention": "2d"}}}}
    p = plan(pipeline(spec), ENDPOINTS)
    raw = p.topics["raw"]
    assert (raw.name, raw.partitions, raw.replicas, raw.retention_ms) == ("shop-raw", 12, 3, 2 * 86400 * 1000)
    assert raw.config == {"retention.ms": str(2 * 86400 * 1000), "min.insync.replicas": "2"}
    assert set(p.topics) == {"raw", "dlq", "features", "anomalies"}
    assert p.topics["dlq"].replicas == 3


def test_single_broker_topics_have_one_replica() -> None:
    p = plan(pipeline(), ENDPOINTS)
    assert {t.replicas for t in p.topics.values()} == {1}
    assert p.topics["raw"].config["min.insync.replicas"] == "1"


def test_plan_is_deterministic() -> None:
    assert plan(pipeline(), ENDPOINTS) == plan(pipeline(), ENDPOINTS)


def test_component_configs_carry_what_components_need() -> None:
    p = plan(pipeline({"source": {"generator": {"seed": 9, "invalidRate": 0.1}}}), ENDPOINTS)
    gen = p.components["generator"].config
    assert gen.generator is not None and gen.generator.seed == 9 and gen.generator.invalid_rate == 0.1
    assert gen.processor is None and gen.ingest is None
    proc = p.components["processor"].config
    assert proc.kafka.topics.raw == topic_name("shop", "raw") and proc.kafka.bootstrap_servers == "kafka:9092"
    assert proc.processor is not None and proc.processor.group_id == "shop-processor"
    assert proc.processor.db_schema == "p_shop"
    assert proc.events.schema_name == "clickstream" and proc.events.time_field == "timestamp"


def test_serving_reads_the_pipelines_schema_for_its_anomalies() -> None:
    features = {"features": [{"name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "1m"},
                              "metrics": [{"name": "n", "agg": "count"}]}]}  # fmt: skip
    serving = plan(pipeline(features), ENDPOINTS).components["serving"].config.serving
    assert serving is not None and serving.db_schema == "p_shop"


def test_the_serving_apis_kept_answers_follow_the_feature_store_spec() -> None:
    features = {"features": [{"name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "1m"},
                              "metrics": [{"name": "n", "agg": "count"}]}]}  # fmt: skip
    default = plan(pipeline(features), ENDPOINTS).components["serving"]
    off = plan(pipeline({**features, "featureStore": {"servingCacheKeys": 0}}), ENDPOINTS).components["serving"]
    assert default.config.serving is not None and default.config.serving.cache_keys == 10_000
    assert off.config.serving is not None and off.config.serving.cache_keys == 0
    assert default.config_hash != off.config_hash  # a change rolls the serving pods
    with pytest.raises(SpecError, match="servingCacheKeys"):
        pipeline({"featureStore": {"servingCacheKeys": -1}})


def test_config_hash_changes_only_for_affected_components() -> None:
    before = plan(pipeline(), ENDPOINTS).components
    after = plan(pipeline({"components": {"processor": {"batchSize": 100}}}), ENDPOINTS).components
    assert before["processor"].config_hash != after["processor"].config_hash
    assert before["generator"].config_hash == after["generator"].config_hash
    assert before["ingest"].config_hash == after["ingest"].config_hash


def test_processor_replicas_capped_at_partitions() -> None:
    p = plan(pipeline({"components": {"processor": {"replicas": 10}},
                       "kafka": {"topics": {"raw": {"partitions": 4, "retention": "1d"}}}}), ENDPOINTS)
    assert p.components["processor"].replicas == 4
    assert p.conditions and p.conditions[0][0] == "ReplicasCapped" and "10 requested" in p.conditions[0][1]
    assert "ReplicasCapped" not in dict(plan(pipeline(), ENDPOINTS).conditions)


def test_disabled_sources_have_no_components() -> None:
    p = plan(pipeline({"source": {"generator": {"enabled": False}, "ingest": {"replicas": 0}}}), ENDPOINTS)
    assert set(p.components) == {"processor"}


def test_secrets_never_in_component_config() -> None:
    p = plan(pipeline({"source": {"ingest": {"authSecretRef": {"name": "tokens"}}}}), ENDPOINTS)
    for component in p.components.values():
        text = component.config.to_json().lower()
        assert "password" not in text and "token" not in text and "dsn" not in text


def test_managed_stores_follow_the_spec() -> None:
    from adnomaly.plan import managed_stores

    assert managed_stores(pipeline()) == {"kafka", "postgres", "minio"}
    feature = {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]}
    assert "redis" in managed_stores(pipeline({"features": [feature]}))
    external = pipeline({"kafka": {"external": {"bootstrapServers": "k:9092"}},
                         "storage": {"postgres": {"external": {"dsnSecretRef": {"name": "pg"}}}},
                         "lake": {"uri": "file:///lake"}})
    assert managed_stores(external) == frozenset()


def test_lake_sink_planned_where_the_lake_is() -> None:
    with_endpoint = plan(pipeline(), Endpoints(kafka_bootstrap="k:9092", s3_endpoint="http://minio:9000"))
    lake = with_endpoint.components["lake-sink"].config.lake
    assert lake is not None and lake.s3_endpoint == "http://minio:9000" and lake.uri == "s3://adnomaly-data/shop/events"
    without = plan(pipeline(), ENDPOINTS)
    assert "lake-sink" not in without.components and without.conditions[0][0] == "LakeNotPlanned"
    file_lake = plan(pipeline({"lake": {"uri": "file:///data/lake"}}), ENDPOINTS)
    assert file_lake.components["lake-sink"].config.lake.uri == "file:///data/lake/shop/events"


def test_tracing_spec_becomes_the_standard_otel_environment_of_every_component() -> None:
    assert all(not c.env for c in plan(pipeline(), ENDPOINTS).components.values())
    traced = plan(pipeline({"observability": {"tracing": {"otlpEndpoint": "http://otel:4317", "sampleRatio": 0.25}}}),
                  ENDPOINTS).components
    processor = traced["processor"].env
    assert processor == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "adnomaly-processor",
        "OTEL_RESOURCE_ATTRIBUTES": "adnomaly.pipeline=shop",
    }
    assert {c.env["OTEL_SERVICE_NAME"] for c in traced.values()} == {f"adnomaly-{name}" for name in traced}
    # turning tracing on rolls the components (their pods must get the new environment)
    untraced = plan(pipeline(), ENDPOINTS).components
    assert all(traced[name].config_hash != untraced[name].config_hash for name in traced)


# --- autoscaling ---------------------------------------------------------------------------------

FEATURE = {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]}


def test_target_lag_seconds_plans_the_records_threshold_at_the_stated_rate() -> None:
    spec = {"lake": {"uri": "file:///tmp/lake"}, "components": {"processor": {"autoscaling": {
        "targetLagSeconds": 30, "replicaRecordsPerSecond": 2000}}}}
    scaling = plan(pipeline(spec), ENDPOINTS).components["processor"].autoscaling
    assert isinstance(scaling, LagScaling)
    # what KEDA gets (it counts records); the local executor refines the rate by measuring it
    assert (scaling.lag_threshold, scaling.target_lag_s, scaling.replica_rate) == (60_000, 30, 2000)


def test_autoscaled_consumers_plan_their_group_topic_and_bounds() -> None:
    spec = {
        "lake": {"uri": "file:///tmp/lake"}, "features": [FEATURE],
        "kafka": {"topics": {"raw": {"partitions": 8, "retention": "1d"},
                             "features": {"partitions": 2, "retention": "1d"}}},
        "components": {
            "processor": {"replicas": 5, "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "lagThreshold": 500,
                                                         "scaleDownStabilization": "2m"}},
            "lakeSink": {"autoscaling": {}},
            "featureSink": {"autoscaling": {}},
        },
    }
    p = plan(pipeline(spec), ENDPOINTS)
    proc = p.components["processor"]
    assert proc.replicas == 2  # a scaler owns the count: it starts at minReplicas (`replicas` is ignored)
    assert proc.autoscaling is not None
    assert (proc.autoscaling.topic, proc.autoscaling.consumer_group) == ("shop-raw", "shop-processor")
    assert (proc.autoscaling.min_replicas, proc.autoscaling.max_replicas, proc.autoscaling.lag_threshold) == (2, 6, 500)
    assert proc.autoscaling.scale_down_stabilization_s == 120
    lake = p.components["lake-sink"].autoscaling
    assert lake is not None
    assert (lake.consumer_group, lake.max_replicas, lake.lag_threshold) == ("shop-lake-sink", 8, 1000)
    features = p.components["feature-sink"].autoscaling
    assert features is not None and (features.topic, features.consumer_group) == ("shop-features", "shop-feature-sink")
    assert features.max_replicas == 2  # default: the consumed topic's partitions
    assert "ReplicasCapped" not in dict(p.conditions)
    assert plan(pipeline(), ENDPOINTS).components["processor"].autoscaling is None


def test_autoscaling_max_replicas_is_capped_at_partitions_and_the_plan_says_so() -> None:
    spec = {"kafka": {"topics": {"raw": {"partitions": 4, "retention": "1d"}}},
            "components": {"processor": {"autoscaling": {"minReplicas": 5, "maxReplicas": 12}}}}
    p = plan(pipeline(spec), ENDPOINTS)
    scaling = p.components["processor"].autoscaling
    assert scaling is not None and (scaling.min_replicas, scaling.max_replicas) == (4, 4)
    messages = [m for reason, m in p.conditions if reason == "ReplicasCapped"]
    assert messages == [
        "processor autoscaling maxReplicas capped at 4 (the raw topic's partition count); 12 requested",
        "processor autoscaling minReplicas capped at 4 (the raw topic's partition count); 5 requested",
    ]
    assert p.components["processor"].notes == tuple(messages)


def test_sink_replicas_are_capped_and_reported_like_the_processors() -> None:
    spec = {"lake": {"uri": "file:///tmp/lake"}, "kafka": {"topics": {"raw": {"partitions": 2, "retention": "1d"}}},
            "components": {"lakeSink": {"replicas": 3}}}
    p = plan(pipeline(spec), ENDPOINTS)
    assert p.components["lake-sink"].replicas == 2
    assert dict(p.conditions)["ReplicasCapped"] == (
        "lake-sink replicas capped at 2 (the raw topic's partition count); 3 requested"
    )


def test_ingest_scales_on_cpu() -> None:
    spec = {"source": {"ingest": {"replicas": 0, "autoscaling": {"minReplicas": 2, "maxReplicas": 10,
                                                                 "targetCpuUtilization": 60}}}}
    ingest = plan(pipeline(spec), ENDPOINTS).components["ingest"]
    assert ingest.replicas == 2  # `replicas: 0` is ignored under autoscaling: ingest still runs
    assert ingest.autoscaling is not None
    assert (ingest.autoscaling.max_replicas, ingest.autoscaling.target_cpu_utilization) == (10, 60)
    assert ingest.autoscaling.scale_down_stabilization_s == 300
