"""Names and labels of everything the operator creates for one Pipeline. Pure.

Every object name derives from the Pipeline name (at most 40 characters, a DNS label), so several
pipelines share a namespace without clashes and `kubectl get all -l adnomaly.io/pipeline=NAME` finds
one pipeline's objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

FIELD_MANAGER = "adnomaly-operator"
# Holds an autoscaled Deployment's `replicas` for the moment the operator lets go of it (reconcile.py).
HANDOVER_MANAGER = "adnomaly-operator-handover"
FINALIZER = "adnomaly.io/finalizer"

LABEL_PIPELINE = "adnomaly.io/pipeline"
LABEL_TIER = "adnomaly.io/tier"  # component | store | job
LABEL_METRICS = "adnomaly.io/metrics"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = FIELD_MANAGER

ANNOTATION_HASH = "adnomaly.io/applied-hash"  # hash of what the operator last applied to this object
ANNOTATION_CONFIG_HASH = "adnomaly.io/config-hash"  # on pod templates: rolls pods when their config changes

STRIMZI_CLUSTER_LABEL = "strimzi.io/cluster"


def short_digest(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Names:
    pipeline: str

    @property
    def kafka(self) -> str:
        return self.pipeline

    @property
    def node_pool(self) -> str:
        # Strimzi names broker pods `<cluster>-<pool>-<id>`; keep that a DNS label (<= 63 characters).
        name = f"{self.pipeline}-dual"
        return name if len(self.pipeline) + 1 + len(name) + 5 <= 63 else f"dual-{short_digest(self.pipeline)}"

    @property
    def kafka_bootstrap_service(self) -> str:
        return f"{self.kafka}-kafka-bootstrap"

    def kafka_user(self, component: str) -> str:
        """A component's KafkaUser, its SCRAM user name and the Secret Strimzi writes its password to."""
        return f"{self.pipeline}-{component}-kafka"

    @property
    def kafka_cluster_ca(self) -> str:
        """Strimzi's Secret with the cluster CA certificate (`ca.crt`), for clients of the TLS listener."""
        return f"{self.kafka}-cluster-ca-cert"

    def topic(self, role: str) -> str:
        return f"{self.pipeline}-{role}"

    @property
    def feast_config_map(self) -> str:
        return f"{self.pipeline}-feast"

    @property
    def config_map(self) -> str:
        return f"{self.pipeline}-config"

    def component(self, component: str) -> str:
        return f"{self.pipeline}-{component}"

    @property
    def metrics_service(self) -> str:
        return f"{self.pipeline}-metrics"

    @property
    def components_service_account(self) -> str:
        return f"{self.pipeline}-components"

    @property
    def postgres(self) -> str:
        return f"{self.pipeline}-postgres"

    @property
    def minio(self) -> str:
        return f"{self.pipeline}-minio"

    @property
    def redis(self) -> str:
        return f"{self.pipeline}-redis"

    @property
    def bucket_job(self) -> str:
        return f"{self.pipeline}-minio-bucket"

    @property
    def ingest_tokens(self) -> str:
        return f"{self.pipeline}-ingest-tokens"

    @property
    def flink(self) -> str:
        return f"{self.pipeline}-features"

    @property
    def flink_service_account(self) -> str:
        return f"{self.pipeline}-flink"

    def network_policy(self, role: str) -> str:
        return f"{self.pipeline}-{role}"


def pipeline_labels(pipeline: str, component: str, tier: str | None = None) -> dict[str, str]:
    labels = {
        LABEL_NAME: "adnomaly",
        LABEL_INSTANCE: pipeline,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: "adnomaly",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PIPELINE: pipeline,
    }
    if tier is not None:
        labels[LABEL_TIER] = tier
    return labels


def selector_labels(pipeline: str, component: str) -> dict[str, str]:
    return {LABEL_PIPELINE: pipeline, LABEL_COMPONENT: component}
