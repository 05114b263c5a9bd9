"""The resource kinds the operator reads and writes, and their REST paths. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from adnomaly.spec import API_GROUP, API_VERSION


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def base(self) -> str:
        return f"/api/{self.api_version}" if not self.group else f"/apis/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        parts = [self.base]
        if self.namespaced and namespace is not None:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


PIPELINE = Kind(f"{API_GROUP}/{API_VERSION}", "Pipeline", "pipelines")

OWNED_KINDS: tuple[Kind, ...] = (
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "Service", "services"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("apps/v1", "StatefulSet", "statefulsets"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    Kind("kafka.strimzi.io/v1", "Kafka", "kafkas"),
    Kind("kafka.strimzi.io/v1", "KafkaNodePool", "kafkanodepools"),
    Kind("kafka.strimzi.io/v1", "KafkaTopic", "kafkatopics"),
    Kind("kafka.strimzi.io/v1", "KafkaUser", "kafkausers"),
    Kind("flink.apache.org/v1beta1", "FlinkDeployment", "flinkdeployments"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    Kind("keda.sh/v1alpha1", "TriggerAuthentication", "triggerauthentications"),
)

BY_KIND: dict[str, Kind] = {k.kind: k for k in (*OWNED_KINDS, PIPELINE)}
EVENT = Kind("events.k8s.io/v1", "Event", "events")


def kind_of(kind: str) -> Kind:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise KeyError(f"the operator does not manage kind {kind}") from None
