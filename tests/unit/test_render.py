"""render(kube_plan) → the objects one Pipeline wants: pure, complete, safe."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from adnomaly.config import SecretEnv
from adnomaly.spec import Pipeline, load_pipeline, parse_pipeline
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.names import ANNOTATION_CONFIG_HASH, ANNOTATION_HASH, LABEL_PIPELINE
from adnomaly_operator.reconcile import generate_secret_data
from adnomaly_operator.render import Desired, Owner, RenderContext, render
from adnomaly_operator.render.common import STAGE_APPS, STAGE_STORES, STAGE_TOPICS

REPO = Path(__file__).resolve().parents[2]
NS = "team-a"
OWNER = Owner("adnomaly.io/v1alpha1", "Pipeline", "clickstream", "uid-1234")


def pipeline(name: str = "clickstream", **spec: Any) -> Pipeline:
    return parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
                           "spec": spec})


def rendered(p: Pipeline, **ctx: Any) -> dict[tuple[str, str], Desired]:
    owner = Owner(OWNER.api_version, OWNER.kind, p.name, OWNER.uid)
    out = render(kube_plan(p, NS), RenderContext(owner, **ctx))
    return {(d.kind, d.name): d for d in out}


def objects_of(items: dict[tuple[str, str], Desired], kind: str) -> dict[str, dict[str, Any]]:
    return {name: d.obj for (k, name), d in items.items() if k == kind}


FEATURES = {
    "features": [{
        "name": "traffic", "dimensions": ["geo"], "window": {"type": "hopping", "size": "5m", "slide": "1m"},
        "metrics": [{"name": "ctr", "agg": "avg", "field": "CTR"}],
    }],
    "detection": {"detectors": [{"name": "spike", "feature": "traffic", "metric": "ctr", "robustZScore": {}}]},
}


def test_render_is_pure_and_deterministic() -> None:
    p = load_pipeline(REPO / "manifests" / "examples" / "clickstream-ad-fraud.yaml")
    first, second = rendered(p), rendered(p)
    assert [d.obj for d in first.values()] == [d.obj for d in second.values()]
    assert all(d.hash == second[key].hash for key, d in first.items())


def test_every_object_is_owned_labelled_and_hashed() -> None:
    items = rendered(pipeline(**FEATURES))
    for (kind, name), d in items.items():
        meta = d.obj["metadata"]
        assert meta["namespace"] == NS, (kind, name)
        assert meta["labels"][LABEL_PIPELINE] == "clickstream"
        assert meta["ownerReferences"] == [OWNER.reference()], (kind, name)
        assert len(meta["annotations"][ANNOTATION_HASH]) == 16
        assert len(name) <= 63


def test_the_hash_changes_exactly_when_the_object_does() -> None:
    a = rendered(pipeline())
    b = rendered(pipeline(source={"generator": {"eventsPerSecond": 5}}))
    changed = {key for key in a if a[key].hash != b[key].hash}
    assert changed == {("ConfigMap", "clickstream-config"), ("Deployment", "clickstream-generator")}


def test_kafka_is_kraft_with_a_dual_role_node_pool_and_one_topic_per_role() -> None:
    items = rendered(pipeline(kafka={"managed": {"replicas": 3, "storage": {"size": "50Gi"}},
                                     "topics": {"raw": {"partitions": 12, "retention": "7d"}}}))
    kafka = objects_of(items, "Kafka")["clickstream"]
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert kafka["spec"]["kafka"]["listeners"][0]["port"] == 9092
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    (pool,) = objects_of(items, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "clickstream"
    assert pool["spec"]["replicas"] == 3 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    (volume,) = pool["spec"]["storage"]["volumes"]
    assert volume["type"] == "persistent-claim" and volume["size"] == "50Gi" and volume["deleteClaim"] is False
    topics = objects_of(items, "KafkaTopic")
    assert sorted(topics) == [f"clickstream-{r}" for r in ("anomalies", "dlq", "features", "raw")]
    raw = topics["clickstream-raw"]
    assert raw["metadata"]["labels"]["strimzi.io/cluster"] == "clickstream"
    assert raw["spec"]["partitions"] == 12 and raw["spec"]["replicas"] == 3
    assert raw["spec"]["config"]["retention.ms"] == str(7 * 86400 * 1000)
    raw_desired = items[("KafkaTopic", "clickstream-raw")]
    assert raw_desired.retain and raw_desired.stage == STAGE_TOPICS


def test_external_stores_render_no_store_and_reference_the_users_secrets() -> None:
    items = rendered(pipeline(
        kafka={"external": {"bootstrapServers": "kafka.example:9093", "securityProtocol": "SASL_SSL",
                            "credentialsSecretRef": {"name": "kafka-creds"}}},
        storage={"postgres": {"external": {"dsnSecretRef": {"name": "pg", "key": "url"}}}},
        lake={"uri": "file:///data/lake"},
        source={"ingest": {"authSecretRef": {"name": "tokens"}}},
    ))
    kinds = {kind for kind, _ in items}
    assert not kinds & {"Kafka", "KafkaNodePool", "KafkaTopic", "StatefulSet", "Job", "Secret"}
    processor = objects_of(items, "Deployment")["clickstream-processor"]
    env = {e["name"]: e for e in processor["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[SecretEnv.POSTGRES_DSN]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}
    assert env[SecretEnv.KAFKA_PASSWORD]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds", "key": "password"}
    ingest = objects_of(items, "Deployment")["clickstream-ingest"]
    ingest_pod = ingest["spec"]["template"]["spec"]
    ingest_env = {e["name"]: e for e in ingest_pod["containers"][0]["env"]}
    assert ingest_env[SecretEnv.INGEST_TOKENS_FILE]["value"] == "/var/run/secrets/adnomaly/ingest/tokens"
    assert {"name": "ingest-tokens", "secret": {"secretName": "tokens", "items": [{"key": "tokens", "path": "tokens"}]}
            } in ingest_pod["volumes"]
    config = json.loads(objects_of(items, "ConfigMap")["clickstream-config"]["data"]["processor.json"])
    assert config["kafka"]["bootstrap_servers"] == "kafka.example:9093"
    assert config["kafka"]["security_protocol"] == "SASL_SSL"


def test_managed_stores_are_statefulsets_with_generated_secrets_and_no_secret_values() -> None:
    items = rendered(pipeline(**FEATURES))
    stores = sorted(objects_of(items, "StatefulSet"))
    assert stores == ["clickstream-minio", "clickstream-postgres", "clickstream-redis"]
    secrets = {name: d for (kind, name), d in items.items() if kind == "Secret"}
    assert sorted(secrets) == ["clickstream-ingest-tokens", "clickstream-minio", "clickstream-postgres",
                               "clickstream-redis"]
    for d in secrets.values():
        assert d.recipe is not None and d.retain
        assert "data" not in d.obj and "stringData" not in d.obj  # contents are made once, outside render
    bucket_job = objects_of(items, "Job")["clickstream-minio-bucket"]
    command = bucket_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == "minio/adnomaly-data"
    redis = objects_of(items, "StatefulSet")["clickstream-redis"]
    assert redis["spec"]["template"]["spec"]["containers"][0]["command"] == ["redis-server", "/etc/redis/redis.conf"]
    # postgres options as the official image takes them; new WAL segments not zero-filled (a commit stall)
    postgres = objects_of(items, "StatefulSet")["clickstream-postgres"]["spec"]["template"]["spec"]["containers"][0]
    assert postgres["args"] == ["-c", "wal_init_zero=off"] and "command" not in postgres
    for sts in objects_of(items, "StatefulSet").values():
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
        assert items[("StatefulSet", sts["metadata"]["name"])].stage == STAGE_STORES


def test_generated_secret_contents_are_random_and_consistent() -> None:
    items = rendered(pipeline())
    recipe = items[("Secret", "clickstream-postgres")].recipe
    assert recipe is not None
    one, two = generate_secret_data(recipe), generate_secret_data(recipe)
    assert one["password"] != two["password"] and len(one["password"]) >= 32
    assert one["dsn"] == f"postgresql://adnomaly:{one['password']}@clickstream-postgres.{NS}.svc:5432/adnomaly"
    minio = items[("Secret", "clickstream-minio")].recipe
    assert minio is not None
    data = generate_secret_data(minio)
    assert data["accessKey"].isalnum() and data["mcHost"] == (
        f"http://{data['accessKey']}:{data['secretKey']}@clickstream-minio.{NS}.svc:9000"
    )


def test_no_secret_reaches_a_config_map_or_a_command_line() -> None:
    items = rendered(pipeline(**FEATURES))
    text = json.dumps([d.obj for d in items.values()])
    # the Feast ConfigMap names its passwords as ${VAR} placeholders, which its reader's environment fills
    text = text.replace("password=${ADNOMALY_FEAST_REDIS_PASSWORD}", "")
    for marker in ("password=", "postgresql://adnomaly:", "requirepass", "MINIO_ROOT_PASSWORD="):
        assert marker not in text.replace("{password}", "")
    for d in items.values():
        spec = d.obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("podTemplate", {}).get("spec") or {}
        for container in pod.get("containers", []):
            for env in container.get("env", []):
                assert "value" not in env or not any(
                    word in env["name"] for word in ("PASSWORD", "TOKEN", "DSN", "SECRET", "KEY", "AUTH")
                ) or env["name"] == SecretEnv.INGEST_TOKENS_FILE, (d.kind, d.name, env["name"])  # a path


def test_component_deployments_are_hardened_probed_and_hash_their_config() -> None:
    p = pipeline(**FEATURES, source={"ingest": {"replicas": 2}})
    kp = kube_plan(p, NS)
    items = rendered(p)
    deployments = objects_of(items, "Deployment")
    assert sorted(deployments) == [f"clickstream-{c}" for c in
                                   ("detector", "feature-sink", "generator", "ingest", "lake-sink", "processor",
                                    "serving")]
    for name, dep in deployments.items():
        component = name.removeprefix("clickstream-")
        pod = dep["spec"]["template"]
        assert pod["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == kp.components[component].config_hash
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["livenessProbe"] and container["readinessProbe"] and container["resources"]
        assert spec["volumes"][0]["configMap"]["items"] == [{"key": f"{component}.json", "path": "config.json"}]
        assert items[("Deployment", name)].stage == STAGE_APPS
        assert (("PodDisruptionBudget", name) in items) is (dep["spec"]["replicas"] >= 2)
        assert (("Service", name) in items) is (component in ("ingest", "serving"))  # HTTP APIs only
    assert {("NetworkPolicy", "clickstream-default-deny"), ("NetworkPolicy", "clickstream-postgres")} <= items.keys()
    metrics = objects_of(items, "Service")["clickstream-metrics"]
    assert metrics["spec"]["clusterIP"] == "None"  # one headless Service scrapes every component
    assert metrics["spec"]["selector"] == {LABEL_PIPELINE: "clickstream", "adnomaly.io/tier": "component"}


def test_tracing_in_the_spec_reaches_every_component_pod_as_otel_env_and_rolls_it() -> None:
    traced = pipeline(**FEATURES, observability={"tracing": {"otlpEndpoint": "http://otel:4318", "sampleRatio": 0.5}})
    before = objects_of(rendered(pipeline(**FEATURES)), "Deployment")
    for name, dep in objects_of(rendered(traced), "Deployment").items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
        assert env["OTEL_SERVICE_NAME"] == "adnomaly-" + name.removeprefix("clickstream-")
        untraced = before[name]["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
        assert dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] != untraced


def test_processor_replicas_are_capped_at_the_raw_partitions() -> None:
    p = pipeline(components={"processor": {"replicas": 9}},
                 kafka={"topics": {"raw": {"partitions": 4, "retention": "1d"}}})
    kp = kube_plan(p, NS)
    assert objects_of(rendered(p), "Deployment")["clickstream-processor"]["spec"]["replicas"] == 4
    assert [reason for reason, _ in kp.plan.conditions] == ["ReplicasCapped"]


def test_flink_deployment_is_a_pyflink_savepoint_job_with_s3_state() -> None:
    items = rendered(pipeline(**FEATURES))
    flink = objects_of(items, "FlinkDeployment")["clickstream-features"]
    assert flink["apiVersion"] == "flink.apache.org/v1beta1"
    spec = flink["spec"]
    assert spec["serviceAccount"] == "clickstream-flink" and spec["flinkVersion"] == "v2_2"
    assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert spec["job"]["jarURI"] == "local:///opt/flink/opt/flink-python-2.2.1.jar"
    python = "/opt/adnomaly/venv/bin/python"
    assert spec["job"]["args"] == ["-pyclientexec", python, "-pyexec", python,
                                   "-py", "/opt/adnomaly/job/adnomaly_flink_job.py",
                                   "--config", "/etc/adnomaly/config.json"]
    assert spec["job"]["upgradeMode"] == "savepoint"
    conf = spec["flinkConfiguration"]
    for key in ("state.checkpoints.dir", "execution.checkpointing.dir"):
        assert conf[key] == "s3://adnomaly-data/flink/clickstream/checkpoints"
    for key in ("state.savepoints.dir", "execution.checkpointing.savepoint-dir"):
        assert conf[key] == "s3://adnomaly-data/flink/clickstream/savepoints"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert spec["jobManager"]["resource"]["memory"] and spec["taskManager"]["resource"]["cpu"]
    env = {e["name"]: e for e in spec["podTemplate"]["spec"]["containers"][0]["env"]}
    secret_ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "clickstream-minio", "key": "secretKey"}
    assert {("Role", "clickstream-flink"), ("RoleBinding", "clickstream-flink")} <= items.keys()


def test_without_features_there_is_no_flink_redis_or_feature_components() -> None:
    kinds = {key for key in rendered(pipeline())}
    assert not any(kind == "FlinkDeployment" for kind, _ in kinds)
    assert ("StatefulSet", "clickstream-redis") not in kinds
    assert ("Deployment", "clickstream-detector") not in kinds


def test_delete_policy_reaches_volumes() -> None:
    items = rendered(pipeline(deletionPolicy="Delete"))
    for sts in objects_of(items, "StatefulSet").values():
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    (pool,) = objects_of(items, "KafkaNodePool").values()
    assert pool["spec"]["storage"]["volumes"][0]["deleteClaim"] is True


@pytest.mark.parametrize("monitor", [False, True])
def test_service_monitor_only_when_its_crd_exists(monitor: bool) -> None:
    items = rendered(pipeline(), service_monitor=monitor)
    assert (("ServiceMonitor", "clickstream") in items) is monitor


def test_long_pipeline_names_keep_every_name_a_dns_label() -> None:
    name = "a" * 40
    items = rendered(pipeline(name, **FEATURES))
    assert all(len(n) <= 63 for _, n in items)
    (pool,) = objects_of(items, "KafkaNodePool")
    assert len(f"{name}-{pool}-0") <= 63


def test_each_component_gets_only_the_secrets_it_uses() -> None:
    items = rendered(pipeline(**FEATURES))
    env_of = {
        name.removeprefix("clickstream-"): {
            e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e
        }
        for name, dep in objects_of(items, "Deployment").items()
    }
    kafka = SecretEnv.KAFKA_PASSWORD  # each Kafka client's own SCRAM user; serving does not use Kafka
    assert env_of == {
        "generator": {kafka},
        "ingest": {kafka},  # its tokens: a mounted Secret (see test_render_security)
        "processor": {kafka, SecretEnv.POSTGRES_DSN},
        "detector": {kafka, SecretEnv.POSTGRES_DSN},
        "lake-sink": {kafka, SecretEnv.S3_ACCESS_KEY, SecretEnv.S3_SECRET_KEY},
        "feature-sink": {kafka, SecretEnv.POSTGRES_DSN, SecretEnv.REDIS_URL},
        "serving": {SecretEnv.REDIS_URL, SecretEnv.POSTGRES_DSN},  # the anomalies API and console
    }
    configs = objects_of(items, "ConfigMap")["clickstream-config"]["data"]
    for component in env_of:  # every component reads its own section, as planned by adnomaly.plan
        section = component.replace("-", "_").replace("lake_sink", "lake")
        assert section in json.loads(configs[f"{component}.json"]), component
    lake = json.loads(configs["lake-sink.json"])["lake"]
    assert lake["s3_endpoint"] == f"http://clickstream-minio.{NS}.svc:9000"
    assert lake["uri"] == "s3://adnomaly-data/clickstream/events"
    serving = objects_of(items, "Deployment")["clickstream-serving"]["spec"]["template"]["spec"]["containers"][0]
    assert serving["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8090} in serving["ports"]


def _with_notify(alertmanager: dict[str, Any]) -> Pipeline:
    detection = {**FEATURES["detection"], "notify": {"alertmanager": alertmanager}}
    return pipeline(**{**FEATURES, "detection": detection})


def test_detector_notifies_alertmanager_with_the_login_from_the_secret_only() -> None:
    p = _with_notify({"url": "http://alertmanager-operated.monitoring.svc:9093",
                      "credentialsSecretRef": {"name": "am-login"}})
    items = rendered(p)
    deployments = objects_of(items, "Deployment")
    container = deployments["clickstream-detector"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for var, key in ((SecretEnv.ALERTMANAGER_USERNAME, "username"), (SecretEnv.ALERTMANAGER_PASSWORD, "password"),
                     (SecretEnv.ALERTMANAGER_TOKEN, "token")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "am-login", "key": key, "optional": True}
    for name, deployment in deployments.items():  # no other component gets the login
        if name != "clickstream-detector":
            names = {e["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
            assert not {n for n in names if "ALERTMANAGER" in n}, name
    data = objects_of(items, "ConfigMap")["clickstream-config"]["data"]
    config = json.loads(data["detector.json"])["detector"]
    assert config["notify"]["url"] == "http://alertmanager-operated.monitoring.svc:9093"
    assert "am-login" not in json.dumps(data) and "notify" not in config["detection"]
    policy = objects_of(items, "NetworkPolicy")["clickstream-detector"]
    assert {"protocol": "TCP", "port": 9093} in [port for rule in policy["spec"]["egress"] for port in rule["ports"]]
    assert kube_plan(p, NS).components["detector"].config_hash != kube_plan(pipeline(**FEATURES), NS).components[
        "detector"].config_hash  # notifying rolls the detector


def test_alertmanager_without_url_is_a_condition_on_kubernetes() -> None:
    kp = kube_plan(_with_notify({}), NS)
    assert "AlertmanagerNotPlanned" in [reason for reason, _ in kp.notes]
    detector = kp.components["detector"].config.detector
    assert detector is not None and detector.notify is None
    assert not {v for v in kp.secret_env["detector"] if "ALERTMANAGER" in v}


def test_a_desired_object_is_kept_packed_and_unpacks_the_same_object_each_time() -> None:
    p = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    for d in rendered(p).values():
        first = d.obj
        assert list(first) == list(d.obj)  # the renderer's key order survives (what `adnomaly render` prints)
        assert first["metadata"]["annotations"][ANNOTATION_HASH] == d.hash
        assert (first["kind"], first["metadata"]["name"]) == (d.kind, d.name)
        first["metadata"]["name"] = "changed"  # a copy: the kept object does not change with it
        assert d.obj["metadata"]["name"] == d.name
        assert d.json == json.dumps(d.obj, separators=(",", ":")).encode()  # what an apply sends, compact
        assert d.namespace == first["metadata"].get("namespace")
        assert d.scaled == (d.kind == "Deployment" and "replicas" not in first["spec"])
    a, b = rendered(p), rendered(p)
    assert a == b and {hash(d) for d in a.values()} == {hash(d) for d in b.values()}


def test_a_desired_object_is_sealed_as_it_is_made_and_sealing_twice_changes_nothing() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"a": "b"}},
           "data": {"k": "v"}}
    d = Desired(obj, STAGE_APPS)
    assert ANNOTATION_HASH not in obj["metadata"]["annotations"]  # the caller's dict is left alone
    assert Desired(d.obj, STAGE_APPS) == d and Desired(d.obj, STAGE_APPS).hash == d.hash
    assert Desired({**obj, "data": {"k": "w"}}, STAGE_APPS).hash != d.hash


def test_a_kept_render_costs_a_fraction_of_its_objects_as_dicts() -> None:
    """The reconciler keeps each Pipeline's render between passes: at 1,000 Pipelines the renders as
    nested dicts were a third of its memory. Packed, one render of the default manifest stays small."""
    p = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    rendered(p)  # warm caches (imports, interned strings) outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        kept = [rendered(p) for _ in range(10)]
        gc.collect()
        per_render, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    as_dicts = len(json.dumps([d.obj for d in kept[0].values()]))
    assert per_render / len(kept) < 0.75 * as_dicts  # as dicts they took ~2.5x their JSON (263 KB)
