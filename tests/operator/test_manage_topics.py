"""`kafka.external.manageTopics` end to end: the operator (as users run it, against the real API server)
owns a Pipeline's topics on a real local Kafka broker through the Admin API and reports the outcome as the
`TopicsReady` condition: topics created and grown, a decrease refused (Degraded, nothing applied), an
unreachable broker a condition (no crash, no components), `Retain` keeping and `Delete` deleting the
topics with the Pipeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from adnomaly.kafka_client import admin_client
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.names import LABEL_PIPELINE
from adnomaly_operator.testing import OperatorProcess

from tests.operator.operator_harness import (
    apply,
    condition,
    install_crds,
    items,
    pipeline_doc,
    status,
    wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.operator, pytest.mark.slow]

ROLES = ("raw", "dlq", "features", "anomalies")


@pytest.fixture(scope="module")
def cluster(kube: KubeControlPlane) -> KubeControlPlane:
    install_crds(kube)
    return kube


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    kafka = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()


def spec(bootstrap: str, raw: int = 2, policy: str = "Retain") -> dict[str, Any]:
    topics = {role: {"partitions": 1, "retention": "1d", "replicas": 1} for role in ROLES}
    topics["raw"]["partitions"] = raw
    return {
        "kafka": {"external": {"bootstrapServers": bootstrap, "manageTopics": True}, "topics": topics},
        "storage": {"postgres": {"external": {"dsnSecretRef": {"name": "pg-dsn"}}}},
        "lake": {"enabled": False},
        "deletionPolicy": policy,
    }


def partitions(broker: KafkaBroker, prefix: str) -> dict[str, int]:
    admin = admin_client(broker.bootstrap_servers)
    found = admin.list_topics(timeout=10).topics
    return {n: len(t.partitions) for n, t in found.items() if n.startswith(f"{prefix}-") and t.error is None}


def topics_ready(cluster: KubeControlPlane, ns: str, name: str, value: str, reason: str,
                 timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(cluster, ns, name)
        cond = condition(st, "TopicsReady")
        return st if cond.get("status") == value and cond.get("reason") == reason else None

    try:
        return wait_for(check, timeout, f"TopicsReady={value} ({reason}) on {ns}/{name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status(cluster, ns, name), indent=1)}") from None


def test_topics_are_created_grown_and_a_decrease_is_refused(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess, broker: KafkaBroker
) -> None:
    name = f"mt-{namespace[-8:]}"  # topic names are the broker's, shared by every namespace
    expected = {f"{name}-{role}": 1 for role in ROLES} | {f"{name}-raw": 2}
    apply(cluster, namespace, pipeline_doc(name, spec(broker.bootstrap_servers)))
    st = topics_ready(cluster, namespace, name, "True", "TopicsReady")
    assert st["components"]["topics"] == "4/4"
    assert partitions(broker, name) == expected
    # with the topics in place, the components are rolled out
    wait_for(lambda: items(cluster, namespace, "deployments", f"{LABEL_PIPELINE}={name}"), 60, "the components")

    apply(cluster, namespace, pipeline_doc(name, spec(broker.bootstrap_servers, raw=5)))
    wait_for(lambda: partitions(broker, name).get(f"{name}-raw") == 5, 60, "raw grown to 5 partitions")

    # Bypass the CRD's transition rule (partitions may not decrease): a new Pipeline of the same name,
    # after the first one was deleted under Retain (which keeps the topics).
    cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s")
    time.sleep(2)
    assert partitions(broker, name).get(f"{name}-raw") == 5  # Retain: the topics stay
    wait_for(lambda: not items(cluster, namespace, "deployments", f"{LABEL_PIPELINE}={name}"), 90,
             "the old components to be collected")
    apply(cluster, namespace, pipeline_doc(name, spec(broker.bootstrap_servers, raw=3)))
    st = wait_phase(cluster, namespace, name, "Degraded", 60)
    cond = condition(st, "TopicsReady")
    assert cond["status"] == "False" and cond["reason"] == "PartitionDecrease"
    assert f"topic {name}-raw has 5 partitions" in cond["message"]
    assert condition(st, "Degraded")["reason"] == "PartitionDecrease"
    time.sleep(3)
    assert partitions(broker, name).get(f"{name}-raw") == 5
    assert not items(cluster, namespace, "deployments", f"{LABEL_PIPELINE}={name}")  # nothing applied

    # asking for at least the current count again: ready, and under Delete the topics go with the Pipeline
    apply(cluster, namespace, pipeline_doc(name, spec(broker.bootstrap_servers, raw=5, policy="Delete")))
    topics_ready(cluster, namespace, name, "True", "TopicsReady", timeout=90)  # within the retry back-off
    cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s")
    wait_for(lambda: not partitions(broker, name), 60, "the topics to be deleted under Delete")


def test_an_unreachable_broker_is_a_condition_and_starts_no_components(
    cluster: KubeControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    name = "nowhere"
    apply(cluster, namespace, pipeline_doc(name, spec("127.0.0.1:1")))
    st = topics_ready(cluster, namespace, name, "False", "KafkaUnreachable", timeout=90)
    assert st["phase"] == "Degraded" and st["components"]["topics"] == "0/4"
    assert "127.0.0.1:1" in condition(st, "TopicsReady")["message"]
    assert not items(cluster, namespace, "deployments", f"{LABEL_PIPELINE}={name}")
    assert operator.process.running
    # the finalizer cannot reach Kafka either: under Retain it needs not to; the Pipeline goes at once
    cluster.kubectl("delete", "pipeline", name, f"--namespace={namespace}", "--timeout=60s")
