"""Least-privilege Kafka ACLs per component: derived from the plan, the same rules for Strimzi and tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from adnomaly.features.sql import JobOptions, compile_pipeline
from adnomaly.kafka_acls import AclRule, NoKafkaAccess, component_acls, features_job_acls, strimzi_acls
from adnomaly.plan import Endpoints, plan
from adnomaly.spec import parse_pipeline

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "clickstream-ad-fraud.yaml"
ENDPOINTS = Endpoints(kafka_bootstrap="kafka:9092", s3_endpoint="http://minio:9000")


@pytest.fixture(scope="module")
def components() -> dict:
    pipeline = parse_pipeline(yaml.safe_load(MANIFEST.read_text()))
    return {name: c.config for name, c in plan(pipeline, ENDPOINTS).components.items()}


def _summary(rules: tuple[AclRule, ...]) -> set[tuple[str, str, str, str]]:
    return {(r.resource_type, r.name, r.operation, r.pattern) for r in rules}


def test_processor_reads_raw_commits_its_group_and_writes_dlq_only(components: dict) -> None:
    config = components["processor"]
    topics = config.kafka.topics
    assert _summary(component_acls(config)) == {
        ("topic", topics.raw, "Read", "literal"),
        ("group", config.processor.group_id, "Read", "literal"),
        ("topic", topics.dlq, "Write", "literal"),
    }


def test_each_component_gets_exactly_its_topics(components: dict) -> None:
    t = components["processor"].kafka.topics
    expected_topics = {
        "generator": {(t.raw, "Write")},
        "ingest": {(t.raw, "Write"), (t.dlq, "Write")},
        "processor": {(t.raw, "Read"), (t.dlq, "Write")},
        "lake-sink": {(t.raw, "Read")},
        "feature-sink": {(t.features, "Read")},
        "detector": {(t.features, "Read"), (t.anomalies, "Write")},
    }
    kafka_components = set(components) - {"serving"}
    assert kafka_components == set(expected_topics)  # the example plans every component
    for name in kafka_components:
        rules = component_acls(components[name])
        assert {(r.name, r.operation) for r in rules if r.resource_type == "topic"} == expected_topics[name], name


def test_groups_and_transactional_ids_come_from_the_plan(components: dict) -> None:
    groups = {
        name: {r.name for r in component_acls(c) if r.resource_type == "group"}
        for name, c in components.items() if name != "serving"
    }  # fmt: skip
    assert groups["processor"] == {components["processor"].processor.group_id}
    assert groups["lake-sink"] == {components["lake-sink"].lake.group_id}
    assert groups["feature-sink"] == {components["feature-sink"].feature_sink.group_id}
    assert groups["detector"] == {components["detector"].detector.group_id}
    assert groups["generator"] == groups["ingest"] == set()
    detector_txn = [r for r in component_acls(components["detector"]) if r.resource_type == "transactionalId"]
    assert detector_txn == [AclRule("transactionalId", components["detector"].detector.transactional_id, "Write")]


def test_no_component_may_create_alter_or_reach_the_cluster(components: dict) -> None:
    for name, config in components.items():
        if name == "serving":
            continue
        for rule in component_acls(config):
            assert rule.operation in {"Read", "Write"}, (name, rule)
            assert rule.resource_type in {"topic", "group", "transactionalId"}, (name, rule)
            assert rule.pattern == "literal", (name, rule)  # no wildcard or prefix for components
            assert "*" not in rule.name


def test_serving_and_incomplete_configs_have_no_kafka_access(components: dict) -> None:
    with pytest.raises(NoKafkaAccess, match="serving"):
        component_acls(components["serving"])
    broken = components["processor"].model_copy(update={"processor": None})
    with pytest.raises(NoKafkaAccess, match="processor"):
        component_acls(broken)


def test_rules_are_sorted_unique_and_deterministic(components: dict) -> None:
    rules = component_acls(components["detector"])
    assert list(rules) == sorted(set(rules))
    assert rules == component_acls(components["detector"])


def test_features_job_reads_raw_in_its_groups_and_writes_features_transactionally() -> None:
    pipeline = parse_pipeline(yaml.safe_load(MANIFEST.read_text()))
    job = compile_pipeline(pipeline, "kafka:9092", JobOptions("file:///tmp/ckpt", delivery="exactly-once"))
    topics = plan(pipeline, ENDPOINTS).components["processor"].config.kafka.topics
    rules = features_job_acls(topics.raw, topics.features, job.consumer_groups, job.transactional_id_prefixes)
    assert {(r.name, r.operation) for r in rules if r.resource_type == "topic"} == {
        (topics.raw, "Read"), (topics.features, "Write"),
    }  # fmt: skip
    assert {r.name for r in rules if r.resource_type == "group"} == set(job.consumer_groups)
    txn = {(r.name, r.pattern) for r in rules if r.resource_type == "transactionalId"}
    assert txn == {(prefix, "prefix") for prefix in job.transactional_id_prefixes} and txn


def test_strimzi_acls_group_operations_per_resource() -> None:
    rules = [AclRule("topic", "p-raw", "Read"), AclRule("topic", "p-raw", "Describe"),
             AclRule("group", "p-proc", "Read"), AclRule("transactionalId", "p-tx", "Write", "prefix")]  # fmt: skip
    assert strimzi_acls(rules) == [
        {"resource": {"type": "group", "name": "p-proc", "patternType": "literal"}, "operations": ["Read"],
         "host": "*"},
        {"resource": {"type": "topic", "name": "p-raw", "patternType": "literal"},
         "operations": ["Describe", "Read"], "host": "*"},
        {"resource": {"type": "transactionalId", "name": "p-tx", "patternType": "prefix"}, "operations": ["Write"],
         "host": "*"},
    ]  # fmt: skip


def test_an_acl_needs_a_resource_name() -> None:
    with pytest.raises(ValueError, match="resource name"):
        AclRule("topic", "", "Read")


def test_confluent_bindings_allow_exactly_the_rules_for_the_user() -> None:
    from adnomaly.kafka_client import acl_bindings
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    rules = [AclRule("topic", "p-raw", "Read"), AclRule("transactionalId", "p-tx", "Write", "prefix")]
    first, second = acl_bindings("processor", rules)
    assert (first.restype, first.name, first.resource_pattern_type, first.principal, first.host) == (
        ResourceType.TOPIC, "p-raw", ResourcePatternType.LITERAL, "User:processor", "*")
    assert (first.operation, first.permission_type) == (AclOperation.READ, AclPermissionType.ALLOW)
    assert (second.restype, second.resource_pattern_type, second.operation) == (
        ResourceType.TRANSACTIONAL_ID, ResourcePatternType.PREFIXED, AclOperation.WRITE)

