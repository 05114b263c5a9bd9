"""The project's own images on real pods (issue 13, part 4): `helm install`, then a Pipeline, on a real node.

    make e2e-node        (root; builds the images and the node's binaries on first use, then caches them)

The images are the ones a user runs: `docker/Dockerfile`'s operator and components targets built by
buildah on a Debian base (adnomaly.services.images), imported into the node's containerd without a
registry. Around them, stand-ins for what the suite would pull elsewhere: a plain KRaft broker as the
Pipeline's *external* Kafka (a StatefulSet in the cluster), PostgreSQL from Debian's packages speaking the
official image's contract, MinIO's server and client built from their Go modules.

What stays CR-level (no such operator can run here): Strimzi's and the Flink Kubernetes Operator's own
readiness. Those are covered against their upstream CRDs by tests/operator; this suite uses an external
Kafka and a Pipeline without Flink features, plus one with features to check the "no Flink operator"
condition. The Flink job image (flink/Dockerfile) still runs for real: with the FlinkDeployment CRD
installed, the operator writes the FlinkDeployment, and the suite runs its job from that object's pod
template in Flink's local mode, as one pod (what the Flink operator's JobManager and TaskManagers would run,
minus the native cluster around it).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from adnomaly.plan import db_schema_name, topic_name
from adnomaly.services.kafka import new_cluster_id
from adnomaly.services.kube import wait_established
from adnomaly_operator.testing import THIRD_PARTY_CRDS

from tests.e2e.checks import (
    OPERATOR_SELECTOR,
    READY_TIMEOUT,
    SYSTEM_NAMESPACE,
    describe_pods,
    dump,
    get_json,
    pod_ready,
    wait_for,
)
from tests.e2e.providers import E2ECluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

def operator_pod(cluster: E2ECluster) -> dict[str, Any]:
    pods = get_json(cluster, "pods", "-n", SYSTEM_NAMESPACE, "-l", OPERATOR_SELECTOR)["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_helm_install_runs_the_operator_ready_with_only_the_charts_rbac(
    cluster: E2ECluster, operator_release: str
) -> None:
    pod = wait_for(lambda: (p := operator_pod(cluster)) and pod_ready(p) and p, READY_TIMEOUT,
                   "the operator pod Ready")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0, status
    assert status["imageID"] or status["image"]
    account = pod["spec"]["serviceAccountName"]
    subject = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{account}"

    def can(verb: str, resource: str, namespace: str | None = None) -> bool:
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        done = cluster.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *scope, check=False)
        return done.stdout.strip() == "yes"

    # What the operator needs, granted by the chart alone; nothing broader was bound by the suite.
    assert can("patch", "pipelines.adnomaly.io") and can("create", "statefulsets.apps", "default")
    assert not can("create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not can("get", "nodes")
    # kopf is up and watching: its startup lines are in the container log (the kubelet serves it).
    log = cluster.kubectl("logs", "-n", SYSTEM_NAMESPACE, pod["metadata"]["name"]).stdout
    assert "Traceback" not in log, log[-3000:]


def test_operator_runs_as_the_hardened_user_on_a_read_only_root(
    cluster: E2ECluster, operator_release: str
) -> None:
    pod = operator_pod(cluster)
    name = pod["metadata"]["name"]
    identity = cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c",
                                    "import os; print(os.getuid(), os.getgid())").stdout.split()
    assert identity == ["10001", "10001"]
    probe = ("import pathlib\ntry:\n    pathlib.Path('/opt/x').write_text('x')\nexcept OSError as e:\n"
             "    print(e.errno)\npathlib.Path('/tmp/ok').write_text('x'); print('tmp-ok')")
    out = cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c", probe).stdout.split()
    assert out == ["30", "tmp-ok"], out  # EROFS on the image's root, /tmp is the chart's emptyDir
    caps = cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c",
                                "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0])").stdout
    assert caps.split()[-1] == "0000000000000000", caps


def pipeline_manifest(name: str, namespace: str, bootstrap: str, **spec: Any) -> dict[str, Any]:
    topic = {"retention": "1d", "replicas": 1}
    base: dict[str, Any] = {
        "events": {"schema": "clickstream"},
        "source": {"generator": {"eventsPerSecond": 40, "seed": 7, "invalidRate": 0.05}},
        "kafka": {
            "external": {"bootstrapServers": bootstrap},
            "topics": {"raw": {"partitions": 3, **topic}, "dlq": {"partitions": 1, **topic},
                       "features": {"partitions": 1, **topic}, "anomalies": {"partitions": 1, **topic}},
        },
        "deletionPolicy": "Delete",
    }
    base.update(spec)
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name, "namespace": namespace}, "spec": base}


def kafka_objects(namespace: str, image: str) -> list[dict[str, Any]]:
    """The external Kafka: the plain broker image as a one-replica StatefulSet with a PVC, and its Service."""
    labels = {"app.kubernetes.io/name": "kafka"}
    container = {
        "name": "kafka", "image": image, "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "KAFKA_ADVERTISED_HOST", "value": f"kafka.{namespace}.svc"},
                {"name": "KAFKA_CLUSTER_ID", "value": new_cluster_id()},
                {"name": "KAFKA_HEAP", "value": "384m"}],
        "ports": [{"name": "kafka", "containerPort": 9092}],
        "readinessProbe": {"tcpSocket": {"port": "kafka"}, "periodSeconds": 3},
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "768Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True, "runAsUser": 1001},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/kafka"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"name": "kafka", "port": 9092, "targetPort": "kafka"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "kafka", "namespace": namespace},
         "spec": {
             "serviceName": "kafka", "replicas": 1, "selector": {"matchLabels": labels},
             "template": {"metadata": {"labels": labels}, "spec": {
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "fsGroup": 1001,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [container],
                 "volumes": [{"name": "tmp", "emptyDir": {}}],
             }},
             "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                 "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
         }},
    ]


PIPELINE = "e2e"
EVENTS = f"{db_schema_name(PIPELINE)}.events"  # each Pipeline's tables live in a schema of its own


@pytest.fixture(scope="module")
def pipeline_ns(cluster: E2ECluster, operator_release: str, images: dict[str, str]) -> Iterator[str]:
    """A namespace with the external Kafka running and the Pipeline applied and Ready."""
    namespace = "adnomaly-e2e"
    cluster.kubectl("create", "namespace", namespace)
    for obj in kafka_objects(namespace, images["test-kafka"]):
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    try:
        cluster.kubectl("rollout", "status", "-n", namespace, "statefulset/kafka", "--timeout=300s", timeout=330)
    except Exception as error:
        raise AssertionError(f"the external Kafka did not start: {error}\n{describe_pods(cluster, namespace)}"
                             ) from None
    manifest = pipeline_manifest(PIPELINE, namespace, f"kafka.{namespace}.svc:9092")
    manifest["spec"]["kafka"]["external"]["manageTopics"] = True
    cluster.kubectl("apply", "-f", "-", stdin=dump(manifest))
    done = cluster.kubectl("wait", "-n", namespace, f"pipeline/{PIPELINE}", "--for=condition=Ready",
                                "--timeout=600s", timeout=630, check=False)
    if done.returncode != 0:
        status = cluster.kubectl("get", "-n", namespace, f"pipeline/{PIPELINE}", "-o", "yaml", check=False)
        pods = describe_pods(cluster, namespace)
        raise AssertionError(f"Pipeline not Ready: {done.stderr}\n{status.stdout[-3000:]}\n{pods}")
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def psql(cluster: E2ECluster, namespace: str, sql: str) -> str:
    return cluster.kubectl("exec", "-n", namespace, f"statefulset/{PIPELINE}-postgres", "--", "psql", "-U", "adnomaly",
                           "-d", "adnomaly", "-tAc", sql).stdout.strip()


def test_pipeline_is_ready_with_its_printer_columns(cluster: E2ECluster, pipeline_ns: str) -> None:
    table = cluster.kubectl("get", "pipelines", "-n", pipeline_ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "AGE"], table
    name, phase, ready, _age = table[1].split()
    assert (name, phase) == (PIPELINE, "Ready")
    have, want = ready.split("/")
    assert have == want and int(want) >= 3, ready


def test_every_pod_runs_hardened_and_every_claim_is_bound(cluster: E2ECluster, pipeline_ns: str) -> None:
    pods = get_json(cluster, "pods", "-n", pipeline_ns, "-l", f"app.kubernetes.io/instance={PIPELINE}")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    names = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component", "") for p in running)
    assert {"generator", "ingest", "processor", "lake-sink", "postgres", "minio"} <= set(names), names
    for pod in running:
        assert pod_ready(pod), pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            # what runc enforced, read from inside the container: non-root, no capabilities, read-only root
            exe = ["exec", "-n", pipeline_ns, pod["metadata"]["name"], "-c", container["name"], "--"]
            status = cluster.kubectl(*exe, "cat", "/proc/self/status", check=False)
            if status.returncode != 0:  # a scratch image (MinIO) has no cat: the pod spec must say it
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"], pod["metadata"]["name"]
                continue
            fields = dict(line.split(":\t", 1) for line in status.stdout.splitlines() if ":\t" in line)
            assert fields["Uid"].split()[0] != "0", (pod["metadata"]["name"], fields["Uid"])
            assert fields["CapEff"].strip() == "0000000000000000", pod["metadata"]["name"]
            assert fields["NoNewPrivs"].strip() == "1", pod["metadata"]["name"]
            touch = cluster.kubectl(*exe, "touch", "/rootfs-probe", check=False)
            assert touch.returncode != 0 and "Read-only file system" in touch.stderr, pod["metadata"]["name"]
    claims = get_json(cluster, "pvc", "-n", pipeline_ns)["items"]
    assert len(claims) >= 3 and all(c["status"]["phase"] == "Bound" for c in claims), \
        [(c["metadata"]["name"], c["status"].get("phase")) for c in claims]


TOOLBOX = "toolbox"


@pytest.fixture(scope="module")
def toolbox(cluster: E2ECluster, pipeline_ns: str, images: dict[str, str]) -> str:
    """A pod of the components image that stays when the Pipeline goes: Kafka and S3 queries run in it, with
    the MinIO credentials from the operator's Secret in its environment (never on a command line)."""
    secret = {"name": f"{PIPELINE}-minio"}
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": TOOLBOX, "namespace": pipeline_ns},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "toolbox", "image": images["adnomaly"], "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", "import time; time.sleep(86400)"],
                "env": [{"name": "S3_KEY", "valueFrom": {"secretKeyRef": {**secret, "key": "accessKey"}}},
                        {"name": "S3_SECRET", "valueFrom": {"secretKeyRef": {**secret, "key": "secretKey"}}}],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    cluster.kubectl("wait", "-n", pipeline_ns, f"pod/{TOOLBOX}", "--for=condition=Ready", "--timeout=120s",
                         timeout=150)
    return TOOLBOX


