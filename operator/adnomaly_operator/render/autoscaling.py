"""Scalers for autoscaled components: KEDA for the Kafka consumers, a HorizontalPodAutoscaler for ingest. Pure.

The decision itself is `adnomaly.scaling` (the local backend runs it); on Kubernetes the ecosystem runs
it: a KEDA `ScaledObject` with a Kafka trigger on the component's consumer group and topic, whose
settings make KEDA's scaler and the HPA behind it compute exactly what `adnomaly.scaling.decide` does
(`allowIdleConsumers: false`, `limitToPartitionsWithLag: true`, `offsetResetPolicy: earliest`, the
spec's scale-down stabilization window). A scaler owns the Deployment's `replicas`: the Deployment the
operator applies then has no `replicas` field (render/components.py), so the two never fight over it.

KEDA logs in to Kafka as the component itself — never as a broader user — through a
`TriggerAuthentication`: on the managed Kafka, the component's SCRAM password from its KafkaUser's
Secret (`secretTargetRef`), its user name from the component's own container environment (Strimzi's
Secret holds only the password), and the cluster CA for the TLS listener (KEDA runs in another
namespace: its traffic is encrypted); on an external Kafka, the credentials Secret the spec references.
No credential is ever written into the ScaledObject.

Without KEDA's CRDs the ScaledObjects are still rendered: the reconciler drops them and says so
(`MissingCRD`, the same path as a missing Strimzi or Flink operator), and the Deployments keep
`minReplicas` (`RenderContext.keda`).
"""

from __future__ import annotations

from adnomaly.config import SecretEnv
from adnomaly.plan import ComponentPlan
from adnomaly.scaling import CpuScaling, LagScaling

from adnomaly_operator.desired import KAFKA_TLS_PORT, KubePlan
from adnomaly_operator.render.common import STAGE_APPS, Desired, Obj, RenderContext, metadata, obj

KEDA_API = "keda.sh/v1alpha1"
HPA_API = "autoscaling/v2"
SCRAM_SHA_512 = "scram_sha512"  # KEDA's name for SCRAM-SHA-512, what every pipeline client uses
# The KEDA operator pods (they run the scalers, so they connect to Kafka), in whatever namespace KEDA runs.
KEDA_OPERATOR_PEER: Obj = {
    "namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}},
}


def lag_scaled(kp: KubePlan) -> list[ComponentPlan]:
    """The components a KEDA ScaledObject scales (lag-based autoscaling), by name."""
    return [cp for _, cp in sorted(kp.components.items()) if isinstance(cp.autoscaling, LagScaling)]


def scaler_owns_replicas(cp: ComponentPlan, ctx: RenderContext) -> bool:
    """Whether a scaler sets this component's replicas (so the operator must not): an HPA always can;
    KEDA only where its CRDs are installed."""
    if isinstance(cp.autoscaling, CpuScaling):
        return True
    return isinstance(cp.autoscaling, LagScaling) and ctx.keda


def keda_bootstrap(kp: KubePlan) -> str:
    """Where KEDA reaches Kafka: the managed Kafka's TLS listener, or the external bootstrap servers."""
    if kp.kafka_managed:
        return f"{kp.names.kafka_bootstrap_service}.{kp.namespace}.svc:{KAFKA_TLS_PORT}"
    return kp.kafka_bootstrap


def _security(kp: KubePlan) -> tuple[bool, bool]:
    """(SASL, TLS) as the pipeline's Kafka needs them."""
    if kp.kafka_managed:
        return True, True
    external = kp.pipeline.spec.kafka.external
    protocol = external.security_protocol if external is not None else "PLAINTEXT"
    return protocol.startswith("SASL_"), protocol.endswith("SSL")


def _secret_ref(parameter: str, name: str, key: str) -> Obj:
    return {"parameter": parameter, "name": name, "key": key}


def _trigger_auth(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Desired | None:
    """The component's own Kafka login for KEDA; None when the Kafka asks for none."""
    spec: Obj = {}
    user = kp.kafka_users.get(cp.name)
    if user is not None:  # the managed Kafka: the component's KafkaUser
        spec["env"] = [{"parameter": "username", "name": SecretEnv.KAFKA_USERNAME, "containerName": cp.name}]
        spec["secretTargetRef"] = [
            _secret_ref("password", user.password.name, user.password.key),
            _secret_ref("ca", kp.names.kafka_cluster_ca, "ca.crt"),
        ]
    elif kp.stores.kafka_credentials is not None and _security(kp)[0]:
        username, password = kp.stores.kafka_credentials
        spec["secretTargetRef"] = [
            _secret_ref("username", username.name, username.key), _secret_ref("password", password.name, password.key),
        ]
    if not spec:
        return None
    meta = metadata(kp, ctx, kp.names.component(cp.name), cp.name)
    return Desired(obj(KEDA_API, "TriggerAuthentication", meta, spec=spec), STAGE_APPS)


def _behavior(stabilization_s: float) -> Obj:
    return {"scaleDown": {"stabilizationWindowSeconds": round(stabilization_s)}}


def _scaled_object(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan, auth: Desired | None) -> Desired:
    scaling = cp.autoscaling
    assert isinstance(scaling, LagScaling)
    sasl, tls = _security(kp)
    trigger_meta = {
        "bootstrapServers": keda_bootstrap(kp),
        "consumerGroup": scaling.consumer_group,
        "topic": scaling.topic,
        "lagThreshold": str(scaling.lag_threshold),
        "offsetResetPolicy": "earliest",  # the components start a new group from the earliest offset
        "allowIdleConsumers": "false",
        "limitToPartitionsWithLag": "true",
    }
    if sasl:
        trigger_meta["sasl"] = SCRAM_SHA_512
    if tls:
        trigger_meta["tls"] = "enable"
    trigger: Obj = {"type": "kafka", "name": "lag", "metadata": trigger_meta}
    if auth is not None:
        trigger["authenticationRef"] = {"name": auth.name}
    meta = metadata(kp, ctx, kp.names.component(cp.name), cp.name)
    return Desired(obj(KEDA_API, "ScaledObject", meta, spec={
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": kp.names.component(cp.name)},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(scaling.scale_down_stabilization_s)}},
        "triggers": [trigger],
    }), STAGE_APPS)


def _hpa(kp: KubePlan, ctx: RenderContext, cp: ComponentPlan) -> Desired:
    scaling = cp.autoscaling
    assert isinstance(scaling, CpuScaling)
    meta = metadata(kp, ctx, kp.names.component(cp.name), cp.name)
    return Desired(obj(HPA_API, "HorizontalPodAutoscaler", meta, spec={
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": kp.names.component(cp.name)},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
        }}],
        "behavior": _behavior(scaling.scale_down_stabilization_s),
    }), STAGE_APPS)


def render_autoscaling(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    out: list[Desired] = []
    for name in sorted(kp.components):
        cp = kp.components[name]
        if isinstance(cp.autoscaling, CpuScaling):
            out.append(_hpa(kp, ctx, cp))
        elif isinstance(cp.autoscaling, LagScaling):
            auth = _trigger_auth(kp, ctx, cp)
            out += [*([auth] if auth is not None else []), _scaled_object(kp, ctx, cp, auth)]
    return out
