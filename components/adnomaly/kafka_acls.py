"""Least-privilege Kafka ACLs per component (pure: config in, rules out; no I/O, no confluent-kafka).

Each component's Kafka user may do exactly what the component does and nothing else:

| component     | topics                                  | groups / transactional ids                 |
|---------------|-----------------------------------------|--------------------------------------------|
| generator     | write raw                               | -                                          |
| ingest        | write raw, write DLQ (rejected lines)   | -                                          |
| processor     | read raw, write DLQ                     | read its group                             |
| lake-sink     | read raw                                | read its group                             |
| feature-sink  | read features                           | read its group                             |
| detector      | read features, write anomalies          | read its group, write its transactional id |
| features job  | read raw, write features                | read its groups, write its txn-id prefixes |
| serving       | (no Kafka access: reads Redis)          | -                                          |

Nobody may create, delete or alter topics (the backend's admin does that), or touch the cluster. READ and
WRITE imply DESCRIBE in Kafka, so metadata, watermarks and committed offsets need no extra rule;
idempotent producers need only WRITE on their topics (Kafka >= 3.0, KIP-679).

`component_acls(config)` / `features_job_acls` are meant for the operator (Strimzi
`KafkaUser.spec.authorization.acls`, via `strimzi_acls`) and are what tests/integration/test_kafka_security.py
applies to a real broker (through `adnomaly.kafka_client.acl_bindings` / `create_acls`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adnomaly.config import ComponentConfig

ResourceType = Literal["topic", "group", "transactionalId"]
PatternType = Literal["literal", "prefix"]
Operation = Literal["Read", "Write", "Describe"]


@dataclass(frozen=True, order=True)
class AclRule:
    """ALLOW `operation` on one resource (any host). The principal is the component's Kafka user."""

    resource_type: ResourceType
    name: str
    operation: Operation
    pattern: PatternType = "literal"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"an ACL on a {self.resource_type} needs a resource name")


class NoKafkaAccess(ValueError):
    """The component does not use Kafka (or its config lacks the section that says how)."""


def _read(topic: str) -> AclRule:
    return AclRule("topic", topic, "Read")


def _write(topic: str) -> AclRule:
    return AclRule("topic", topic, "Write")


def _group(group_id: str) -> AclRule:
    return AclRule("group", group_id, "Read")


def component_acls(config: ComponentConfig) -> tuple[AclRule, ...]:
    """The ALLOW rules for `config.component`'s Kafka user, sorted and without duplicates."""
    topics = config.kafka.topics
    name = config.component
    rules: list[AclRule]
    if name == "generator":
        rules = [_write(topics.raw)]
    elif name == "ingest":
        rules = [_write(topics.raw), _write(topics.dlq)]
    elif name == "processor" and config.processor is not None:
        rules = [_read(topics.raw), _group(config.processor.group_id), _write(topics.dlq)]
    elif name == "lake-sink" and config.lake is not None:
        rules = [_read(topics.raw), _group(config.lake.group_id)]
    elif name == "feature-sink" and config.feature_sink is not None:
        rules = [_read(topics.features), _group(config.feature_sink.group_id)]
    elif name == "detector" and config.detector is not None:
        detector = config.detector
        rules = [
            _read(topics.features), _group(detector.group_id), _write(topics.anomalies),
            AclRule("transactionalId", detector.transactional_id, "Write"),
        ]  # fmt: skip
    else:
        raise NoKafkaAccess(f"component {name!r} has no Kafka access (or its config lacks its section)")
    return tuple(sorted(set(rules)))


def features_job_acls(
    raw_topic: str, features_topic: str, consumer_groups: Sequence[str], transactional_id_prefixes: Sequence[str]
) -> tuple[AclRule, ...]:
    """The Flink features job (`FlinkJob.consumer_groups`, `.transactional_id_prefixes`): it reads raw in
    its groups and writes features, through transactions whose ids start with the given prefixes."""
    rules = [_read(raw_topic), _write(features_topic)]
    rules += [_group(group) for group in consumer_groups]
    rules += [AclRule("transactionalId", prefix, "Write", "prefix") for prefix in transactional_id_prefixes]
    return tuple(sorted(set(rules)))


def strimzi_acls(rules: Iterable[AclRule]) -> list[dict[str, Any]]:
    """`KafkaUser.spec.authorization.acls` (type `simple`): one entry per resource, its operations sorted."""
    grouped: dict[tuple[str, str, str], set[str]] = {}
    for rule in rules:
        grouped.setdefault((rule.resource_type, rule.name, rule.pattern), set()).add(rule.operation)
    return [
        {
            "resource": {"type": rtype, "name": name, "patternType": pattern},
            "operations": sorted(ops),
            "host": "*",
        }
        for (rtype, name, pattern), ops in sorted(grouped.items())
    ]
