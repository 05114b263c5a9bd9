"""The data-plane components: one ConfigMap of rendered configs, and per component a Deployment,
Service and PodDisruptionBudget. Pure.

An autoscaled component's Deployment has no `replicas` when a scaler owns it (render/autoscaling.py).

Each Deployment mounts only its own key of the ConfigMap and carries that config's hash in its pod
template (`adnomaly.io/config-hash`), so a config change rolls exactly the components it affects.
Secrets reach the processes as `secretKeyRef` environment variables (names in `adnomaly.config.SecretEnv`).
"""

from __future__ import annotations

from typing import Any

from adnomaly.config import CONFIG_ENV
from adnomaly.plan import ComponentPlan

from adnomaly_operator.desired import COMPONENT_MODULES, HTTP_PORTS, INGEST_TOKENS_DIR, METRICS_PORT, KubePlan
from adnomaly_operator.names import (
    ANNOTATION_CONFIG_HASH,
    LABEL_METRICS,
    LABEL_PIPELINE,
    LABEL_TIER,
    selector_labels,
)
from adnomaly_operator.render.autoscaling import scaler_owns_replicas
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
    if kp.features is not None:  # the Flink job's SQL and options (adnomaly.features.sql.compile_job)
        data[config_key("features")] = kp.features.to_json().decode()
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
    # what the spec sets wins; the defaults fill the rest, so every pod keeps requests and a memory limit
    requests = {**DEFAULT_RESOURCES["requests"], **res.requests}
    # a memory request of its own without a limit: the limit is that request (never a limit below it)
    default_limits = {"memory": res.requests["memory"]} if "memory" in res.requests else DEFAULT_RESOURCES["limits"]
    return {"requests": requests, "limits": {**default_limits, **res.limits}}


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


def component_env(kp: KubePlan, component: str) -> list[Obj]:
    """Non-secret settings as values, secrets only as `secretKeyRef`s (never their values)."""
    plain = [{"name": var, "value": value} for var, value in sorted(kp.plain_env.get(component, {}).items())]
    return plain + [secret_env(var, ref) for var, ref in sorted(kp.secret_env.get(component, {}).items())]


def _deployment(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Obj:
    component = cp.name
    metrics_port = cp.config.metrics_port
    meta = metadata(kp, ctx, kp.names.component(component), component, tier="component")
    config_path = f"{CONFIG_DIR}/config.json"
    env = [{"name": CONFIG_ENV, "value": config_path}, *component_env(kp, component)]
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
    volumes = [
        {"name": "config", "configMap": {
            "name": kp.names.config_map,
            "items": [{"key": config_key(component), "path": "config.json"}],
        }},
        scratch_volume(),
    ]
    if component == "ingest" and kp.ingest_tokens is not None:
        # a directory mount (not subPath), so the kubelet brings a rotated Secret to the running pods
        volumes.append({"name": "ingest-tokens", "secret": {
            "secretName": kp.ingest_tokens.name, "items": [{"key": kp.ingest_tokens.key, "path": "tokens"}],
        }})
        container["volumeMounts"].append({"name": "ingest-tokens", "mountPath": INGEST_TOKENS_DIR, "readOnly": True})
    spec: Obj = {} if scaler_owns_replicas(cp, ctx) else {"replicas": cp.replicas}  # never fight a scaler
    return obj("apps/v1", "Deployment", meta, spec={
        **spec,
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
                "volumes": volumes,
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
        most = cp.autoscaling.max_replicas if cp.autoscaling is not None else cp.replicas
        if most >= 2:  # a budget for a single pod would only make evictions block or mean nothing
            out.append(_pdb(kp, ctx, cp))
    return out
