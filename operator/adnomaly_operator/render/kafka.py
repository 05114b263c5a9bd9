"""Strimzi objects: a KRaft `Kafka` with one dual-role `KafkaNodePool`, and a `KafkaTopic` per topic. Pure.

Strimzi >= 1.0 serves only `kafka.strimzi.io/v1`; node pools and KRaft are the only mode, the
annotations are still what Strimzi's docs (and older 0.4x operators) expect.
"""

from __future__ import annotations

from adnomaly_operator.desired import KAFKA_PORT, KubePlan
from adnomaly_operator.names import STRIMZI_CLUSTER_LABEL
from adnomaly_operator.render.common import (
    STAGE_STORES,
    STAGE_TOPICS,
    Desired,
    Obj,
    RenderContext,
    metadata,
    obj,
)

STRIMZI_API = "kafka.strimzi.io/v1"
KRAFT_ANNOTATIONS = {"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}


def _broker_config(replicas: int) -> Obj:
    rf = min(3, replicas)
    return {
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min(2, rf),
        "default.replication.factor": rf,
        "min.insync.replicas": min(2, rf),
        "auto.create.topics.enable": False,
    }


def render_kafka(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    managed = kp.pipeline.spec.kafka.effective_managed
    if managed is None:
        return []  # external Kafka: topics are the cluster owner's business (see README)
    names = kp.names
    cluster = {STRIMZI_CLUSTER_LABEL: names.kafka}
    kafka = obj(
        STRIMZI_API, "Kafka",
        metadata(kp, ctx, names.kafka, "kafka", annotations=KRAFT_ANNOTATIONS),
        spec={
            "kafka": {
                "version": managed.version,
                "listeners": [{"name": "plain", "port": KAFKA_PORT, "type": "internal", "tls": False}],
                "config": _broker_config(managed.replicas),
            },
            "entityOperator": {"topicOperator": {}},
        },
    )
    volume: Obj = {
        "id": 0,
        "type": "persistent-claim",
        "size": managed.storage.size,
        "deleteClaim": kp.deletion_policy == "Delete",
        "kraftMetadata": "shared",
    }
    if managed.storage.storage_class_name:
        volume["class"] = managed.storage.storage_class_name
    pool = obj(
        STRIMZI_API, "KafkaNodePool",
        metadata(kp, ctx, names.node_pool, "kafka", labels=cluster),
        spec={
            "replicas": managed.replicas,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [volume]},
        },
    )
    out = [
        Desired(kafka, STAGE_STORES, status_key="kafka"),
        Desired(pool, STAGE_STORES),
    ]
    for topic in kp.plan.topics.values():
        kt = obj(
            STRIMZI_API, "KafkaTopic",
            metadata(kp, ctx, topic.name, "kafka", labels=cluster),
            spec={"partitions": topic.partitions, "replicas": topic.replicas, "config": dict(topic.config)},
        )
        out.append(Desired(kt, STAGE_TOPICS, status_key="topics", retain=True))
    return out