def in_toolbox(cluster: E2ECluster, namespace: str, code: str, pod: str = TOOLBOX) -> Any:
    """Run Python in the toolbox pod (or another with Python); it prints one JSON document."""
    return json.loads(cluster.kubectl("exec", "-n", namespace, pod, "--", "python", "-c", code,
                                      timeout=180).stdout)


def topic_counts(cluster: E2ECluster, namespace: str) -> dict[str, int]:
    """Records per topic of the external Kafka (end minus start offsets, summed over partitions)."""
    code = f"""
import json
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": "kafka.{namespace}.svc:9092", "group.id": "e2e-probe"}})
out = {{}}
for name, meta in c.list_topics(timeout=20).topics.items():
    if not name.startswith("__"):
        out[name] = sum(h - lo for lo, h in (c.get_watermark_offsets(TopicPartition(name, p), timeout=20)
                                              for p in meta.partitions))
print(json.dumps(out))
"""
    return in_toolbox(cluster, namespace, code)


def distinct_dead_letters(cluster: E2ECluster, namespace: str) -> int:
    """The pipeline's dead letters counted by identity, as the dead-letter contract asks of readers: a
    processor that replays a batch (a pod stopped before its commit) writes its dead letters again, each
    copy with the same `dead_letter_id`, so the topic's offsets may count one record twice."""
    code = f"""
import json
from adnomaly.local.dead_letter_count import DistinctDeadLetters
count = DistinctDeadLetters("kafka.{namespace}.svc:9092", "{PIPELINE}-dlq", timeout=60)
print(json.dumps(count.count()))
count.close()
"""
    return int(in_toolbox(cluster, namespace, code))


