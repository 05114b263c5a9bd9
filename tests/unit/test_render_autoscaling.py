"""Autoscaling on Kubernetes (render/autoscaling.py): KEDA ScaledObjects for the Kafka consumers, an HPA for
ingest, Deployments without `replicas` under a scaler, the Flink autoscaler. Pure."""

from __future__ import annotations

from typing import Any

from adnomaly.config import SecretEnv
from adnomaly.scaling import LagScaling
from adnomaly.spec import Pipeline, parse_pipeline
from adnomaly_operator.actions import Capabilities, plan_actions
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.render import Desired, Owner, RenderContext, render

NS = "team-a"
NAME = "shop"
UID = "uid-1"
FEATURES = {
    "features": [{"name": "traffic", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]}],
}
AUTOSCALED: dict[str, Any] = {
    **FEATURES,
    "kafka": {"topics": {"raw": {"partitions": 12, "retention": "1d"},
                         "features": {"partitions": 3, "retention": "1d"}}},
    "source": {"ingest": {"autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetCpuUtilization": 60}}},
    "components": {
        "processor": {"autoscaling": {"minReplicas": 2, "maxReplicas": 10, "lagThreshold": 5000,
                                      "scaleDownStabilization": "10m"}},
        "lakeSink": {"autoscaling": {}},
        "featureSink": {"replicas": 2},
    },
}
EXTERNAL_KAFKA = {"external": {"bootstrapServers": "kafka.example.com:9096", "securityProtocol": "SASL_SSL",
                               "credentialsSecretRef": {"name": "kafka-creds"}}}


def pipeline(spec: dict[str, Any]) -> Pipeline:
    return parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": NAME},
                           "spec": spec})


def rendered(spec: dict[str, Any] = AUTOSCALED, *, keda: bool = True) -> list[Desired]:
    return render(kube_plan(pipeline(spec), NS), RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline", NAME, UID),
                                                              keda=keda))


def of_kind(items: list[Desired], kind: str) -> dict[str, dict[str, Any]]:
    return {d.name: d.obj for d in items if d.kind == kind}


def test_a_scaled_object_per_lag_scaled_consumer_mirrors_adnomaly_scaling() -> None:
    items = rendered()
    scaled = of_kind(items, "ScaledObject")
    assert set(scaled) == {"shop-processor", "shop-lake-sink"}  # the feature sink has fixed replicas
    spec = scaled["shop-processor"]["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-processor"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 10)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka" and trigger["authenticationRef"] == {"name": "shop-processor"}
    meta = trigger["metadata"]
    assert (meta["consumerGroup"], meta["topic"], meta["lagThreshold"]) == ("shop-processor", "shop-raw", "5000")
    # the settings under which KEDA + the HPA compute what adnomaly.scaling.decide does
    assert (meta["allowIdleConsumers"], meta["limitToPartitionsWithLag"], meta["offsetResetPolicy"]) == (
        "false", "true", "earliest")
    assert all(isinstance(v, str) for v in meta.values())  # KEDA's trigger metadata is a string map
    lake = scaled["shop-lake-sink"]["spec"]
    assert (lake["minReplicaCount"], lake["maxReplicaCount"]) == (1, 12)  # default max: the raw partitions
    assert lake["triggers"][0]["metadata"]["consumerGroup"] == "shop-lake-sink"


def test_keda_logs_in_to_the_managed_kafka_as_the_component_itself_over_tls() -> None:
    items = rendered()
    meta = of_kind(items, "ScaledObject")["shop-processor"]["spec"]["triggers"][0]["metadata"]
    assert meta["bootstrapServers"] == f"shop-kafka-bootstrap.{NS}.svc:9093"  # the TLS listener
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    auth = of_kind(items, "TriggerAuthentication")["shop-processor"]["spec"]
    # the processor's own KafkaUser: its password Secret, its user name from its own container
    assert auth["secretTargetRef"] == [
        {"parameter": "password", "name": "shop-processor-kafka", "key": "password"},
        {"parameter": "ca", "name": "shop-cluster-ca-cert", "key": "ca.crt"},
    ]
    assert auth["env"] == [{"parameter": "username", "name": SecretEnv.KAFKA_USERNAME, "containerName": "processor"}]
    (dep,) = [d for n, d in of_kind(items, "Deployment").items() if n == "shop-processor"]
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[SecretEnv.KAFKA_USERNAME]["value"] == "shop-processor-kafka"
    users = of_kind(items, "KafkaUser")
    assert "shop-processor-kafka" in users and "shop-lake-sink-kafka" in users
    assert of_kind(items, "TriggerAuthentication")["shop-lake-sink"]["spec"]["secretTargetRef"][0]["name"] == (
        "shop-lake-sink-kafka")  # each consumer its own user, never a shared or broader one


