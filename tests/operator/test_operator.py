"""The operator against a real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok).

The operator runs as users run it (`adnomaly-operator`, KUBECONFIG) and is driven with `kubectl apply`.
Strimzi's and the Flink operator's CRDs are installed, so the API server validates every Kafka,
KafkaNodePool, KafkaTopic and FlinkDeployment the operator writes. Their operators are simulated by
status patches (`adnomaly_operator.simulate`, or kubectl `--subresource=status` where the order matters);
the PersistentVolume controller binds volumes from the controller-manager's host-path provisioner. Each
test gets a fresh namespace and its own operator process.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from adnomaly.services.kube import KubeControlPlane
from adnomaly.spec import parse_pipeline
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.live import owns_field
from adnomaly_operator.names import ANNOTATION_CONFIG_HASH, ANNOTATION_HASH, LABEL_PIPELINE
from adnomaly_operator.render import Desired, Owner, RenderContext, render
from adnomaly_operator.resources import kind_of
from adnomaly_operator.simulate import (
    SimulatorThread,
    flink_ready_status,
    strimzi_ready_status,
    strimzi_user_status,
)
from adnomaly_operator.testing import OperatorProcess

from tests.operator.operator_harness import (
    REPO,
    THIRD_PARTY_CRDS,
    apply,
    condition,
    delete_pipelines,
    get,
    install_crds,
    items,
    patch_status,
    pipeline_doc,
    status,
    wait_for,
    wait_phase,
)
from tests.operator.spec_cases import INVALID_SPECS, document

pytestmark = [pytest.mark.operator, pytest.mark.slow]

EXAMPLE = REPO / "manifests" / "pipeline.yaml"
FEATURES_EXAMPLE = REPO / "manifests" / "examples" / "clickstream-ad-fraud.yaml"
READY_TIMEOUT = 180.0


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(kube: KubeControlPlane) -> Iterator[KubeControlPlane]:
    install_crds(kube)
    yield kube


@pytest.fixture
def simulated(cluster: KubeControlPlane, namespace: str) -> Iterator[SimulatorThread]:
    """Strimzi and the Flink operator, simulated in this namespace (volumes are the control plane's own)."""
    with SimulatorThread(cluster.kubeconfig, namespace=namespace) as sim:
        yield sim


# --- helpers --------------------------------------------------------------------------------------


def resource(kind: str) -> str:
    k = kind_of(kind)
    return f"{k.plural}.{k.group}" if k.group else k.plural


def expected_objects(kube: KubeControlPlane, ns: str, name: str) -> list[Desired]:
    """What render() wants for the live Pipeline (with its real uid and the API server's defaults)."""
    body = get(kube, ns, "pipeline", name)
    pipeline = parse_pipeline({"apiVersion": body["apiVersion"], "kind": body["kind"],
                               "metadata": {"name": name}, "spec": body["spec"]})
    owner = Owner(body["apiVersion"], "Pipeline", name, body["metadata"]["uid"])
    return render(kube_plan(pipeline, ns), RenderContext(owner))


def config_hashes(kube: KubeControlPlane, ns: str, pipeline: str) -> dict[str, tuple[str, int]]:
    out = {}
    for dep in items(kube, ns, "deployments", f"{LABEL_PIPELINE}={pipeline}"):
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        out[dep["metadata"]["name"]] = (annotations[ANNOTATION_CONFIG_HASH], dep["metadata"]["generation"])
    return out


def owned_names(kube: KubeControlPlane, ns: str, pipeline: str, kinds: str) -> set[str]:
    return {f"{o['kind']}/{o['metadata']['name']}" for o in items(kube, ns, kinds, f"{LABEL_PIPELINE}={pipeline}")}


def deployments_ready(st: dict[str, Any]) -> bool:
    components = st.get("components", {})
    keys = ("generator", "ingest", "processor", "detector", "lakeSink", "featureSink")
    return all(k in components and "/" in components[k] and len(set(components[k].split("/"))) == 1 for k in keys)


# --- a. every owned object is created and accepted -------------------------------------------------


def test_apply_creates_every_owned_object_and_the_api_server_accepts_them(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    assert "created" in apply(cluster, namespace, EXAMPLE)
    assert "created" in apply(cluster, namespace, FEATURES_EXAMPLE)
    for name in ("clickstream", "ad-fraud"):
        st = wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
        uid = get(cluster, namespace, "pipeline", name)["metadata"]["uid"]
        expected = expected_objects(cluster, namespace, name)
        kinds = {d.kind for d in expected}
        assert {"Kafka", "KafkaNodePool", "KafkaTopic", "StatefulSet", "Deployment", "Secret", "ConfigMap",
                "Service", "NetworkPolicy", "Job"} <= kinds
        if name == "ad-fraud":  # features (Flink, Redis, Role for the job) and replicated components (PDBs)
            assert {"FlinkDeployment", "PodDisruptionBudget", "Role", "RoleBinding"} <= kinds
        for d in expected:
            live = get(cluster, namespace, resource(d.kind), d.name)
            assert live is not None, f"{d.kind}/{d.name} missing"
            assert live["metadata"]["annotations"][ANNOTATION_HASH] == d.hash, f"{d.kind}/{d.name} differs"
            assert [r["uid"] for r in live["metadata"]["ownerReferences"]] == [uid]
        assert condition(st, "Degraded")["status"] == "False"
        ready, total = st["readyComponents"].split("/")
        assert ready == total and int(total) == len({d.status_key for d in expected if d.status_key})
        assert st["observedGeneration"] == 1
    assert_no_secret_leaks(cluster, namespace, operator)


SECRET_KEYS = ("password", "accessKey", "secretKey", "tokens")  # the random parts (the rest derive from them)


def assert_no_secret_leaks(kube: KubeControlPlane, ns: str, operator: OperatorProcess) -> None:
    """Generated secret values — the operator's (database, MinIO, Redis, ingest tokens) and Strimzi's Kafka
    user passwords — appear nowhere but in their Secrets: not in the operator's log, ConfigMaps, the
    Pipeline status, Events, pod templates, pods or any other object the pipeline owns."""
    values: set[str] = set()
    kafka_users = 0
    for secret in items(kube, ns, "secrets"):
        if secret.get("type") == "kubernetes.io/service-account-token":
            continue
        kafka_users += (secret["metadata"].get("labels") or {}).get("strimzi.io/kind") == "KafkaUser"
        for key, encoded in (secret.get("data") or {}).items():
            if key in SECRET_KEYS:
                value = base64.b64decode(encoded).decode()
                values |= {value, encoded}
                values |= {token for token in value.replace(",", "\n").split() if len(token) >= 8}
    assert values and kafka_users, f"generated secrets found: {len(values)}, Kafka user secrets: {kafka_users}"
    public = json.dumps([
        items(kube, ns, "configmaps"), items(kube, ns, "pipelines"), items(kube, ns, "events.events.k8s.io"),
        items(kube, ns, "events"), items(kube, ns, "deployments,statefulsets,jobs,flinkdeployments"),
        items(kube, ns, "pods"), items(kube, ns, "kafkas.kafka.strimzi.io,kafkausers.kafka.strimzi.io"),
        items(kube, ns, "services,networkpolicies,serviceaccounts,roles"),
    ]) + operator.process.log_path.read_text()
    leaked = {v for v in values if v in public}
    assert not leaked, f"{len(leaked)} secret value(s) leaked"


# --- b. readiness follows the owned objects' real status, in order ---------------------------------


def test_bring_up_is_ordered_and_ready_follows_strimzi_and_flink_status(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    name = "ad-fraud"
    apply(cluster, namespace, FEATURES_EXAMPLE)
    wait_for(lambda: status(cluster, namespace, name).get("components", {}).get("postgres") == "1/1",
             READY_TIMEOUT, "PostgreSQL to be ready")
    # Its claim was bound by the real PersistentVolume controller to a volume the controller-manager's
    # host-path provisioner made: no stand-in binds volumes.
    claim = get(cluster, namespace, "pvc", f"data-{name}-postgres-0")
    assert claim["status"]["phase"] == "Bound", claim["status"]
    volume = get(cluster, namespace, "pv", claim["spec"]["volumeName"])  # cluster-scoped
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubernetes.io/host-path"
    st = status(cluster, namespace, name)
    assert st["phase"] == "Pending" and condition(st, "Ready")["reason"] == "WaitingForStores"
    assert st["components"]["kafka"] == "NotReady"
    assert items(cluster, namespace, "kafkatopics") == [], "topics before Kafka is ready"

    kafka = get(cluster, namespace, "kafkas.kafka.strimzi.io", name)
    patch_status(cluster, namespace, "kafkas.kafka.strimzi.io", name, strimzi_ready_status(kafka))
    topics = wait_for(lambda: len(items(cluster, namespace, "kafkatopics")) == 4 and
                      items(cluster, namespace, "kafkatopics"), 60, "four KafkaTopics")
    time.sleep(2)
    assert items(cluster, namespace, "deployments") == [], "components before the topics are ready"
    assert items(cluster, namespace, "flinkdeployments") == []
    assert condition(status(cluster, namespace, name), "Ready")["reason"] == "WaitingForTopics"

    for topic in topics:
        patch_status(cluster, namespace, "kafkatopics.kafka.strimzi.io", topic["metadata"]["name"],
                     strimzi_ready_status(topic))
    time.sleep(2)
    assert items(cluster, namespace, "deployments") == [], "components before their Kafka users are ready"
    users = items(cluster, namespace, "kafkausers.kafka.strimzi.io")
    assert {u["metadata"]["name"] for u in users} >= {f"{name}-processor-kafka", f"{name}-features-kafka"}
    for user in users:
        patch_status(cluster, namespace, "kafkausers.kafka.strimzi.io", user["metadata"]["name"],
                     strimzi_user_status(user))
    wait_for(lambda: deployments_ready(status(cluster, namespace, name)), READY_TIMEOUT,
             "every Deployment to be available")
    st = status(cluster, namespace, name)
    assert st["phase"] == "Progressing", "Ready before the Flink job runs"
    assert st["components"]["flink"] != "RUNNING"

    flink = get(cluster, namespace, "flinkdeployments.flink.apache.org", f"{name}-features")
    patch_status(cluster, namespace, "flinkdeployments.flink.apache.org", f"{name}-features",
                 flink_ready_status(flink))
    st = wait_phase(cluster, namespace, name, "Ready", 60)
    ready = condition(st, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "AllComponentsReady"
    assert st["components"]["flink"] == "RUNNING" and st["components"]["topics"] == "4/4"
    assert condition(st, "Progressing")["status"] == "False"
    events = items(cluster, namespace, "events.events.k8s.io")
    notes = [e.get("note", "") for e in events if e.get("reason") == "AllComponentsReady"
             and e["regarding"]["name"] == name]
    assert notes and "-> Ready" in notes[-1]


# --- c. rollouts: a config change rolls only the affected Deployments ------------------------------


def test_config_change_rolls_only_the_affected_deployments(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    name = "ad-fraud"
    apply(cluster, namespace, FEATURES_EXAMPLE)
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    before = config_hashes(cluster, namespace, name)
    assert len(before) == 7  # generator, ingest, processor, lake sink, feature sink, online API, detector

    cluster.kubectl("patch", "pipeline", name, f"--namespace={namespace}", "--type=merge",
                    "-p", json.dumps({"spec": {"source": {"generator": {"eventsPerSecond": 321}}}}))
    wait_for(lambda: config_hashes(cluster, namespace, name)[f"{name}-generator"] != before[f"{name}-generator"],
             60, "the generator to roll")
    time.sleep(7)  # two drift checks: nothing else may move
    after = config_hashes(cluster, namespace, name)
    changed = {dep for dep in before if before[dep] != after[dep]}
    assert changed == {f"{name}-generator"}
    config = get(cluster, namespace, "configmap", f"{name}-config")["data"]
    assert json.loads(config["generator.json"])["generator"]["events_per_second"] == 321

    cluster.kubectl("patch", "pipeline", name, f"--namespace={namespace}", "--type=merge",
                    "-p", json.dumps({"spec": {"components": {"processor": {"batchSize": 777}}}}))
    wait_for(lambda: config_hashes(cluster, namespace, name)[f"{name}-processor"] != after[f"{name}-processor"],
             60, "the processor to roll")
    time.sleep(4)
    final = config_hashes(cluster, namespace, name)
    assert {dep for dep in after if after[dep] != final[dep]} == {f"{name}-processor"}
    st = wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    assert st["observedGeneration"] == 3


# --- d. partitions only grow ----------------------------------------------------------------------


def test_a_partition_decrease_is_refused_and_if_it_slips_through_degrades_and_applies_nothing(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    name = "events"
    topics = {"raw": {"partitions": 6, "retention": "7d"}}
    apply(cluster, namespace, pipeline_doc(name, {"kafka": {"topics": topics}}))
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)

    refused = cluster.kubectl("patch", "pipeline", name, f"--namespace={namespace}", "--type=merge", "-p",
                              json.dumps({"spec": {"kafka": {"topics": {"raw": {"partitions": 3}}}}}), check=False)
    assert refused.returncode != 0
    assert "spec.kafka.topics.raw.partitions" in refused.stderr and "may not decrease" in refused.stderr

    # Bypass the transition rule: a fresh object (delete, then create with fewer partitions).
    cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s")
    wait_for(lambda: not items(cluster, namespace, "deployments", f"{LABEL_PIPELINE}={name}"), 60,
             "the old objects to be collected")
    apply(cluster, namespace, pipeline_doc(name, {"kafka": {"topics": {"raw": {"partitions": 3, "retention": "7d"}}}}))
    st = wait_phase(cluster, namespace, name, "Degraded", 60)
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "PartitionDecrease"
    assert f"{name}-raw" in degraded["message"] and "6" in degraded["message"]
    writes = operator.quiet_writes()
    time.sleep(7)  # drift checks come and go: still nothing
    assert operator.writes() == writes
    raw = get(cluster, namespace, "kafkatopics.kafka.strimzi.io", f"{name}-raw")
    assert raw["spec"]["partitions"] == 6 and not raw["metadata"].get("ownerReferences")
    assert owned_names(cluster, namespace, name, "deployments,configmaps,kafkas,statefulsets") == set()

    topics["raw"]["partitions"] = 8
    apply(cluster, namespace, pipeline_doc(name, {"kafka": {"topics": topics}}))
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    raw = get(cluster, namespace, "kafkatopics.kafka.strimzi.io", f"{name}-raw")
    uid = get(cluster, namespace, "pipeline", name)["metadata"]["uid"]
    assert raw["spec"]["partitions"] == 8 and raw["metadata"]["ownerReferences"][0]["uid"] == uid


# --- e. drift comes back --------------------------------------------------------------------------


def test_drifted_objects_come_back(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    name = "clickstream"
    apply(cluster, namespace, EXAMPLE)
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    deployment = f"{name}-processor"
    old_uid = get(cluster, namespace, "deployment", deployment)["metadata"]["uid"]

    cluster.kubectl("delete", "deployment", deployment, f"--namespace={namespace}")
    wait_for(lambda: (d := get(cluster, namespace, "deployment", deployment)) and d["metadata"]["uid"] != old_uid,
             30, "the deleted Deployment to come back")

    cluster.kubectl("scale", "deployment", deployment, f"--namespace={namespace}", "--replicas=4")
    wait_for(lambda: get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == 1, 30,
             "the planned replica count to come back")

    config = get(cluster, namespace, "configmap", f"{name}-config")["data"]["processor.json"]
    cluster.kubectl("patch", "configmap", f"{name}-config", f"--namespace={namespace}", "--type=merge",
                    "-p", json.dumps({"data": {"processor.json": "{}"}}))
    wait_for(lambda: get(cluster, namespace, "configmap", f"{name}-config")["data"]["processor.json"] == config,
             30, "the edited ConfigMap to be restored")
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)


# --- f. deletion policies -------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_leaves_exactly_what_the_policy_says(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread, policy: str
) -> None:
    name = "ad-fraud"
    doc = next(d for d in yaml.safe_load_all(FEATURES_EXAMPLE.read_text()) if d)
    doc["spec"]["deletionPolicy"] = policy
    apply(cluster, namespace, doc)
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    uid = get(cluster, namespace, "pipeline", name)["metadata"]["uid"]
    claims = wait_for(lambda: len(pvcs := items(cluster, namespace, "pvc", f"{LABEL_PIPELINE}={name}")) == 3 and pvcs,
                      60, "three store volumes")
    assert {c["metadata"]["name"] for c in claims} == {f"data-{name}-{s}-0" for s in ("postgres", "minio", "redis")}

    cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s")
    workloads = ("deployments,statefulsets,jobs,services,configmaps,kafkas,kafkanodepools,flinkdeployments,"
                 "networkpolicies")
    wait_for(lambda: not owned_names(cluster, namespace, name, workloads), 120, "owned workloads to be collected")
    topics = "kafkatopics.kafka.strimzi.io"
    if policy == "Retain":
        time.sleep(5)  # give the garbage collector every chance to (wrongly) take more
        kept = items(cluster, namespace, f"{topics},secrets,pvc", f"{LABEL_PIPELINE}={name}")
        assert sorted(f"{o['kind']}/{o['metadata']['name']}" for o in kept) == sorted(
            [f"KafkaTopic/{name}-{r}" for r in ("raw", "dlq", "features", "anomalies")]
            + [f"Secret/{name}-{s}" for s in ("postgres", "minio", "redis", "ingest-tokens")]
            + [f"PersistentVolumeClaim/data-{name}-{s}-0" for s in ("postgres", "minio", "redis")]
        )
        for obj in kept:
            assert uid not in {r.get("uid") for r in obj["metadata"].get("ownerReferences") or ()}, obj["kind"]
    else:
        wait_for(lambda: not items(cluster, namespace, f"{topics},secrets,pvc", f"{LABEL_PIPELINE}={name}"), 120,
                 "topics, secrets and volumes to be deleted too")


def test_the_finalizer_goes_even_when_the_owned_crds_are_gone(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    name = "orphaned"
    apply(cluster, namespace, pipeline_doc(name))
    wait_for(lambda: get(cluster, namespace, "kafkas.kafka.strimzi.io", name), 60, "the Kafka object")
    strimzi = sorted(str(p) for p in (REPO.parent / "shared" / "third_party" / "crds").glob("strimzi-*"))
    try:
        cluster.kubectl("delete", *[f"--filename={p}" for p in strimzi], "--timeout=60s", timeout=120)
        cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s", timeout=90)
        assert get(cluster, namespace, "pipeline", name) is None
    finally:
        cluster.install_crds(strimzi)


def test_a_spec_only_the_model_can_check_fails_with_its_message(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    custom = {"type": "object", "properties": {"ts": {"type": "string"}, "region": {"type": "string"}}}
    spec = {"events": {"jsonSchema": custom, "timeField": "ts"}, "source": {"generator": {"enabled": False}},
            "features": [{"name": "f", "dimensions": ["nope"], "metrics": [{"name": "n", "agg": "count"}]}]}
    apply(cluster, namespace, pipeline_doc("custom", spec))  # the CRD cannot see into a free-form schema
    st = wait_phase(cluster, namespace, "custom", "Failed", 30)
    failed = condition(st, "Ready")
    assert failed["reason"] == "InvalidSpec" and "dimension `nope`" in failed["message"]
    assert owned_names(cluster, namespace, "custom", "configmaps,kafkas,deployments,secrets") == set()


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com", "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor",
                  "listKind": "ServiceMonitorList"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


def test_a_service_monitor_appears_when_the_prometheus_operator_crd_does(
    cluster: KubeControlPlane, namespace: str, tmp_path: Path, simulated: SimulatorThread
) -> None:
    op = OperatorProcess(cluster, tmp_path, namespace=namespace, extra_args=["--discovery-interval", "1"]).start()
    try:
        apply(cluster, namespace, EXAMPLE)
        wait_phase(cluster, namespace, "clickstream", "Ready", READY_TIMEOUT)
        assert get(cluster, namespace, "servicemonitors.monitoring.coreos.com", "clickstream") is None
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
        try:
            monitor = wait_for(lambda: get(cluster, namespace, "servicemonitors.monitoring.coreos.com",
                                           "clickstream"), 60, "a ServiceMonitor")
            assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
            assert monitor["spec"]["selector"]["matchLabels"][LABEL_PIPELINE] == "clickstream"
        finally:
            cluster.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--timeout=60s")
        delete_pipelines(cluster, namespace)
    finally:
        op.stop()


# --- g. invalid specs are refused by the API server -----------------------------------------------


@pytest.mark.parametrize(("case", "spec", "api_field", "model_fragment"), INVALID_SPECS,
                         ids=[c[0] for c in INVALID_SPECS])
def test_the_api_server_refuses_invalid_specs_naming_the_field(
    cluster: KubeControlPlane, namespace: str, case: str, spec: dict[str, Any], api_field: str, model_fragment: str
) -> None:
    done = cluster.kubectl("apply", f"--namespace={namespace}", "--validate=strict", "-f", "-",
                           stdin=json.dumps(document(case, spec)), check=False)
    assert done.returncode != 0, f"{case} was accepted"
    assert api_field in done.stderr, done.stderr


def test_unknown_fields_are_refused_under_strict_validation_and_examples_accepted(
    cluster: KubeControlPlane, namespace: str
) -> None:
    doc = pipeline_doc("typo", {"kafka": {"topics": {"raw": {"partitions": 3, "retention": "7d"}}, "topcis": {}}})
    done = cluster.kubectl("apply", f"--namespace={namespace}", "--validate=strict", "-f", "-",
                           stdin=json.dumps(doc), check=False)
    assert done.returncode != 0 and 'unknown field "spec.kafka.topcis"' in done.stderr
    examples = [p for p in sorted((REPO / "manifests").rglob("*.yaml")) if "\nkind: Pipeline" in p.read_text()]
    assert len(examples) >= 5
    for path in examples:
        cluster.kubectl("apply", f"--namespace={namespace}", "--validate=strict", "--dry-run=server", "-f", str(path))


# --- h. restarts, and the no-op reconcile ----------------------------------------------------------


def test_restarting_the_operator_mid_reconcile_converges(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    names = [f"p{i}" for i in range(4)]
    for name in names:
        apply(cluster, namespace, pipeline_doc(name))
    wait_for(lambda: items(cluster, namespace, "kafkas"), 30, "the first writes")
    operator.kill()  # SIGKILL in the middle of bring-up
    time.sleep(1)
    operator.start()
    for name in names:
        wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
        secrets = owned_names(cluster, namespace, name, "secrets")
        assert secrets == {f"Secret/{name}-{s}" for s in ("postgres", "minio", "ingest-tokens")}
    passwords = {s["metadata"]["name"]: s["data"] for s in items(cluster, namespace, "secrets", LABEL_PIPELINE)}

    operator.restart()  # a clean restart of a converged operator writes nothing
    time.sleep(8)
    assert operator.writes() == 0
    assert operator.total("adnomaly_operator_reconciles_total", result="noop") >= len(names)
    assert {s["metadata"]["name"]: s["data"] for s in items(cluster, namespace, "secrets", LABEL_PIPELINE)} == passwords


def test_a_noop_reconcile_writes_nothing(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    apply(cluster, namespace, FEATURES_EXAMPLE)
    wait_phase(cluster, namespace, "ad-fraud", "Ready", READY_TIMEOUT)
    writes = operator.quiet_writes()
    objects = "deployments,statefulsets,services,configmaps,secrets,kafkas,kafkatopics,flinkdeployments,pipelines"
    versions = {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in items(cluster, namespace, objects)}
    noops = operator.total("adnomaly_operator_reconciles_total", result="noop")
    time.sleep(10)  # the drift check runs every 3 s
    assert operator.total("adnomaly_operator_reconciles_total", result="noop") >= noops + 3
    assert operator.writes() == writes
    after = {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
             for o in items(cluster, namespace, objects)}
    assert after == versions


# --- i. autoscaling: a scaler owns the replica count ----------------------------------------------

SCALED = {
    "kafka": {"topics": {"raw": {"partitions": 6, "retention": "1d"}}},
    "source": {"ingest": {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}},
    "components": {"processor": {"autoscaling": {"minReplicas": 1, "maxReplicas": 6, "lagThreshold": 100}}},
}


def object_writes(operator: OperatorProcess) -> float:
    """The operator's writes to anything but the Pipeline's status and Events (which report progress)."""
    return sum(v for (name, labels), v in operator.metrics().items()
               if name == "adnomaly_operator_api_request_seconds_count" and dict(labels)["verb"] != "get"
               and dict(labels)["resource"] not in ("pipelines/status", "events"))


def owns_replicas(kube: KubeControlPlane, ns: str, deployment: str, manager: str = "adnomaly-operator") -> bool:
    """Whether `manager` holds the Deployment's `spec.replicas` (server-side apply field ownership)."""
    body = json.loads(kube.kubectl("get", "deployment", deployment, f"--namespace={ns}", "-o", "json",
                                   "--show-managed-fields").stdout)
    entries = body["metadata"]["managedFields"]
    assert any(entry.get("manager") == "adnomaly-operator" for entry in entries)  # the view has them
    return owns_field(body["metadata"], "spec", "replicas", manager=manager)


def test_the_operator_writes_nothing_while_a_scaler_changes_replicas(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, simulated: SimulatorThread
) -> None:
    name = "scaled"
    apply(cluster, namespace, pipeline_doc(name, SCALED))
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    deployment = f"{name}-processor"
    scaled = get(cluster, namespace, "scaledobjects.keda.sh", deployment)
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment  # KEDA's CRDs are installed here
    assert get(cluster, namespace, "triggerauthentications.keda.sh", deployment) is not None
    assert not owns_replicas(cluster, namespace, deployment)
    # ingest: the control plane's own HPA controller (no metrics here: it only reports, in its status)
    hpa = get(cluster, namespace, "horizontalpodautoscalers.autoscaling", f"{name}-ingest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-ingest"
    assert not owns_replicas(cluster, namespace, f"{name}-ingest")

    writes = operator.quiet_writes()
    objects = object_writes(operator)
    noops = operator.total("adnomaly_operator_reconciles_total", result="noop")
    for replicas in (4, 2, 6):  # the test plays KEDA's HPA: the scale subresource, as the HPA writes it
        cluster.kubectl("scale", "deployment", deployment, f"--namespace={namespace}", f"--replicas={replicas}")
        wait_for(lambda r=replicas: status(cluster, namespace, name).get("components", {}).get("processor")
                 == f"{r}/{r}", 60, f"the processor at {replicas} replicas")
        time.sleep(4)  # more than a drift check (3 s)
        assert get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == replicas
    assert object_writes(operator) == objects, "the operator wrote to an object while only replicas changed"
    assert operator.total("adnomaly_operator_reconciles_total", result="noop") >= noops + 3
    assert operator.writes() > writes  # only the status followed (processor 4/4, 2/2, 6/6)

    # A real change re-applies the Deployment (a new config hash): the scaler's count survives it.
    cluster.kubectl("patch", "pipeline", name, f"--namespace={namespace}", "--type=merge",
                    "-p", json.dumps({"spec": {"components": {"processor": {"batchSize": 777}}}}))
    wait_for(lambda: object_writes(operator) > objects, 30, "the operator to apply the change")
    wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
    assert get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == 6

    # Autoscaling off: the operator owns the count again and sets it.
    cluster.kubectl("patch", "pipeline", name, f"--namespace={namespace}", "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/spec/components/processor/autoscaling"},
        {"op": "add", "path": "/spec/components/processor/replicas", "value": 3},
    ]))
    wait_for(lambda: get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == 3, 30,
             "the fixed replica count")
    assert owns_replicas(cluster, namespace, deployment)
    wait_for(lambda: get(cluster, namespace, "scaledobjects.keda.sh", deployment) is None, 30,
             "the ScaledObject to go")
    assert get(cluster, namespace, "triggerauthentications.keda.sh", deployment) is None


KEDA_CRDS = sorted(THIRD_PARTY_CRDS.glob("keda-*.yaml"))


def test_without_keda_the_pipeline_says_so_and_keeps_min_replicas_until_keda_arrives(
    cluster: KubeControlPlane, namespace: str, tmp_path: Path, simulated: SimulatorThread
) -> None:
    assert len(KEDA_CRDS) == 2
    cluster.kubectl("delete", "crd", "scaledobjects.keda.sh", "triggerauthentications.keda.sh", "--timeout=60s")
    op = OperatorProcess(cluster, tmp_path, namespace=namespace, extra_args=["--discovery-interval", "1"])
    name = "scaled"
    deployment = f"{name}-processor"
    spec = {**SCALED, "components": {"processor": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}}
    try:
        op.start()
        apply(cluster, namespace, pipeline_doc(name, spec))
        # everything comes up (at minReplicas, the operator's own count); the pipeline says what it lacks
        def all_ready() -> bool:
            ready, total = (status(cluster, namespace, name).get("readyComponents") or "0/1").split("/")
            return ready == total

        wait_for(all_ready, READY_TIMEOUT, "every component ready", interval=1)
        st = status(cluster, namespace, name)
        assert st["phase"] == "Degraded" and st["components"]["processor"] == "2/2", st
        ready = condition(st, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "MissingCRD" and "KEDA" in ready["message"]
        assert get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == 2
        assert owns_replicas(cluster, namespace, deployment)
    finally:
        cluster.install_crds(KEDA_CRDS)  # the module's other tests expect KEDA's CRDs
    try:
        wait_for(lambda: get(cluster, namespace, "scaledobjects.keda.sh", deployment), 60, "the ScaledObject")
        wait_phase(cluster, namespace, name, "Ready", READY_TIMEOUT)
        assert not owns_replicas(cluster, namespace, deployment)  # handed over to the scaler...
        assert owns_replicas(cluster, namespace, deployment, manager="adnomaly-operator-handover")
        # ...without a reset: a field its only owner drops would fall back to its default (1)
        assert get(cluster, namespace, "deployment", deployment)["spec"]["replicas"] == 2
        cluster.kubectl("scale", "deployment", deployment, f"--namespace={namespace}", "--replicas=5")  # "KEDA"
        assert not owns_replicas(cluster, namespace, deployment, manager="adnomaly-operator-handover")
        delete_pipelines(cluster, namespace)
    finally:
        op.stop()
