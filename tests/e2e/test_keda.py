"""KEDA for real (issue 16): KEDA's operator and metrics adapter, built from KEDA's Go module, scale the
processor Deployment of a Pipeline on the real node from the ScaledObject the operator rendered, on real
Kafka lag; meanwhile the operator's reconciles leave the Deployment's `replicas` to KEDA.

    make e2e PYTEST_ARGS="-k keda"     (root; builds KEDA on first use: tools/keda/build.sh, cached)

How KEDA runs beside the node (processes in the node's network namespace, registered as the cluster's
external metrics API): adnomaly.services.keda. The Pipeline's Kafka is the suite's plain broker, advertising
its Service IP (KEDA's processes do not use the cluster DNS). The lag is made the plain way: records written
to the raw topic faster than one processor, held to a small CPU limit, reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from adnomaly.services.base import ServiceError
from adnomaly.services.keda import KedaOnNode, ensure_keda

from tests.e2e.checks import describe_pods, dump, get_json, wait_for
from tests.e2e.providers import E2ECluster, NodeCluster
from tests.e2e.test_pods import clickstream_event, kafka_objects, pipeline_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

NAMESPACE = "adnomaly-keda"
PIPELINE = "scaled"
PROCESSOR = f"{PIPELINE}-processor"
PARTITIONS = 4
BACKLOG = 300_000  # records: minutes of work for one CPU-limited processor
MANAGER = "adnomaly-operator"


@pytest.fixture(scope="module")
def keda(cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KedaOnNode]:
    if not isinstance(cluster, NodeCluster):
        pytest.skip("KEDA runs as processes beside the real node (ADNOMALY_E2E_PROVIDER=node)")
    try:
        ensure_keda()
    except ServiceError as error:
        pytest.skip(f"KEDA did not build from its Go module (tools/keda/build.sh): {error}")
    keda = KedaOnNode(cluster.cluster, tmp_path_factory.mktemp("keda"))
    try:
        keda.start()
    except ServiceError:
        keda.stop()
        raise
    yield keda
    keda.stop()


def kafka_on_service_ip(cluster: E2ECluster, image: str) -> str:
    """The suite's broker, advertising its Service IP; returns the bootstrap address."""
    service, statefulset = kafka_objects(NAMESPACE, image)
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(service))
    ip = get_json(cluster, "service", "kafka", "-n", NAMESPACE)["spec"]["clusterIP"]
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e if e["name"] != "KAFKA_ADVERTISED_HOST" else {**e, "value": ip} for e in container["env"]]
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(statefulset))
    cluster.kubectl("rollout", "status", "-n", NAMESPACE, "statefulset/kafka", "--timeout=300s", timeout=330)
    return f"{ip}:9092"


@pytest.fixture(scope="module")
def scaled_pipeline(cluster: E2ECluster, operator_release: str, images: dict[str, str], keda: KedaOnNode
                    ) -> Iterator[str]:  # fmt: skip
    """A Pipeline whose processor KEDA scales on the raw topic's lag; returns its bootstrap address."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    bootstrap = kafka_on_service_ip(cluster, images["test-kafka"])
    manifest = pipeline_manifest(PIPELINE, NAMESPACE, bootstrap, components={"processor": {
        "autoscaling": {"minReplicas": 1, "maxReplicas": PARTITIONS, "lagThreshold": 1000,
                        "scaleDownStabilization": "5m"},
        "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "250m"}},
    }})
    spec = manifest["spec"]
    spec["kafka"]["external"]["manageTopics"] = True
    spec["kafka"]["topics"]["raw"]["partitions"] = PARTITIONS
    spec["source"] = {"generator": {"enabled": False}}  # the lag is made below, all at once
    cluster.kubectl("apply", "-f", "-", stdin=dump(manifest))
    done = cluster.kubectl("wait", "-n", NAMESPACE, f"pipeline/{PIPELINE}", "--for=condition=Ready",
                           "--timeout=600s", timeout=630, check=False)  # fmt: skip
    if done.returncode != 0:
        status = cluster.kubectl("get", "-n", NAMESPACE, f"pipeline/{PIPELINE}", "-o", "yaml", check=False)
        raise AssertionError(f"Pipeline not Ready: {done.stderr}\n{status.stdout[-3000:]}\n"
                             f"{describe_pods(cluster, NAMESPACE)}\n{keda.logs()}")  # fmt: skip
    yield bootstrap
    # while KEDA still runs: it removes its finalizer from the ScaledObject that goes with the Pipeline
    # (stopped first, it would leave the namespace Terminating for the rest of the session)
    cluster.kubectl("delete", "pipeline", PIPELINE, "-n", NAMESPACE, "--timeout=120s", timeout=150, check=False)
    cluster.kubectl("wait", "--for=delete", "scaledobject", "--all", "-n", NAMESPACE, "--timeout=60s", timeout=90,
                    check=False)  # fmt: skip
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


def produce_backlog(cluster: E2ECluster, image: str, bootstrap: str, topic: str, count: int) -> int:
    """Write `count` clickstream events to `topic` from a pod of the components image; returns the count acked."""
    sample = json.dumps(clickstream_event(0))
    code = f"""