def test_keda_uses_the_external_kafkas_credentials_secret() -> None:
    items = rendered({**AUTOSCALED, "kafka": {**AUTOSCALED["kafka"], **EXTERNAL_KAFKA}})
    meta = of_kind(items, "ScaledObject")["shop-processor"]["spec"]["triggers"][0]["metadata"]
    assert meta["bootstrapServers"] == "kafka.example.com:9096"
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    auth = of_kind(items, "TriggerAuthentication")["shop-processor"]["spec"]
    assert auth == {"secretTargetRef": [
        {"parameter": "username", "name": "kafka-creds", "key": "username"},
        {"parameter": "password", "name": "kafka-creds", "key": "password"},
    ]}
    plain = rendered({**AUTOSCALED, "kafka": {"external": {"bootstrapServers": "k:9092"}}})
    trigger = of_kind(plain, "ScaledObject")["shop-processor"]["spec"]["triggers"][0]
    assert "authenticationRef" not in trigger and "sasl" not in trigger["metadata"]
    assert "tls" not in trigger["metadata"] and not of_kind(plain, "TriggerAuthentication")


def test_no_credential_value_is_rendered_into_the_scalers() -> None:
    non_secret = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "offsetResetPolicy",
                  "allowIdleConsumers", "limitToPartitionsWithLag", "sasl", "tls"}
    for spec in (AUTOSCALED, {**AUTOSCALED, "kafka": {**AUTOSCALED["kafka"], **EXTERNAL_KAFKA}}):
        items = rendered(spec)
        for scaled in of_kind(items, "ScaledObject").values():
            assert set(scaled["spec"]["triggers"][0]["metadata"]) <= non_secret
        for auth in of_kind(items, "TriggerAuthentication").values():
            assert set(auth["spec"]) <= {"secretTargetRef", "env"}  # references only, never values
            assert all(set(ref) == {"parameter", "name", "key"} for ref in auth["spec"]["secretTargetRef"])


def test_a_deployment_under_a_scaler_has_no_replicas_field() -> None:
    deployments = of_kind(rendered(), "Deployment")
    assert "replicas" not in deployments["shop-processor"]["spec"]
    assert "replicas" not in deployments["shop-lake-sink"]["spec"]
    assert "replicas" not in deployments["shop-ingest"]["spec"]  # the HPA's
    assert deployments["shop-feature-sink"]["spec"]["replicas"] == 2  # not autoscaled: the operator's
    assert deployments["shop-generator"]["spec"]["replicas"] == 1


def test_without_keda_the_consumers_keep_min_replicas_and_the_pipeline_says_why() -> None:
    items = rendered(keda=False)
    deployments = of_kind(items, "Deployment")
    assert deployments["shop-processor"]["spec"]["replicas"] == 2
    assert deployments["shop-lake-sink"]["spec"]["replicas"] == 1
    assert "replicas" not in deployments["shop-ingest"]["spec"]  # an HPA needs no CRD
    actions = plan_actions(items, {}, owner_uid=UID, deletion_policy="Retain",
                           capabilities=Capabilities(keda=False))
    assert not {d.kind for d in actions.applies + actions.creates} & {"ScaledObject", "TriggerAuthentication"}
    (problem,) = [p for p in actions.problems if p.reason == "MissingCRD"]
    assert "KEDA" in problem.message and "minReplicas" in problem.message
    with_keda = plan_actions(rendered(), {}, owner_uid=UID, deletion_policy="Retain")
    assert not with_keda.problems


def test_keda_absence_changes_only_the_lag_scaled_deployments() -> None:
    a = {(d.kind, d.name): d.hash for d in rendered()}
    b = {(d.kind, d.name): d.hash for d in rendered(keda=False)}
    changed = {key for key in a if a[key] != b[key]}
    assert changed == {("Deployment", "shop-processor"), ("Deployment", "shop-lake-sink")}
    fixed = {**AUTOSCALED, "components": {}, "source": {}}
    assert [d.obj for d in rendered(fixed)] == [d.obj for d in rendered(fixed, keda=False)]


