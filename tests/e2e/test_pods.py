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
condition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml
from adnomaly.services.helm import CHART, ensure_helm, run_helm
from adnomaly.services.images import ImageArchive, ensure_images
from adnomaly.services.node import RealCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

SYSTEM_NAMESPACE = "adnomaly-system"
RELEASE = "adnomaly"
READY_TIMEOUT = 300.0
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 2.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except AssertionError as error:  # a check may say why it is not there yet
            result, last = None, error
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")


def get_json(cluster: RealCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def describe_pods(cluster: RealCluster, namespace: str) -> str:
    """What a person would look at when a pod does not come up: phases, waiting reasons, recent events."""
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"{pods}\n{events[-4000:]}"


def split_ref(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


@pytest.fixture(scope="module")
def images(real_cluster: RealCluster) -> dict[str, ImageArchive]:
    """Every image the suite runs, built (or found in the cache) and imported into the node."""
    built = ensure_images()
    assert real_cluster.node is not None
    real_cluster.node.import_images(built.values())
    return built


@pytest.fixture(scope="module")
def operator_release(real_cluster: RealCluster, images: dict[str, ImageArchive]) -> Iterator[str]:
    """`helm install charts/adnomaly` with the locally built images: what a user runs, image names aside."""
    helm = ensure_helm()
    repository, tag = split_ref(images["adnomaly-operator"].ref)
    sets = {
        "operator.image.repository": repository,
        "operator.image.tag": tag,
        "images.component": images["adnomaly"].ref,
        "images.postgres": images["test-postgres"].ref,
        "images.redis": images["test-redis"].ref,
        "images.minio": images["test-minio"].ref,
        "images.minioClient": images["test-mc"].ref,
    }
    kube = ["--kubeconfig", str(real_cluster.kubeconfig)]
    try:
        run_helm(helm, "install", RELEASE, str(CHART), *kube, "--namespace", SYSTEM_NAMESPACE, "--create-namespace",
                 *[f"--set={key}={value}" for key, value in sets.items()], "--wait", "--timeout=5m", timeout=360)
    except Exception as error:
        raise AssertionError(f"helm install failed: {error}\n{describe_pods(real_cluster, SYSTEM_NAMESPACE)}") from None
    yield RELEASE
    run_helm(helm, "uninstall", RELEASE, *kube, "--namespace", SYSTEM_NAMESPACE, "--wait", "--timeout=2m", timeout=180)


def operator_pod(cluster: RealCluster) -> dict[str, Any]:
    pods = get_json(cluster, "pods", "-n", SYSTEM_NAMESPACE, "-l", "app.kubernetes.io/name=adnomaly-operator")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_helm_install_runs_the_operator_ready_with_only_the_charts_rbac(
    real_cluster: RealCluster, operator_release: str
) -> None:
    pod = wait_for(lambda: (p := operator_pod(real_cluster)) and pod_ready(p) and p, READY_TIMEOUT,
                   "the operator pod Ready")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0, status
    assert status["imageID"] or status["image"]
    account = pod["spec"]["serviceAccountName"]
    subject = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{account}"

    def can(verb: str, resource: str, namespace: str | None = None) -> bool:
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        done = real_cluster.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *scope, check=False)
        return done.stdout.strip() == "yes"

    # What the operator needs, granted by the chart alone; nothing broader was bound by the suite.
    assert can("patch", "pipelines.adnomaly.io") and can("create", "statefulsets.apps", "default")
    assert not can("create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not can("get", "nodes")
    # kopf is up and watching: its startup lines are in the container log (the kubelet serves it).
    log = real_cluster.kubectl("logs", "-n", SYSTEM_NAMESPACE, pod["metadata"]["name"]).stdout
    assert "Traceback" not in log, log[-3000:]


def test_operator_runs_as_the_hardened_user_on_a_read_only_root(
    real_cluster: RealCluster, operator_release: str
) -> None:
    pod = operator_pod(real_cluster)
    name = pod["metadata"]["name"]
    identity = real_cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c",
                                    "import os; print(os.getuid(), os.getgid())").stdout.split()
    assert identity == ["10001", "10001"]
    probe = ("import pathlib\ntry:\n    pathlib.Path('/opt/x').write_text('x')\nexcept OSError as e:\n"
             "    print(e.errno)\npathlib.Path('/tmp/ok').write_text('x'); print('tmp-ok')")
    out = real_cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c", probe).stdout.split()
    assert out == ["30", "tmp-ok"], out  # EROFS on the image's root, /tmp is the chart's emptyDir
    caps = real_cluster.kubectl("exec", "-n", SYSTEM_NAMESPACE, name, "--", "python", "-c",
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


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)