import json, sys
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": "{bootstrap}", "linger.ms": 50, "batch.num.messages": 10000,
              "compression.type": "lz4", "queue.buffering.max.messages": 500000}})
base = json.loads({sample!r})
acked = 0
def done(err, msg):
    global acked
    acked += err is None
for n in range({count}):
    event = dict(base, user_id_hash=f"u{{n}}")
    while True:
        try:
            p.produce("{topic}", json.dumps(event).encode(), key=str(n % 97).encode(), on_delivery=done)
            break
        except BufferError:
            p.poll(0.05)
    if n % 10000 == 0:
        p.poll(0)
p.flush(120)
print(json.dumps(acked))
"""
    pod = "backlog"
    cluster.kubectl("run", pod, "-n", NAMESPACE, f"--image={image}", "--image-pull-policy=IfNotPresent",
                    "--restart=Never", "--command", "--", "python", "-c", code)  # fmt: skip
    wait_for(lambda: get_json(cluster, "pod", pod, "-n", NAMESPACE)["status"].get("phase") in ("Succeeded", "Failed")
             or None, 300, "the backlog producer to finish", interval=2.0)  # fmt: skip
    logs = cluster.kubectl("logs", "-n", NAMESPACE, pod).stdout.strip().splitlines()
    return int(logs[-1]) if logs else 0


def operator_entry(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator's server-side-apply entry in the Deployment's managedFields."""
    entries = [e for e in deployment["metadata"].get("managedFields", [])
               if e["manager"] == MANAGER and e["operation"] == "Apply"]  # fmt: skip
    assert len(entries) == 1, [e["manager"] for e in deployment["metadata"].get("managedFields", [])]
    return entries[0]


def test_keda_scales_the_processor_on_real_lag_and_the_operator_leaves_replicas_alone(
    cluster: E2ECluster, images: dict[str, str], keda: KedaOnNode, scaled_pipeline: str
) -> None:
    scaled = get_json(cluster, "scaledobject", PROCESSOR, "-n", NAMESPACE)
    trigger = scaled["spec"]["triggers"][0]
    assert (trigger["type"], trigger["metadata"]["topic"], trigger["metadata"]["lagThreshold"]) == (
        "kafka", f"{PIPELINE}-raw", "1000")
    # KEDA took it: its HPA exists and reads the external metric through the adapter
    hpa = wait_for(lambda: get_json(cluster, "hpa", f"keda-hpa-{PROCESSOR}", "-n", NAMESPACE), 120,
                   f"KEDA's HPA for {PROCESSOR}\n{keda.logs()}")  # fmt: skip
    assert hpa["spec"]["maxReplicas"] == PARTITIONS
    before = get_json(cluster, "deployment", PROCESSOR, "-n", NAMESPACE, "--show-managed-fields")
    assert before["spec"]["replicas"] == 1
    entry_before = operator_entry(before)
    assert "f:replicas" not in json.dumps(entry_before["fieldsV1"]), "the operator must not own replicas"
    generation = get_json(cluster, "pipeline", PIPELINE, "-n", NAMESPACE)["metadata"]["generation"]

    started = time.monotonic()
    acked = produce_backlog(cluster, images["adnomaly"], scaled_pipeline, f"{PIPELINE}-raw", BACKLOG)
    assert acked == BACKLOG
    written = time.monotonic() - started

    def scaled_out() -> int | None:
        replicas = get_json(cluster, "deployment", PROCESSOR, "-n", NAMESPACE)["spec"]["replicas"]
        return replicas if replicas > 1 else None

    try:
        replicas = wait_for(scaled_out, 300, "KEDA to scale the processor past one replica", interval=3.0)
    except AssertionError as error:
        hpa_now = cluster.kubectl("describe", "hpa", f"keda-hpa-{PROCESSOR}", "-n", NAMESPACE, check=False).stdout
        raise AssertionError(f"{error}\n{hpa_now[-2500:]}\n{keda.logs()}") from None
    assert 1 < replicas <= PARTITIONS
    print(f"KEDA scaled {PROCESSOR} 1 -> {replicas} replicas {time.monotonic() - started:.0f} s after the backlog "
          f"began (written in {written:.0f} s)")

    # reconciles of the Pipeline while the scaler has changed replicas (one asked for by a change to the
    # Pipeline's metadata, and the operator's own periodic ones): the operator writes nothing to the Deployment
    cluster.kubectl("annotate", "pipeline", PIPELINE, "-n", NAMESPACE, "--overwrite", "e2e.adnomaly.io/poke=1")
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        after = get_json(cluster, "deployment", PROCESSOR, "-n", NAMESPACE, "--show-managed-fields")
        assert after["spec"]["replicas"] > 1, "the scaler's count was reset"
        assert operator_entry(after) == entry_before, "the operator wrote the Deployment while KEDA scaled it"
        time.sleep(3)
    assert get_json(cluster, "pipeline", PIPELINE, "-n", NAMESPACE)["metadata"]["generation"] == generation
    pods = get_json(cluster, "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=processor")["items"]
    assert len(pods) > 1, [p["metadata"]["name"] for p in pods]