def test_ingest_gets_a_cpu_hpa() -> None:
    (hpa,) = of_kind(rendered(), "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"]["name"] == "shop-ingest" and (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    (dep,) = [d for n, d in of_kind(rendered(), "Deployment").items() if n == "shop-ingest"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]  # utilization needs it


def test_budgets_follow_the_most_replicas_a_scaler_may_run() -> None:
    budgets = of_kind(rendered(), "PodDisruptionBudget")
    assert {"shop-processor", "shop-lake-sink", "shop-ingest", "shop-feature-sink"} <= set(budgets)
    one = {**AUTOSCALED, "components": {"processor": {"autoscaling": {"maxReplicas": 1}}}}
    assert "shop-processor" not in of_kind(rendered(one), "PodDisruptionBudget")


def test_keda_may_reach_the_managed_kafkas_tls_listener_only_when_it_scales_something() -> None:
    peer = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}}
    for spec, expected in ((AUTOSCALED, True), ({**FEATURES}, False)):
        items = rendered(spec)
        (kafka,) = of_kind(items, "Kafka").values()
        listeners = {entry["name"]: entry for entry in kafka["spec"]["kafka"]["listeners"]}
        assert (peer in listeners["tls"]["networkPolicyPeers"]) is expected
        assert peer not in listeners["plain"]["networkPolicyPeers"]
        policy = of_kind(items, "NetworkPolicy")["shop-kafka"]["spec"]
        keda_rules = [rule for rule in policy["ingress"] if peer in rule.get("from", [])]
        assert keda_rules == ([{"from": [peer], "ports": [{"protocol": "TCP", "port": 9093}]}] if expected else [])


def test_the_plan_caps_and_both_backends_share_it() -> None:
    spec = {**AUTOSCALED, "kafka": {"topics": {"raw": {"partitions": 4, "retention": "1d"}}}}
    kp = kube_plan(pipeline(spec), NS)
    scaling = kp.components["processor"].autoscaling
    assert isinstance(scaling, LagScaling) and scaling.max_replicas == 4
    assert of_kind(rendered(spec), "ScaledObject")["shop-processor"]["spec"]["maxReplicaCount"] == 4
    assert any("maxReplicas capped at 4" in message for reason, message in kp.notes if reason == "ReplicasCapped")


def test_the_flink_autoscaler_is_passed_through_capped_at_the_raw_partitions() -> None:
    spec = {**AUTOSCALED, "components": {"features": {"autoscaler": {"maxParallelism": 64, "targetUtilization": 0.6,
                                                                      "stabilization": "2m"}}}}
    items = rendered(spec)
    conf = of_kind(items, "FlinkDeployment")["shop-features"]["spec"]["flinkConfiguration"]
    assert conf["job.autoscaler.enabled"] == "true"
    assert conf["job.autoscaler.vertex.max-parallelism"] == "12"  # the raw topic's partitions, not 64
    assert conf["job.autoscaler.target.utilization"] == "0.6"
    assert conf["job.autoscaler.stabilization.interval"] == "2m"
    assert conf["job.autoscaler.metrics.window"] == "10m"
    assert "pipeline.max-parallelism" not in conf  # would break restoring the job's savepoints
    assert all(isinstance(v, str) for v in conf.values())
    kp = kube_plan(pipeline(spec), NS)
    assert any("maxParallelism capped at 12" in message for reason, message in kp.notes if reason == "ReplicasCapped")
    fixed = of_kind(rendered(), "FlinkDeployment")["shop-features"]["spec"]["flinkConfiguration"]
    assert not any(key.startswith("job.autoscaler.") for key in fixed)


def test_the_flink_job_starts_within_the_autoscalers_bound() -> None:
    spec = {**AUTOSCALED, "components": {"features": {"autoscaler": {"maxParallelism": 2}}}}
    flink = of_kind(rendered(spec), "FlinkDeployment")["shop-features"]["spec"]
    assert flink["job"]["parallelism"] == 2
    assert of_kind(rendered(), "FlinkDeployment")["shop-features"]["spec"]["job"]["parallelism"] == 4


def test_scalers_are_owned_by_the_pipeline_and_labelled_like_everything_else() -> None:
    scalers = [d for d in rendered() if d.kind in ("ScaledObject", "TriggerAuthentication", "HorizontalPodAutoscaler")]
    assert len(scalers) == 5  # processor and lake sink: ScaledObject + TriggerAuthentication; ingest: HPA
    for item in scalers:
        meta = item.obj["metadata"]
        assert meta["namespace"] == NS and meta["labels"]["adnomaly.io/pipeline"] == NAME
        assert [ref["uid"] for ref in meta["ownerReferences"]] == [UID]  # deleted with the Pipeline
        assert item.hash  # the no-op check compares it


def test_target_lag_seconds_reach_keda_as_records_at_the_stated_rate() -> None:
    # KEDA's Kafka scaler counts records and measures no rate: 20 s at 1500 records/s per replica
    spec = {**AUTOSCALED, "components": {"processor": {"autoscaling": {
        "targetLagSeconds": 20, "replicaRecordsPerSecond": 1500}}}}
    scaled = of_kind(rendered(spec), "ScaledObject")["shop-processor"]
    assert scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "30000"
