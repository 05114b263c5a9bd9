"""The test control plane behaves like a real cluster: workloads run, GC works, CRD schemas are enforced."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from adnomaly.services.kube import KubeControlPlane

pytestmark = pytest.mark.operator

# Upstream CRDs (Strimzi, Flink Kubernetes Operator), kept outside the project as test data.
THIRD_PARTY_CRDS = Path(__file__).resolve().parents[3] / "shared" / "third_party" / "crds"


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # kwok never pulls images nor runs containers: any image name will do
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/adnomaly/never-pulled:1"}]},
            },
        },
    }


def _items(kube: KubeControlPlane, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    output = kube.kubectl("get", kind, f"--namespace={namespace}", f"--selector={selector}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(output)["items"]
    return items


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == kind:
            return str(condition["status"])
    return None


def test_fake_nodes_are_ready(kube: KubeControlPlane) -> None:
    nodes = json.loads(kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(node["metadata"]["name"] for node in nodes) == sorted(kube.nodes)
    assert all(_condition(node, "Ready") == "True" for node in nodes)


def test_kwok_renews_the_fake_nodes_leases_itself(kube: KubeControlPlane) -> None:
    """No simulator heartbeats: without renewals the node controller marks the nodes NotReady after its
    grace period, and every pod on them loses readiness for good."""
    def renewals() -> dict[str, str]:
        leases = json.loads(kube.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json").stdout)["items"]
        return {lease["metadata"]["name"]: lease["spec"]["renewTime"] for lease in leases}

    first = renewals()
    assert set(kube.nodes) <= set(first), first
    deadline = time.monotonic() + 40  # kwok renews at a quarter of the 40 s lease duration
    while time.monotonic() < deadline:
        later = renewals()
        if all(later[node] != first[node] for node in kube.nodes):
            return
        time.sleep(2)
    raise AssertionError(f"kwok did not renew the node leases within 40 s: {first} -> {renewals()}")


def test_deployment_pods_become_running_and_ready(kube: KubeControlPlane, namespace: str) -> None:
    kube.kubectl("apply", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(_deployment("web", 3)))
    kube.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Available",
        "--timeout=120s",
        "deployment/web",
        timeout=150,
    )
    kube.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Ready",
        "--timeout=120s",
        "pod",
        "--selector=app=web",
        timeout=150,
    )

    pods = _items(kube, "pods", namespace, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert _condition(pod, "Ready") == "True"
        assert pod["spec"]["nodeName"] in kube.nodes  # placed by kube-scheduler
        assert pod["status"].get("podIP")  # filled in by kwok
    deployment = json.loads(kube.kubectl("get", "deployment/web", f"--namespace={namespace}", "-o", "json").stdout)
    assert deployment["status"]["readyReplicas"] == 3


def test_deleting_a_deployment_garbage_collects_its_replicaset(kube: KubeControlPlane, namespace: str) -> None:
    kube.kubectl("apply", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(_deployment("gc", 1)))
    kube.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Available",
        "--timeout=120s",
        "deployment/gc",
        timeout=150,
    )
    (replicaset,) = _items(kube, "replicasets", namespace, "app=gc")
    (owner,) = replicaset["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Deployment", "gc")
    assert len(_items(kube, "pods", namespace, "app=gc")) == 1

    # Background cascading deletion: the Deployment goes at once, the garbage collector removes the rest.
    kube.kubectl("delete", "deployment/gc", f"--namespace={namespace}", "--cascade=background", "--wait=false")
    kube.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=delete",
        "--timeout=120s",
        f"replicaset/{replicaset['metadata']['name']}",
        timeout=150,
    )
    kube.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=delete",
        "--timeout=120s",
        "pod",
        "--selector=app=gc",
        timeout=150,
    )
    assert _items(kube, "replicasets", namespace, "app=gc") == []
    assert _items(kube, "pods", namespace, "app=gc") == []


@pytest.fixture(scope="module")
def third_party_crds(kube: KubeControlPlane) -> list[str]:
    paths = sorted(THIRD_PARTY_CRDS.glob("*.y*ml"))
    assert paths, f"no CRDs under {THIRD_PARTY_CRDS}"
    return kube.install_crds(paths)


def _kafka(name: str, kafka: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "Kafka",
            "metadata": {"name": name},
            "spec": {
                "kafka": kafka,
                "entityOperator": {"topicOperator": {}, "userOperator": {}},
            },
        }
    )


def test_upstream_crds_become_established(third_party_crds: list[str]) -> None:
    assert "customresourcedefinition.apiextensions.k8s.io/kafkas.kafka.strimzi.io" in third_party_crds
    assert "customresourcedefinition.apiextensions.k8s.io/flinkdeployments.flink.apache.org" in third_party_crds


@pytest.mark.parametrize(
    ("kafka", "complaints"),
    [
        pytest.param({}, ["spec.kafka.listeners: Required value"], id="no-listeners"),
        pytest.param(
            {"listeners": [{"name": "Plain_1", "port": 80, "type": "bogus", "tls": False}]},
            [
                'spec.kafka.listeners[0].type: Unsupported value: "bogus"',
                "spec.kafka.listeners[0].port: Invalid value: 80",
                "spec.kafka.listeners[0].name: Invalid value",
            ],
            id="bad-listener",
        ),
        pytest.param(
            {"listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}], "replicas": 3},
            [".spec.kafka.replicas: field not declared in schema"],
            id="unknown-field",
        ),
    ],
)
def test_api_server_rejects_an_invalid_kafka(
    kube: KubeControlPlane, namespace: str, third_party_crds: list[str], kafka: dict[str, Any], complaints: list[str]
) -> None:
    done = kube.kubectl(
        "apply", "--server-side", f"--namespace={namespace}", "-f", "-", stdin=_kafka("broken", kafka), check=False
    )
    assert done.returncode != 0
    for complaint in complaints:
        assert complaint in done.stderr
    assert kube.kubectl("get", "kafkas", f"--namespace={namespace}", "-o", "name").stdout == ""


def test_api_server_accepts_a_valid_kafka(kube: KubeControlPlane, namespace: str, third_party_crds: list[str]) -> None:
    kafka = {
        "listeners": [
            {"name": "plain", "port": 9092, "type": "internal", "tls": False},
            {"name": "tls", "port": 9093, "type": "internal", "tls": True},
        ],
        "config": {"offsets.topic.replication.factor": 1},
    }
    kube.kubectl("apply", "--server-side", f"--namespace={namespace}", "-f", "-", stdin=_kafka("events", kafka))
    stored = json.loads(kube.kubectl("get", "kafka/events", f"--namespace={namespace}", "-o", "json").stdout)
    assert stored["spec"]["kafka"]["listeners"][1]["name"] == "tls"
