"""NetworkPolicies and, when the Prometheus Operator's CRD exists, a ServiceMonitor. Pure.

Default deny: every pod the pipeline runs (components, stores, the bucket Job, the Flink JobManager and
TaskManagers, the Kafka brokers — selected by `adnomaly.io/tier`) gets no ingress and no egress except
what a policy below allows:

- egress to cluster DNS for all;
- components → Kafka (if they use it), PostgreSQL, Redis, S3, each only when the component uses it (the
  secrets it is given say so) — to the managed store's pods, or to any address on the external service's port;
- the detector → its Alertmanager (any address, the URL's port) when it notifies;
- ingress from anywhere to the HTTP APIs (ingest, online features) and to the metrics port;
- Kafka: client listeners from the pipeline's Kafka clients (and the TLS listener from KEDA's operator
  when it scales a consumer by lag); broker ↔ broker; Strimzi's operators;
- Flink: JobManager ↔ TaskManagers on fixed ports, the JobManager's REST API from the Flink operator,
  the Kubernetes API (native mode creates TaskManager pods), Kafka and S3.

Entity-operator pods (Strimzi's) carry the pipeline label but no tier: Strimzi manages their access.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from adnomaly.config import SecretEnv

from adnomaly_operator.desired import (
    HTTP_PORTS,
    KAFKA_PORT,
    KAFKA_TLS_PORT,
    METRICS_PORT,
    MINIO_PORT,
    KubePlan,
)
from adnomaly_operator.names import (
    LABEL_COMPONENT,
    LABEL_METRICS,
    LABEL_PIPELINE,
    LABEL_TIER,
    STRIMZI_CLUSTER_LABEL,
)
from adnomaly_operator.render.autoscaling import KEDA_OPERATOR_PEER, lag_scaled
from adnomaly_operator.render.common import STAGE_BASE, Desired, Obj, RenderContext, metadata, obj
from adnomaly_operator.render.flink import FLINK_PORTS
from adnomaly_operator.render.kafka import kafka_client_peers, kafka_clients, kafka_pod_labels

NETPOL_API = "networking.k8s.io/v1"
POSTGRES_PORT = 5432
REDIS_PORT = 6379
KAFKA_CONTROL_PORT = 9090  # KRaft controllers
KAFKA_REPLICATION_PORT = 9091  # inter-broker replication; Strimzi's operators connect here too
KAFKA_AGENT_PORT = 8443  # the broker's agent: Strimzi's cluster operator reads broker state from it
KUBE_API_PORTS = (443, 6443)
FLINK_REST_PORT = FLINK_PORTS["rest.port"]
TIERS = ("component", "store", "job", "flink", "kafka")  # the pods the default deny covers
ANYWHERE: list[Obj] = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
FLINK_OPERATOR_PEER = {  # the Flink Kubernetes Operator, in whatever namespace it runs
    "namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "flink-kubernetes-operator"}},
}
STRIMZI_OPERATOR_PEER = {
    "namespaceSelector": {}, "podSelector": {"matchLabels": {"strimzi.io/kind": "cluster-operator"}},
}


def tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _pods(kp: KubePlan, tier: str, *components: str) -> Obj:
    selector: Obj = {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_TIER: tier}}
    if components:
        selector["matchExpressions"] = [{"key": LABEL_COMPONENT, "operator": "In", "values": sorted(components)}]
    return {"podSelector": selector}


def _policy(
    kp: KubePlan, ctx: RenderContext, role: str, selector: Obj, *, ingress: list[Obj] | None = None,
    egress: list[Obj] | None = None,
) -> Desired:
    spec: Obj = {"podSelector": selector, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return Desired(obj(NETPOL_API, "NetworkPolicy", metadata(kp, ctx, kp.names.network_policy(role), "network"),
                       spec=spec), STAGE_BASE)


def _url_port(url: str, default: int) -> int:
    parts = urlsplit(url if "//" in url else f"//{url}")
    return parts.port or (443 if parts.scheme == "https" else default)


def _kafka_ports(kp: KubePlan) -> list[int]:
    if kp.kafka_managed:
        return [KAFKA_PORT, KAFKA_TLS_PORT]
    return sorted({_url_port(server.strip(), KAFKA_PORT) for server in kp.kafka_bootstrap.split(",")})


def _kafka_peer(kp: KubePlan) -> list[Obj]:
    if kp.kafka_managed:
        return [{"podSelector": {"matchLabels": kafka_pod_labels(kp)}}]
    return ANYWHERE


def _s3_egress(kp: KubePlan) -> Obj | None:
    s3 = kp.stores.s3
    if s3 is None:
        return None
    if kp.stores.minio is not None:
        return {"to": [_pods(kp, "store", "minio")], "ports": tcp(MINIO_PORT)}
    return {"to": ANYWHERE, "ports": tcp(_url_port(s3.endpoint, 443) if s3.endpoint else 443)}


def _store_egress(kp: KubePlan, managed: bool, store: str, port: int) -> Obj:
    return {"to": [_pods(kp, "store", store)] if managed else ANYWHERE, "ports": tcp(port)}


def uses_kafka(kp: KubePlan, component: str) -> bool:
    return component in kafka_clients(kp)


def _component_egress(kp: KubePlan, component: str) -> list[Obj]:
    secrets = kp.secret_env.get(component, {})
    rules: list[Obj] = [{"to": [DNS_PEER], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]}]
    if uses_kafka(kp, component):
        rules.append({"to": _kafka_peer(kp), "ports": tcp(*_kafka_ports(kp))})
    if SecretEnv.POSTGRES_DSN in secrets:
        rules.append(_store_egress(kp, kp.stores.postgres is not None, "postgres", POSTGRES_PORT))
    if SecretEnv.REDIS_URL in secrets:
        rules.append(_store_egress(kp, kp.stores.redis is not None, "redis", REDIS_PORT))
    if component == "lake-sink" and (s3 := _s3_egress(kp)) is not None:
        rules.append(s3)
    if (url := notify_url(kp, component)) is not None:
        rules.append({"to": ANYWHERE, "ports": tcp(_url_port(url, 80))})
    tracing = kp.pipeline.spec.observability.tracing.otlp_endpoint
    if tracing:
        rules.append({"to": ANYWHERE, "ports": tcp(_url_port(tracing, 4317))})
    return rules


def notify_url(kp: KubePlan, component: str) -> str | None:
    planned = kp.components.get(component)
    section = planned.config.detector if planned is not None else None
    return section.notify.url if section is not None and section.notify is not None else None


def _components(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    out = []
    for component in sorted(kp.components):
        ingress: list[Obj] = [{"ports": tcp(METRICS_PORT)}]  # scrapes, from wherever Prometheus runs
        if component in HTTP_PORTS:
            ingress.append({"ports": tcp(HTTP_PORTS[component])})  # the API, for its clients
        selector = {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_TIER: "component", LABEL_COMPONENT: component}}
        out.append(_policy(kp, ctx, component, selector, ingress=ingress, egress=_component_egress(kp, component)))
    return out


def _stores(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    clients: dict[str, set[str]] = {"postgres": set(), "redis": set()}
    for component, secrets in kp.secret_env.items():
        if SecretEnv.POSTGRES_DSN in secrets:
            clients["postgres"].add(component)
        if SecretEnv.REDIS_URL in secrets:
            clients["redis"].add(component)
    out = []
    managed_stores = (("postgres", kp.stores.postgres, POSTGRES_PORT), ("redis", kp.stores.redis, REDIS_PORT))
    for store, managed, port in managed_stores:
        if managed is not None:
            peers = [_pods(kp, "component", *clients[store])] if clients[store] else []
            out.append(_policy(kp, ctx, store, _pods(kp, "store", store)["podSelector"],
                               ingress=[{"from": peers, "ports": tcp(port)}] if peers else [], egress=[]))
    if kp.stores.minio is not None:
        peers = [_pods(kp, "job", "minio")]
        if "lake-sink" in kp.components:
            peers.append(_pods(kp, "component", "lake-sink"))
        if kp.features is not None:
            peers.append(_pods(kp, "flink"))
        out.append(_policy(kp, ctx, "minio", _pods(kp, "store", "minio")["podSelector"],
                           ingress=[{"from": peers, "ports": tcp(MINIO_PORT)}], egress=[]))
        dns = {"to": [DNS_PEER], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]}
        out.append(_policy(kp, ctx, "minio-bucket", _pods(kp, "job", "minio")["podSelector"], ingress=[],
                           egress=[dns, {"to": [_pods(kp, "store", "minio")], "ports": tcp(MINIO_PORT)}]))
    return out


def _kafka(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    if not kp.kafka_managed:
        return []
    peers = kafka_client_peers(kp)
    brokers = {"podSelector": {"matchLabels": kafka_pod_labels(kp)}}
    entity_operator = {"podSelector": {"matchLabels": {
        STRIMZI_CLUSTER_LABEL: kp.names.kafka, "strimzi.io/name": f"{kp.names.kafka}-entity-operator",
    }}}
    internal = (KAFKA_CONTROL_PORT, KAFKA_REPLICATION_PORT, KAFKA_PORT, KAFKA_TLS_PORT)
    ingress = [
        {"from": [brokers], "ports": tcp(*internal)},  # inter-broker replication and KRaft controllers
        {"from": [STRIMZI_OPERATOR_PEER, entity_operator], "ports": tcp(KAFKA_REPLICATION_PORT)},
        {"from": [STRIMZI_OPERATOR_PEER], "ports": tcp(KAFKA_AGENT_PORT)},
    ]
    if peers:
        ingress.append({"from": peers, "ports": tcp(KAFKA_PORT, KAFKA_TLS_PORT)})
    if lag_scaled(kp):  # KEDA's operator reads the consumer groups' lag, over TLS
        ingress.append({"from": [KEDA_OPERATOR_PEER], "ports": tcp(KAFKA_TLS_PORT)})
    egress = [
        {"to": [DNS_PEER], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]},
        {"to": [brokers], "ports": tcp(*internal)},
    ]
    return [_policy(kp, ctx, "kafka", {"matchLabels": kafka_pod_labels(kp)}, ingress=ingress, egress=egress)]


def _flink(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    if kp.features is None:
        return []
    flink = _pods(kp, "flink")
    cluster_ports = tcp(*sorted(p for p in FLINK_PORTS.values() if p != FLINK_REST_PORT))
    egress = [
        {"to": [DNS_PEER], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]},
        {"to": [flink], "ports": cluster_ports + tcp(FLINK_REST_PORT)},
        {"to": ANYWHERE, "ports": tcp(*KUBE_API_PORTS)},  # native mode: TaskManager pods, HA ConfigMaps
        {"to": _kafka_peer(kp), "ports": tcp(*_kafka_ports(kp))},
    ]
    if (s3 := _s3_egress(kp)) is not None:
        egress.append(s3)
    ingress = [
        {"from": [flink], "ports": cluster_ports + tcp(FLINK_REST_PORT)},
        {"from": [FLINK_OPERATOR_PEER], "ports": tcp(FLINK_REST_PORT)},  # job status, savepoints
    ]
    return [_policy(kp, ctx, "flink", flink["podSelector"], ingress=ingress, egress=egress)]


def render_network(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    deny = {"matchLabels": {LABEL_PIPELINE: kp.name},
            "matchExpressions": [{"key": LABEL_TIER, "operator": "In", "values": list(TIERS)}]}
    out = [
        _policy(kp, ctx, "default-deny", deny, ingress=[], egress=[]),
        *_components(kp, ctx), *_stores(kp, ctx), *_kafka(kp, ctx), *_flink(kp, ctx),
    ]
    if ctx.service_monitor and kp.pipeline.spec.observability.metrics:
        monitor = obj("monitoring.coreos.com/v1", "ServiceMonitor", metadata(kp, ctx, kp.name, "metrics"), spec={
            "selector": {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_METRICS: "true"}},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        })
        out.append(Desired(monitor, STAGE_BASE))
    return out
