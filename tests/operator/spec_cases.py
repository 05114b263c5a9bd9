"""Invalid Pipeline specs, each with the field its error must name. Shared by the unit tests (the
pydantic model refuses each one) and the operator tests (the API server, through the generated CRD's
schema and CEL rules, refuses the very same documents)."""

from __future__ import annotations

from typing import Any

FEATURE = {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]}

# (case id, spec, a fragment the API server's message names, a fragment pydantic's message names)
INVALID_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("zero-partitions", {"kafka": {"topics": {"raw": {"partitions": 0, "retention": "7d"}}}},
     "spec.kafka.topics.raw.partitions", "kafka.topics.raw.partitions"),
    ("bad-retention", {"kafka": {"topics": {"dlq": {"partitions": 1, "retention": "7 days"}}}},
     "spec.kafka.topics.dlq.retention", "kafka.topics.dlq.retention"),
    ("unknown-schema", {"events": {"schema": "nope"}}, "spec.events.schema", "events.schema"),
    ("schema-and-json-schema", {"events": {"schema": "signal", "jsonSchema": {"type": "object"}, "timeField": "ts"}},
     "spec.events.jsonSchema", "events"),
    ("json-schema-without-time-field", {"events": {"jsonSchema": {"type": "object"}}},
     "spec.events.timeField", "events"),
    ("wrong-time-field", {"events": {"schema": "clickstream", "timeField": "ad_id"}},
     "spec.events.timeField", "events"),
    ("managed-and-external-kafka", {"kafka": {"managed": {}, "external": {"bootstrapServers": "k:9092"}}},
     "spec.kafka.external", "kafka"),
    ("manage-topics-sasl-without-credentials",
     {"kafka": {"external": {"bootstrapServers": "k:9092", "securityProtocol": "SASL_SSL", "manageTopics": True}}},
     "spec.kafka.external.credentialsSecretRef", "manageTopics with securityProtocol SASL_SSL needs"),
    ("manage-topics-not-a-boolean",
     {"kafka": {"external": {"bootstrapServers": "k:9092", "manageTopics": "sometimes"}}},
     "spec.kafka.external.manageTopics", "kafka.external.manageTopics"),
    ("managed-and-external-postgres",
     {"storage": {"postgres": {"managed": {}, "external": {"dsnSecretRef": {"name": "pg"}}}}},
     "spec.storage.postgres.external", "storage.postgres"),
    ("s3-and-uri", {"lake": {"s3": {}, "uri": "file:///data"}}, "spec.lake.uri", "lake"),
    ("hopping-without-slide", {"features": [{**FEATURE, "window": {"type": "hopping", "size": "5m"}}]},
     "spec.features[0].window.slide", "features.0.window"),
    ("slide-not-dividing-size",
     {"features": [{**FEATURE, "window": {"type": "hopping", "size": "5m", "slide": "2m"}}]},
     "spec.features[0].window.slide", "features.0.window"),
    ("tumbling-with-slide", {"features": [{**FEATURE, "window": {"type": "tumbling", "size": "5m", "slide": "1m"}}]},
     "spec.features[0].window.slide", "features.0.window"),
    ("avg-without-field", {"features": [{**FEATURE, "metrics": [{"name": "a", "agg": "avg"}]}]},
     "spec.features[0].metrics[0].field", "features.0.metrics.0"),
    ("unknown-dimension", {"features": [{**FEATURE, "dimensions": ["nope"]}]}, "spec.features", "dimension `nope`"),
    ("duplicate-feature", {"features": [FEATURE, FEATURE]}, "spec.features[1]", "feature names must be unique"),
    ("detector-two-methods",
     {"features": [FEATURE], "detection": {"detectors": [
         {"name": "d", "feature": "f", "metric": "n", "threshold": {"warningAbove": 1}, "ewma": {}}]}},
     "spec.detection.detectors[0]", "detection.detectors.0"),
    ("detector-unknown-feature",
     {"features": [FEATURE], "detection": {"detectors": [
         {"name": "d", "feature": "g", "metric": "n", "threshold": {"warningAbove": 1}}]}},
     "spec.detection.detectors", "detector `d`"),
    ("threshold-without-bound",
     {"features": [FEATURE],
      "detection": {"detectors": [{"name": "d", "feature": "f", "metric": "n", "threshold": {}}]}},
     "spec.detection.detectors[0].threshold", "detection.detectors.0.threshold"),
    ("dlq-detector-unknown-metric",
     {"detection": {"detectors": [
         {"name": "d", "feature": "_dlq", "metric": "n", "threshold": {"warningAbove": 0.1}}]}},
     "spec.detection.detectors[0].metric", "the reserved feature `_dlq`"),
    ("feature-named-dlq", {"features": [{**FEATURE, "name": "_dlq"}]}, "spec.features",
     "the feature name `_dlq` is reserved"),
    ("negative-replicas", {"components": {"processor": {"replicas": -1}}},
     "spec.components.processor.replicas", "components.processor.replicas"),
    ("autoscaling-min-above-max",
     {"components": {"lakeSink": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}}},
     "spec.components.lakeSink.autoscaling.minReplicas", "minReplicas must be at most maxReplicas"),
    ("ingest-autoscaling-min-above-max",
     {"source": {"ingest": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}}},
     "spec.source.ingest.autoscaling.minReplicas", "minReplicas must be at most maxReplicas"),
    ("ingest-autoscaling-without-max", {"source": {"ingest": {"autoscaling": {"minReplicas": 2}}}},
     "spec.source.ingest.autoscaling.maxReplicas", "source.ingest.autoscaling.maxReplicas"),
    ("zero-lag-threshold", {"components": {"processor": {"autoscaling": {"lagThreshold": 0}}}},
     "spec.components.processor.autoscaling.lagThreshold", "components.processor.autoscaling.lagThreshold"),
    ("detector-autoscaling", {"components": {"detector": {"autoscaling": {}}}},
     "spec.components.detector.autoscaling", "components.detector.autoscaling"),
    ("flink-utilization-above-one", {"components": {"features": {"autoscaler": {"targetUtilization": 1.5}}}},
     "spec.components.features.autoscaler.targetUtilization", "components.features.autoscaler.targetUtilization"),
    ("bad-deletion-policy", {"deletionPolicy": "Forget"}, "spec.deletionPolicy", "deletionPolicy"),
    ("generator-with-custom-schema", {"events": {"jsonSchema": {"type": "object"}, "timeField": "ts"}},
     "spec.source.generator", "the generator makes built-in schemas only"),
    ("scenario-for-another-schema",
     {"events": {"schema": "clickstream"}, "source": {"generator": {"scenarios": ["regionalOutage"]}}},
     "spec.source.generator.scenarios", "scenario `regionalOutage`"),
    ("tiny-events-with-generator", {"events": {"maxEventBytes": 512}}, "spec.events.maxEventBytes",
     "maxEventBytes must be at least"),
]


def document(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec}
