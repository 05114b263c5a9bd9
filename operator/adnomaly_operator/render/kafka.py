"""Strimzi objects: a KRaft `Kafka` with one dual-role `KafkaNodePool`, a `KafkaTopic` per topic and a
`KafkaUser` per component. Pure.

Every client authenticates (SCRAM-SHA-512) on both listeners — `plain` (SASL_PLAINTEXT, what the
components use) and `tls` (SASL_SSL with the cluster CA) — and the `simple` authorizer gives each
component's user only the ACLs its config needs (`adnomaly.kafka_acls`).

Strimzi >= 1.0 serves only `kafka.strimzi.io/v1`; node pools and KRaft are the only mode, the
annotations are still what Strimzi's docs (and older 0.4x operators) expect.
"""

from __future__ import annotations

from adnomaly.kafka_acls import strimzi_acls

from adnomaly_operator.desired import (
    FLINK_COMPONENT,
    KAFKA_PORT,
    KAFKA_TLS_PORT,
    KafkaUserPlan,
    KubePlan,
    uses_kafka,
)
from adnomaly_operator.names import LABEL_COMPONENT, LABEL_PIPELINE, LABEL_TIER, STRIMZI_CLUSTER_LABEL
from adnomaly_operator.render.autoscaling import KEDA_OPERATOR_PEER, lag_scaled
from adnomaly_operator.render.common import (
    CONTAINER_SECURITY,
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


POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}  # Strimzi picks the uid
OPERATOR_RESOURCES = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
KAFKA_RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
SCRAM_AUTH = {"type": "scram-sha-512"}


def kafka_clients(kp: KubePlan) -> list[str]:
    """The pipeline's components that talk to Kafka (plus the Flink job, as `features`)."""
    clients = [name for name, cp in sorted(kp.components.items()) if uses_kafka(cp.config)]
    return clients + ([FLINK_COMPONENT] if kp.features is not None else [])


def kafka_client_peers(kp: KubePlan) -> list[Obj]:
    """NetworkPolicy peers for the pods of the pipeline's Kafka clients."""
    components = [c for c in kafka_clients(kp) if c != FLINK_COMPONENT]
    peers: list[Obj] = []
    if components:
        peers.append({"podSelector": {
            "matchLabels": {LABEL_PIPELINE: kp.name, LABEL_TIER: "component"},
            "matchExpressions": [{"key": LABEL_COMPONENT, "operator": "In", "values": components}],
        }})
    if kp.features is not None:
        peers.append({"podSelector": {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_TIER: "flink"}}})
    return peers


def tls_listener_peers(kp: KubePlan) -> list[Obj]:
    """The TLS listener's clients: the pipeline's, and KEDA's operator when it scales a consumer by lag
    (it logs in as that component, over TLS: render/autoscaling.py)."""
    return kafka_client_peers(kp) + ([KEDA_OPERATOR_PEER] if lag_scaled(kp) else [])


def _listeners(kp: KubePlan) -> list[Obj]:
    """Both listeners authenticate; Strimzi's own NetworkPolicy for them admits only the pipeline's clients."""
    return [
        {"name": "plain", "port": KAFKA_PORT, "type": "internal", "tls": False, "authentication": SCRAM_AUTH,
         "networkPolicyPeers": kafka_client_peers(kp)},
        {"name": "tls", "port": KAFKA_TLS_PORT, "type": "internal", "tls": True, "authentication": SCRAM_AUTH,
         "networkPolicyPeers": tls_listener_peers(kp)},
    ]


def kafka_pod_labels(kp: KubePlan) -> dict[str, str]:
    """Labels the broker pods get through the node pool's pod template (what NetworkPolicies select)."""
    return {LABEL_PIPELINE: kp.name, LABEL_TIER: "kafka"}


def _kafka_user(kp: KubePlan, ctx: RenderContext, user: KafkaUserPlan) -> Desired:
    acls = strimzi_acls(user.acls)
    ku = obj(
        STRIMZI_API, "KafkaUser",
        metadata(kp, ctx, user.name, "kafka", labels={STRIMZI_CLUSTER_LABEL: kp.names.kafka}),
        spec={"authentication": SCRAM_AUTH, "authorization": {"type": "simple", "acls": acls}},
    )
    return Desired(ku, STAGE_TOPICS, status_key="users")


def render_kafka(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    managed = kp.pipeline.spec.kafka.effective_managed
    if managed is None:
        return []  # external Kafka: topics are its owner's, or the Admin API's with `manageTopics` (topics.py)
    names = kp.names
    cluster = {STRIMZI_CLUSTER_LABEL: names.kafka}
    kafka = obj(
        STRIMZI_API, "Kafka",
        metadata(kp, ctx, names.kafka, "kafka", annotations=KRAFT_ANNOTATIONS),
        spec={
            "kafka": {
                "version": managed.version,
                "listeners": _listeners(kp),
                "authorization": {"type": "simple"},
                "config": _broker_config(managed.replicas),
            },
            "entityOperator": {
                "topicOperator": {"resources": dict(OPERATOR_RESOURCES)},
                "userOperator": {"resources": dict(OPERATOR_RESOURCES)},
                "template": {
                    "pod": {"securityContext": POD_SECURITY},
                    "topicOperatorContainer": {"securityContext": CONTAINER_SECURITY},
                    "userOperatorContainer": {"securityContext": CONTAINER_SECURITY},
                },
            },
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
            "resources": dict(KAFKA_RESOURCES),
            "template": {
                "pod": {"metadata": {"labels": kafka_pod_labels(kp)}, "securityContext": POD_SECURITY},
                "kafkaContainer": {"securityContext": CONTAINER_SECURITY},
                "initContainer": {"securityContext": CONTAINER_SECURITY},
            },
        },
    )
    out = [
        Desired(kafka, STAGE_STORES, status_key="kafka"),
        Desired(pool, STAGE_STORES),
    ]
    for topic in kp.topics:  # the same set an external Kafka with `manageTopics` gets (topics.py)
        kt = obj(
            STRIMZI_API, "KafkaTopic",
            metadata(kp, ctx, topic.name, "kafka", labels=cluster),
            spec={"partitions": topic.partitions, "replicas": topic.replicas, "config": dict(topic.config)},
        )
        out.append(Desired(kt, STAGE_TOPICS, status_key="topics", retain=True))
    out += [_kafka_user(kp, ctx, user) for _, user in sorted(kp.kafka_users.items())]
    return out
