"""NetworkPolicies (stores reachable only from the pipeline's own pods) and, when the Prometheus
Operator's CRD exists, a ServiceMonitor for the components' metrics. Pure."""

from __future__ import annotations

from adnomaly_operator.desired import HTTP_PORTS, METRICS_PORT, KubePlan
from adnomaly_operator.names import LABEL_METRICS, LABEL_PIPELINE, LABEL_TIER
from adnomaly_operator.render.common import STAGE_BASE, Desired, Obj, RenderContext, metadata, obj

NETPOL_API = "networking.k8s.io/v1"


def _policy(kp: KubePlan, ctx: RenderContext, name: str, tier: str, ingress: list[Obj]) -> Desired:
    policy = obj(NETPOL_API, "NetworkPolicy", metadata(kp, ctx, name, "network"), spec={
        "podSelector": {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_TIER: tier}},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    })
    return Desired(policy, STAGE_BASE)


def render_network(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    own_pods = [{"podSelector": {"matchLabels": {LABEL_PIPELINE: kp.name}}}]
    out = [
        # components: metrics scrapes and the HTTP APIs (ingest, online features) from anywhere
        _policy(kp, ctx, kp.names.network_policy_components, "component", [
            {"ports": [{"protocol": "TCP", "port": port} for port in (METRICS_PORT, *sorted(HTTP_PORTS.values()))]},
        ]),
    ]
    store_ports = []
    if kp.stores.postgres is not None:
        store_ports.append({"protocol": "TCP", "port": 5432})
    if kp.stores.minio is not None:
        store_ports.append({"protocol": "TCP", "port": 9000})
    if kp.stores.redis is not None:
        store_ports.append({"protocol": "TCP", "port": 6379})
    if store_ports:
        rules = [{"from": own_pods, "ports": store_ports}]
        out.append(_policy(kp, ctx, kp.names.network_policy_stores, "store", rules))
    if ctx.service_monitor and kp.pipeline.spec.observability.metrics:
        monitor = obj("monitoring.coreos.com/v1", "ServiceMonitor", metadata(kp, ctx, kp.name, "metrics"), spec={
            "selector": {"matchLabels": {LABEL_PIPELINE: kp.name, LABEL_METRICS: "true"}},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        })
        out.append(Desired(monitor, STAGE_BASE))
    return out
