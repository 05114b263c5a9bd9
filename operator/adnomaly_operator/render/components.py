"""The data-plane components: one ConfigMap of rendered configs, and per component a Deployment,
Service and PodDisruptionBudget. Pure.

Each Deployment mounts only its own key of the ConfigMap and carries that config's hash in its pod
template (`adnomaly.io/config-hash`), so a config change rolls exactly the components it affects.
Secrets reach the processes as `secretKeyRef` environment variables (names in `adnomaly.config.SecretEnv`).
"""

from __future__ import annotations

from typing import Any

from adnomaly.config import CONFIG_ENV
from adnomaly.plan import ComponentPlan

from adnomaly_operator.desired import COMPONENT_MODULES, HTTP_PORTS, METRICS_PORT, KubePlan
from adnomaly_operator.names import (
    ANNOTATION_CONFIG_HASH,
    LABEL_METRICS,
    LABEL_PIPELINE,
    LABEL_TIER,
    selector_labels,
)
from adnomaly_operator.render.common import (
    CONTAINER_SECURITY,
    POD_SECURITY,
    STAGE_APPS,
    STAGE_BASE,
    Desired,
    Obj,
    RenderContext,
    metadata,
    obj,
    scratch_volume,
    secret_env,
)

CONFIG_DIR = "/etc/adnomaly"
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def config_key(component: str) -> str:
    return f"{component}.json"


def render_config_map(kp: KubePlan, ctx: RenderContext) -> Desired:
    data = {config_key(name): cp.config.to_json() for name, cp in sorted(kp.components.items())}
    if kp.features is not None:
        data[config_key("features")] = kp.features.to_json()
    cm = obj("v1", "ConfigMap", metadata(kp, ctx, kp.names.config_map, "config"), data=data)
    return Desired(cm, STAGE_BASE)


def _resources(kp: KubePlan, component: str) -> Obj:
    spec = kp.pipeline.spec.components
    section = {
        "processor": spec.processor, "detector": spec.detector, "lake-sink": spec.lake_sink,
        "feature-sink": spec.feature_sink,
    }.get(component)
    res = section.resources if section is not None else None
    if res is None:
        return DEFAULT_RESOURCES
    out: Obj = {}
    if res.requests:
        out["requests"] = dict(res.requests)
    if res.limits:
        out["limits"] = dict(res.limits)
    return out


def _probes(component: str, metrics_port: int | None) -> Obj:
    if component in HTTP_PORTS:
        return {
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6,
            },
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        }
    if metrics_port is None:
        return {}  # no port to probe: liveness is the process itself
    return {
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6,
        },
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
    }


def _ports(component: str, metrics_port: int | None) -> list[Obj]:
    ports: list[Obj] = []
    if component in HTTP_PORTS:
        ports.append({"name": "http", "containerPort": HTTP_PORTS[component]})
    if metrics_port is not None:
        ports.append({"name": "metrics", "containerPort": metrics_port})
    return ports


def _deployment(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Obj:
    component = cp.name
    metrics_port = cp.config.metrics_port
    meta = metadata(kp, ctx, kp.names.component(component), component, tier="component")
    config_path = f"{CONFIG_DIR}/config.json"
    env: list[Obj] = [{"name": CONFIG_ENV, "value": config_path}]
    env += [secret_env(var, ref) for var, ref in sorted(kp.secret_env.get(component, {}).items())]
    container: dict[str, Any] = {
        "name": component,
        "image": ctx.images.component,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", COMPONENT_MODULES[component], "--config", config_path],
        "env": env,
        "ports": _ports(component, metrics_port),
        "resources": _resources(kp, component),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        **_probes(component, metrics_port),
    }
    if not container["ports"]:
        del container["ports"]
    return obj("apps/v1", "Deployment", meta, spec={
        "replicas": cp.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector_labels(kp.name, component)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": meta["labels"],
                "annotations": {ANNOTATION_CONFIG_HASH: cp.config_hash},
            },
            "spec": {
                "serviceAccountName": kp.names.components_service_account,
                "automountServiceAccountToken": False,
                "securityContext": POD_SECURITY,
                "terminationGracePeriodSeconds": 60,  # components drain on SIGTERM
                "containers": [container],
                "volumes": [
                    {"name": "config", "configMap": {
                        "name": kp.names.config_map,
                        "items": [{"key": config_key(component), "path": "config.json"}],
                    }},
                    scratch_volume(),
                ],
            },
        },
    })


def _api_service(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Desired:
    """A ClusterIP Service for a component serving an HTTP API (ingest, online features)."""
    svc = obj("v1", "Service", metadata(kp, ctx, kp.names.component(cp.name), cp.name, tier="component"),
              spec={"selector": selector_labels(kp.name, cp.name),
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
    return Desired(svc, STAGE_BASE)


def _metrics_service(kp: KubePlan, ctx: RenderContext) -> Desired:
    """One headless Service over every component pod's metrics port, for scraping (a ServiceMonitor
    selects it): no cluster IP to allocate, one object instead of one per component."""
    meta = metadata(kp, ctx, kp.names.metrics_service, "metrics", tier="component", labels={LABEL_METRICS: "true"})
    svc = obj("v1", "Service", meta, spec={
        "clusterIP": "None",
        "selector": {LABEL_PIPELINE: kp.name, LABEL_TIER: "component"},
        "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
    })
    return Desired(svc, STAGE_BASE)


def _pdb(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Desired:
    pdb = obj("policy/v1", "PodDisruptionBudget", metadata(kp, ctx, kp.names.component(cp.name), cp.name), spec={
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector_labels(kp.name, cp.name)},
    })
    return Desired(pdb, STAGE_BASE)


def render_components(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    sa = obj("v1", "ServiceAccount", metadata(kp, ctx, kp.names.components_service_account, "components"),
             automountServiceAccountToken=False)
    out = [Desired(sa, STAGE_BASE), render_config_map(kp, ctx)]
    if kp.pipeline.spec.observability.metrics:
        out.append(_metrics_service(kp, ctx))
    for name in sorted(kp.components):
        cp = kp.components[name]
        out.append(Desired(_deployment(kp, ctx, cp), STAGE_APPS, status_key=name))
        if cp.name in HTTP_PORTS:
            out.append(_api_service(kp, ctx, cp))
        if cp.replicas >= 2:  # a budget for a single pod would only make evictions block or mean nothing
            out.append(_pdb(kp, ctx, cp))
    return out