def parquet_objects(cluster: E2ECluster, namespace: str) -> list[str]:
    return [path for path in s3_objects(cluster, namespace, PIPELINE, "adnomaly-data") if path.endswith(".parquet")]


def s3_objects(cluster: E2ECluster, namespace: str, pipeline: str, prefix: str, pod: str = TOOLBOX,
               key_env: tuple[str, str] = ("S3_KEY", "S3_SECRET")) -> list[str]:  # fmt: skip
    """The paths under `prefix` in the pipeline's MinIO, listed from `pod` with the credentials in its
    environment variables `key_env` (each pipeline's MinIO has its own)."""
    code = f"""
import json, os
from pyarrow import fs
s3 = fs.S3FileSystem(access_key=os.environ["{key_env[0]}"], secret_key=os.environ["{key_env[1]}"], scheme="http",
                     endpoint_override="{pipeline}-minio.{namespace}.svc:9000", region="us-east-1")
infos = s3.get_file_info(fs.FileSelector("{prefix}", recursive=True, allow_not_found=True))
print(json.dumps([i.path for i in infos]))
"""
    return in_toolbox(cluster, namespace, code, pod)


def secret_values(cluster: E2ECluster, namespace: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for secret in get_json(cluster, "secrets", "-n", namespace)["items"]:
        for key, encoded in (secret.get("data") or {}).items():
            decoded = base64.b64decode(encoded).decode(errors="replace")
            for part in decoded.replace(",", "\n").splitlines():
                if len(part.strip()) >= 12:  # generated passwords, keys and tokens; not short flags
                    values[f"{secret['metadata']['name']}/{key}"] = part.strip()
    return values


def pods_by_component(cluster: E2ECluster, namespace: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for pod in get_json(cluster, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={PIPELINE}")["items"]:
        if pod["metadata"].get("deletionTimestamp") is None:
            out.setdefault(pod["metadata"]["labels"].get("app.kubernetes.io/component", ""), []).append(pod)
    return out


def patch_pipeline(cluster: E2ECluster, namespace: str, patch: dict[str, Any]) -> None:
    cluster.kubectl("patch", "-n", namespace, f"pipeline/{PIPELINE}", "--type=merge", "-p", json.dumps(patch))


def wait_pipeline_ready(cluster: E2ECluster, namespace: str) -> None:
    def ready() -> bool:
        body = get_json(cluster, "-n", namespace, f"pipeline/{PIPELINE}")
        status = body.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return status.get("observedGeneration") == body["metadata"]["generation"] and conditions.get("Ready") == "True"

    wait_for(ready, READY_TIMEOUT, "the Pipeline Ready at its new generation")


def ingest_token(cluster: E2ECluster, namespace: str) -> str:
    secret = get_json(cluster, "secret", "-n", namespace, f"{PIPELINE}-ingest-tokens")
    return base64.b64decode(secret["data"]["tokens"]).decode().split(",")[0].strip()


@pytest.fixture(scope="module")
def ingested(cluster: E2ECluster, pipeline_ns: str) -> dict[str, Any]:
    """Events sent through the ingest API over `kubectl port-forward`, as a client outside the cluster would."""
    port = free_port()
    forward = subprocess.Popen(
        [*cluster.kubectl_argv(), "port-forward", "-n", pipeline_ns, f"svc/{PIPELINE}-ingest", f"{port}:80"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = uuid.uuid4().hex[:8]
    ids = [f"e2e-ingest-{run_id}-{n}" for n in range(50)]
    lines = [json.dumps({**clickstream_event(n), "event_id": event_id}) for n, event_id in enumerate(ids)]
    lines.append('{"timestamp": "not a time", "geo": 7}')  # rejected: answered and dead-lettered
    try:
        def post() -> httpx.Response | None:
            try:
                return httpx.post(f"http://127.0.0.1:{port}/v1/events", content="\n".join(lines).encode(),
                                  headers={"Authorization": f"Bearer {ingest_token(cluster, pipeline_ns)}",
                                           "Content-Type": "application/x-ndjson"}, timeout=30)
            except httpx.HTTPError:
                return None

        try:
            answer = wait_for(post, 60, "the ingest API through kubectl port-forward")
        except AssertionError:
            forward.terminate()
            raise AssertionError(f"kubectl port-forward: {forward.communicate(timeout=10)}") from None
        unauthorized = httpx.post(f"http://127.0.0.1:{port}/v1/events", content=lines[0].encode(),
                                  headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"},
                                  timeout=30)
    finally:
        forward.terminate()
        forward.wait(10)
    return {"answer": answer, "unauthorized": unauthorized, "ids": ids, "run": run_id}


def clickstream_event(n: int) -> dict[str, Any]:
    return {"timestamp": datetime.now(UTC).isoformat(), "user_id_hash": f"u{n}", "ad_id": "ad1", "campaign_id": "c1",
            "geo": "US", "platform": "web", "user_agent": "e2e", "CPC": 0.5, "CTR": 0.1, "conversion": 0,
            "bounce_rate": 0.3}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ingest_api_through_port_forward_with_its_token(
    cluster: E2ECluster, pipeline_ns: str, ingested: dict[str, Any]
) -> None:
    answer = ingested["answer"]
    assert answer.status_code == 202, answer.text
    assert (answer.json()["accepted"], answer.json()["rejected"]) == (50, 1)
    assert ingested["unauthorized"].status_code == 403
    stored = wait_for(lambda: (n := int(psql(cluster, pipeline_ns, f"SELECT count(*) FROM {EVENTS} WHERE event_id "
                                              f"LIKE 'e2e-ingest-{ingested['run']}-%'"))) == 50 and n, 120,
                      "the ingested events in PostgreSQL")
    assert stored == 50


def test_a_spec_change_rolls_exactly_the_pods_whose_config_changed(
    cluster: E2ECluster, pipeline_ns: str
) -> None:
    before = {c: sorted(p["metadata"]["uid"] for p in pods)
              for c, pods in pods_by_component(cluster, pipeline_ns).items()}
    patch_pipeline(cluster, pipeline_ns, {"spec": {"source": {"generator": {"eventsPerSecond": 60}}}})
    wait_pipeline_ready(cluster, pipeline_ns)

    def rolled() -> dict[str, list[str]] | None:
        now = {c: sorted(p["metadata"]["uid"] for p in pods)
               for c, pods in pods_by_component(cluster, pipeline_ns).items()}
        return now if now.get("generator") and now["generator"] != before["generator"] and all(
            pod_ready(p) for p in pods_by_component(cluster, pipeline_ns)["generator"]) else None

    after = wait_for(rolled, READY_TIMEOUT, "the generator rolled")
    unchanged = {c for c in before if c != "generator" and after.get(c) == before[c]}
    assert unchanged == set(before) - {"generator"}, (before, after)


def test_a_deleted_processor_drains_on_sigterm_within_its_grace_period(
    cluster: E2ECluster, pipeline_ns: str
) -> None:
    pod = pods_by_component(cluster, pipeline_ns)["processor"][0]
    name, grace = pod["metadata"]["name"], pod["spec"]["terminationGracePeriodSeconds"]
    follow = subprocess.Popen(
        [*cluster.kubectl_argv(), "logs", "-f", "-n", pipeline_ns, name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2)
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", pipeline_ns, name, "--wait=true", "--timeout=120s", timeout=150)
    elapsed = time.monotonic() - started
    try:
        out, _ = follow.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        follow.kill()
        out, _ = follow.communicate()
    assert "SIGTERM received" in out and "processor stopped" in out, out[-3000:]
    assert elapsed < grace, f"{name} took {elapsed:.1f}s to stop (grace {grace}s): it was killed, not drained"


def test_processor_pod_loss_and_scaling_lose_and_duplicate_nothing(
    cluster: E2ECluster, pipeline_ns: str, toolbox: str
) -> None:
    def processors_ready(count: int) -> bool:
        pods = pods_by_component(cluster, pipeline_ns).get("processor", [])
        return len(pods) == count and all(pod_ready(p) for p in pods)

    cluster.kubectl("delete", "pod", "-n", pipeline_ns, "-l", "app.kubernetes.io/component=processor",
                         "--wait=false")
    wait_for(lambda: processors_ready(1), READY_TIMEOUT, "a replacement processor")
    patch_pipeline(cluster, pipeline_ns, {"spec": {"components": {"processor": {"replicas": 3}}}})
    wait_for(lambda: processors_ready(3), READY_TIMEOUT, "three processors")
    time.sleep(15)  # the group rebalances over three members while the generator keeps producing
    patch_pipeline(cluster, pipeline_ns, {"spec": {"components": {"processor": {"replicas": 1}}}})
    wait_for(lambda: processors_ready(1), READY_TIMEOUT, "back to one processor")
    # Stop producing, then every record of the raw topic must be stored or dead-lettered exactly once.
    patch_pipeline(cluster, pipeline_ns, {"spec": {"source": {"generator": {"enabled": False}}}})
    wait_for(lambda: "generator" not in pods_by_component(cluster, pipeline_ns), READY_TIMEOUT,
             "the generator gone")

    def balanced() -> tuple[int, int, dict[str, int]] | None:
        counts = topic_counts(cluster, pipeline_ns)
        stored = int(psql(cluster, pipeline_ns, f"SELECT count(*) FROM {EVENTS}"))
        # the ingest API dead-letters its one rejected line itself; it never reached the raw topic
        dead = distinct_dead_letters(cluster, pipeline_ns)
        return (stored, dead, counts) if stored + dead == counts[f"{PIPELINE}-raw"] + 1 else None

    stored, dead, counts = wait_for(balanced, 180, "stored + dead-lettered == raw records + the rejected line")
    assert stored > 1000 and dead > 10, counts
    duplicates = psql(cluster, pipeline_ns,
                      f"SELECT count(*) - count(DISTINCT payload->>'event_id') FROM {EVENTS}")
    assert duplicates == "0"
    assert wait_for(lambda: parquet_objects(cluster, pipeline_ns), 180, "Parquet objects in MinIO")


def test_container_logs_hold_no_secret(cluster: E2ECluster, pipeline_ns: str) -> None:
    secrets = secret_values(cluster, pipeline_ns)
    assert secrets, "the operator generated no secret?"
    pods = get_json(cluster, "pods", "-n", pipeline_ns)["items"]
    system = get_json(cluster, "pods", "-n", SYSTEM_NAMESPACE)["items"]
    checked = 0
    for pod in [*pods, *system]:
        for container in pod["spec"]["containers"]:
            log = cluster.kubectl("logs", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"],
                                       "-c", container["name"], check=False).stdout
            checked += bool(log)
            leaked = [name for name, value in secrets.items() if value in log]
            assert not leaked, f"{pod['metadata']['name']}/{container['name']} logs {leaked}"
    assert checked >= 5


def without_flink_operator(cluster: E2ECluster) -> None:
    if "flink" in cluster.platform:
        pytest.skip(f"the {cluster.name} provider runs the Flink Kubernetes Operator (test_platform.py checks it)")


def test_features_without_a_flink_operator_say_so_in_a_condition(cluster: E2ECluster, pipeline_ns: str) -> None:
    without_flink_operator(cluster)
    manifest = pipeline_manifest("with-features", pipeline_ns, f"kafka.{pipeline_ns}.svc:9092", features=[{
        "name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "1m"},
        "metrics": [{"name": "event_count", "agg": "count"}]}])
    cluster.kubectl("apply", "-f", "-", stdin=dump(manifest))
    try:
        def flink_condition() -> dict[str, Any] | None:
            status = get_json(cluster, "-n", pipeline_ns, "pipeline/with-features").get("status", {})
            return next((c for c in status.get("conditions", []) if c["type"] == "Ready" and c["status"] == "False"
                         and "flink" in (c.get("message", "") + c.get("reason", "")).lower()), None)

        condition = wait_for(flink_condition, 120, "a Ready=False condition naming the missing Flink operator")
        assert condition["reason"] and condition["message"], condition
    finally:
        cluster.kubectl("delete", "-n", pipeline_ns, "pipeline/with-features", "--wait=true", "--timeout=120s",
                             check=False, timeout=150)


FLINK_CRD = THIRD_PARTY_CRDS / "flink-flinkdeployments.flink.apache.org-v1.yml"
FLINK_PIPELINE = "flinkjob"
# The FlinkDeployment's flinkConfiguration minus what shapes the native cluster the Flink operator would
# make (HA, slots per TaskManager, fixed ports): the job needs the filesystem options wherever it runs.
JOB_CONFIGURATION_PREFIXES = ("io.tmp.dirs", "execution.checkpointing.")
FILE_SYSTEM_PREFIXES = ("s3.",)
JOB_CONF_DIR = "/opt/flink/conf-job"
# The job's own log on the pod's stdout (kubectl logs), as the Flink operator's log4j-console does.
JOB_LOG4J = """rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


def local_job_config_map(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """What the local job adds to the image's Flink configuration directory, as the Flink operator adds the
    FlinkDeployment's flinkConfiguration to its JobManager's: the file system options must be in the
    directory's `config.yaml`, not `-D` options on the command line, because Flink initialises its file
    systems from the directory: with `-Ds3.endpoint=…` alone the S3 client never hears of MinIO and retries
    AWS forever (checkpoints, and so the exactly-once sink's commits, never complete)."""
    options = {key: value for key, value in sorted(deployment["spec"]["flinkConfiguration"].items())
               if key.startswith(FILE_SYSTEM_PREFIXES)}  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"]},
            "data": {"file-systems.yaml": dump(options), "log4j-cli.properties": JOB_LOG4J}}  # fmt: skip


def local_job_pod(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod running `deployment`'s job the way its JobManager would, in Flink's local mode: the same image,
    pod template (security context, env with the Kafka and S3 secret refs, the ConfigMap-mounted job
    config), service account and job arguments, through the image's entry point. An init container makes
    its Flink configuration directory: the image's (JVM options, defaults) plus `local_job_config_map`."""
    spec = deployment["spec"]
    pod_spec = json.loads(json.dumps(spec["podTemplate"]["spec"]))
    container = pod_spec["containers"][0]
    options = [f"-D{key}={value}" for key, value in sorted(spec["flinkConfiguration"].items())
               if key.startswith(JOB_CONFIGURATION_PREFIXES)]  # fmt: skip
    # The JobManager would start as many TaskManagers as the job's parallelism needs; the local mini cluster
    # is one TaskManager with one slot unless told otherwise, and the job then waits for slots forever.
    options.append(f"-Dtaskmanager.numberOfTaskSlots={spec['job']['parallelism']}")
    mounts = [{"name": "local-flink-conf", "mountPath": JOB_CONF_DIR}]
    container.update({
        "image": spec["image"], "imagePullPolicy": spec["imagePullPolicy"],
        "args": ["flink", "run", "--target", "local", *options, *spec["job"]["args"]],
        "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "env": [*container.get("env", []), {"name": "FLINK_CONF_DIR", "value": JOB_CONF_DIR}],
        "volumeMounts": [*container.get("volumeMounts", []), *mounts],
    })  # fmt: skip
    configure = {
        "name": "local-flink-conf", "image": spec["image"], "imagePullPolicy": spec["imagePullPolicy"],
        "securityContext": container.get("securityContext", {}),
        "command": ["sh", "-c", f"cp -R /opt/flink/conf/. {JOB_CONF_DIR}/ && printf '\\n' >> {JOB_CONF_DIR}/config.yaml"
                    f" && cat /job-conf/file-systems.yaml >> {JOB_CONF_DIR}/config.yaml"
                    f" && cp /job-conf/log4j-cli.properties {JOB_CONF_DIR}/"],
        "volumeMounts": [*mounts, {"name": "job-conf", "mountPath": "/job-conf", "readOnly": True}],
    }  # fmt: skip
    pod_spec.update({"serviceAccountName": spec["serviceAccount"], "restartPolicy": "Never",
                     "terminationGracePeriodSeconds": 5, "initContainers": [configure],
                     "volumes": [*pod_spec.get("volumes", []), {"name": "local-flink-conf", "emptyDir": {}},
                                 {"name": "job-conf", "configMap": {"name": name}}]})  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"],
                         "labels": spec["podTemplate"]["metadata"]["labels"]},
            "spec": pod_spec}


def committed_records(cluster: E2ECluster, namespace: str, topic: str, limit: int = 200) -> list[dict[str, Any]]:
    """Up to `limit` JSON records of `topic` that a read_committed consumer sees (the exactly-once sink's
    records become visible only when the checkpoint that ends their transaction completes)."""
    code = f"""
import json, time
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "kafka.{namespace}.svc:9092", "group.id": "e2e-{uuid.uuid4().hex}",
              "auto.offset.reset": "earliest", "isolation.level": "read_committed", "enable.auto.commit": False}})
c.subscribe(["{topic}"])
out, deadline = [], time.monotonic() + 20
while len(out) < {limit} and time.monotonic() < deadline:
    m = c.poll(1.0)
    if m is not None and m.error() is None:
        out.append(json.loads(m.value()))
c.close()
print(json.dumps(out))
"""
    return in_toolbox(cluster, namespace, code)


def test_the_flink_job_image_computes_features_from_the_operators_flink_deployment(
    cluster: E2ECluster, pipeline_ns: str, toolbox: str, images: dict[str, str]
) -> None:
    """The job image, the operator's FlinkDeployment and the compiled job together, on a real pod: features
    from the raw topic reach the features topic through the exactly-once sink, checkpoints reach MinIO
    through the image's S3 plugin, as the non-root `flink` user on a read-only root filesystem."""
    without_flink_operator(cluster)
    cluster.kubectl("apply", "--server-side", "-f", str(FLINK_CRD), timeout=120)
    wait_established(cluster.kubectl, ["crd/flinkdeployments.flink.apache.org"], 60)
    manifest = pipeline_manifest(FLINK_PIPELINE, pipeline_ns, f"kafka.{pipeline_ns}.svc:9092", features=[{
        "name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "10s"},
        "allowedLateness": "0s", "metrics": [{"name": "event_count", "agg": "count"}]}])
    manifest["spec"]["kafka"]["external"]["manageTopics"] = True
    pod_name = f"{FLINK_PIPELINE}-job"
    try:
        cluster.kubectl("apply", "-f", "-", stdin=dump(manifest))

        def flink_deployments() -> list[dict[str, Any]]:
            found = get_json(cluster, "-n", pipeline_ns, "flinkdeployments", "-l",
                             f"app.kubernetes.io/instance={FLINK_PIPELINE}")["items"]
            if not found:  # say what the Pipeline says meanwhile (e.g. RenderFailed), not just "timed out"
                status = get_json(cluster, "-n", pipeline_ns, f"pipeline/{FLINK_PIPELINE}").get("status") or {}
                raise AssertionError(f"no FlinkDeployment yet; Pipeline conditions: {status.get('conditions')}")
            return found

        deployment = wait_for(flink_deployments, 300,
                              "the operator to write the FlinkDeployment (the discovery sees the new CRD)",
                              interval=5)[0]
        assert deployment["spec"]["image"] == images["adnomaly-flink"], deployment["spec"]["image"]  # the chart's
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(local_job_config_map(deployment, pod_name)))
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(local_job_pod(deployment, pod_name)))
        features_topic = topic_name(FLINK_PIPELINE, "features")

        def features() -> list[dict[str, Any]] | None:
            phase = get_json(cluster, "-n", pipeline_ns, f"pod/{pod_name}")["status"].get("phase")
            if phase in ("Failed", "Succeeded"):
                logs = cluster.kubectl("logs", "-n", pipeline_ns, pod_name, "--tail=60", check=False).stdout
                pytest.fail(f"the job pod ended ({phase}):\n{logs}")  # at once: waiting longer cannot help
            return committed_records(cluster, pipeline_ns, features_topic) or None

        records = wait_for(features, 420, f"committed feature records in {features_topic}", interval=10)
        assert all(r["dimensions"]["geo"] and r["event_count"] >= 1 for r in records), records[:3]
        assert {"window_start", "window_end"} <= set(records[0]), records[0]
        # listed from the job's pod, which has this pipeline's MinIO credentials (and pyarrow, with PyFlink)
        checkpoints = s3_objects(cluster, pipeline_ns, FLINK_PIPELINE, f"adnomaly-data/flink/{FLINK_PIPELINE}",
                                 pod_name, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        assert any("/chk-" in path for path in checkpoints), checkpoints[:20]
        pod = get_json(cluster, "-n", pipeline_ns, f"pod/{pod_name}")
        security = pod["spec"]["containers"][0]["securityContext"]
        assert security["readOnlyRootFilesystem"] and security["runAsUser"] == 9999, security
    finally:
        if "deployment" in locals():
            logs = cluster.kubectl("logs", "-n", pipeline_ns, pod_name, "--tail=40", check=False).stdout
            print(f"--- {pod_name} (last lines)\n{logs}")
        cluster.kubectl("delete", "-n", pipeline_ns, f"pod/{pod_name}", f"configmap/{pod_name}", "--ignore-not-found",
                        "--wait=false", check=False)
        cluster.kubectl("delete", "-n", pipeline_ns, f"pipeline/{FLINK_PIPELINE}", "--wait=true", "--timeout=180s",
                        check=False, timeout=210)
        cluster.kubectl("delete", "crd/flinkdeployments.flink.apache.org", "--wait=true", "--timeout=120s",
                        check=False, timeout=150)


def test_deleting_a_retained_pipeline_keeps_its_claims_and_topics(
    cluster: E2ECluster, pipeline_ns: str, toolbox: str
) -> None:
    name = "kept"
    manifest = pipeline_manifest(name, pipeline_ns, f"kafka.{pipeline_ns}.svc:9092", deletionPolicy="Retain",
                                 lake={"enabled": False})
    manifest["spec"]["kafka"]["external"]["manageTopics"] = True
    manifest["spec"]["source"]["ingest"] = {"enabled": False}
    cluster.kubectl("apply", "-f", "-", stdin=dump(manifest))
    cluster.kubectl("wait", "-n", pipeline_ns, f"pipeline/{name}", "--for=condition=Ready", "--timeout=300s",
                    timeout=330)
    claims = {c["metadata"]["name"] for c in get_json(cluster, "pvc", "-n", pipeline_ns)["items"]
              if c["metadata"]["name"].startswith(f"data-{name}-")}
    topics = {t for t in topic_counts(cluster, pipeline_ns) if t.startswith(f"{name}-")}
    assert claims and len(topics) == 4, (claims, topics)
    cluster.kubectl("delete", "-n", pipeline_ns, f"pipeline/{name}", "--wait=true", "--timeout=300s", timeout=330)
    wait_for(lambda: not pods_of(cluster, pipeline_ns, name), READY_TIMEOUT, f"{name}'s pods gone")
    left = {c["metadata"]["name"] for c in get_json(cluster, "pvc", "-n", pipeline_ns)["items"]}
    assert claims <= left, (claims, left)
    assert topics <= set(topic_counts(cluster, pipeline_ns))


def pods_of(cluster: E2ECluster, namespace: str, pipeline: str) -> list[str]:
    return [p["metadata"]["name"] for p in get_json(cluster, "pods", "-n", namespace, "-l",
                                                       f"app.kubernetes.io/instance={pipeline}")["items"]]


def test_deleting_the_pipeline_honours_its_deletion_policy(
    cluster: E2ECluster, pipeline_ns: str, toolbox: str
) -> None:
    claims = [c["metadata"]["name"] for c in get_json(cluster, "pvc", "-n", pipeline_ns)["items"]
              if c["metadata"]["name"].startswith(f"data-{PIPELINE}-")]
    assert claims
    cluster.kubectl("delete", "-n", pipeline_ns, f"pipeline/{PIPELINE}", "--wait=true", "--timeout=300s",
                         timeout=330)
    left = {c["metadata"]["name"] for c in get_json(cluster, "pvc", "-n", pipeline_ns)["items"]}
    wait_for(lambda: not (set(claims) & {c["metadata"]["name"] for c in
                                         get_json(cluster, "pvc", "-n", pipeline_ns)["items"]}),
             120, f"the Pipeline's claims {claims} deleted (deletionPolicy Delete; left {left})")
    def topics_gone() -> bool:
        return not any(name.startswith(f"{PIPELINE}-") for name in topic_counts(cluster, pipeline_ns))

    wait_for(topics_gone, 120, "the Pipeline's topics deleted through the Admin API (deletionPolicy Delete)")
