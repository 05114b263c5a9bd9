"""`kafka.external.manageTopics` against a real Kafka broker: the operator's Admin API layer
(`adnomaly_operator.kafka_admin`, driven by the pure `topics.decide_topics`) creates the pipeline's topics,
grows their partitions, alters their retention, refuses a decrease (changing nothing), and on Pipeline
deletion deletes them under `deletionPolicy: Delete` and keeps them under `Retain`. On a SASL broker it logs
in with the credentials Secret (served by a fake API client) and a wrong password is a condition, never
shown. The Kubernetes API is faked here; tests/operator runs the same against a real API server.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from adnomaly.kafka_client import admin_client
from adnomaly.services.base import wait_until
from adnomaly.services.kafka import SASL_ADMIN, KafkaBroker
from adnomaly.spec import parse_pipeline
from adnomaly_operator.desired import KafkaAdminPlan, kube_plan
from adnomaly_operator.kafka_admin import TopicAdmin, TopicAdminError, sync_topics
from adnomaly_operator.reconcile import Reconciler
from adnomaly_operator.topics import KAFKA_AUTH_FAILED, KAFKA_UNREACHABLE, PARTITION_DECREASE
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

DAY_MS = 86_400_000


def spec(bootstrap: str, raw: int = 2, raw_retention: str = "1d", policy: str = "Retain",
         **external: Any) -> dict[str, Any]:
    return {
        "kafka": {
            "external": {"bootstrapServers": bootstrap, "manageTopics": True, **external},
            "topics": {
                "raw": {"partitions": raw, "retention": raw_retention, "replicas": 1},
                "dlq": {"partitions": 1, "retention": "30d", "replicas": 1},
                "features": {"partitions": 1, "retention": "3d", "replicas": 1},
                "anomalies": {"partitions": 1, "retention": "30d", "replicas": 1},
            },
        },
        "deletionPolicy": policy,
    }


def body(name: str, spec_: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": spec_}


def admin_plan(name: str, spec_: dict[str, Any]) -> KafkaAdminPlan:
    plan = kube_plan(parse_pipeline(body(name, spec_)), "ns").kafka_admin
    assert plan is not None
    return plan


def broker_view(bootstrap: str, names: list[str], settings: dict[str, str] | None = None) -> dict[str, tuple[int, str]]:
    """What the broker itself says: topic → (partitions, retention.ms), for the named topics that exist."""
    admin = admin_client(bootstrap, **(settings or {}))
    topics = admin.list_topics(timeout=10).topics
    present = [n for n in names if n in topics and topics[n].error is None]
    out: dict[str, tuple[int, str]] = {}
    if not present:
        return out
    for resource, future in admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present]).items():
        out[resource.name] = (len(topics[resource.name].partitions), future.result(10)["retention.ms"].value)
    return out


class FakeKube:
    """The two API calls the reconciler's finalizer and login make: a Secret and a LIST of retained kinds."""

    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}

    async def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        data = self.secrets.get(name)
        return None if data is None else {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        return {"items": []}


def reconciler(kube: FakeKube | None = None, timeout: float = 10.0) -> Reconciler:
    def factory(plan: KafkaAdminPlan, login: Any) -> TopicAdmin:
        return TopicAdmin(plan, login, timeout=timeout)

    return Reconciler(kube or FakeKube(), lambda key: {}, topic_admin=factory)  # type: ignore[arg-type]


@pytest.fixture
def pipeline_name() -> str:
    return f"mt-{uuid.uuid4().hex[:8]}"


def test_create_grow_alter_and_refuse_a_decrease(kafka: KafkaBroker, pipeline_name: str) -> None:
    bootstrap = kafka.bootstrap_servers
    plan = admin_plan(pipeline_name, spec(bootstrap))
    names = [t.name for t in plan.topics]
    assert sorted(names) == sorted(f"{pipeline_name}-{r}" for r in ("raw", "dlq", "features", "anomalies"))
    raw = f"{pipeline_name}-raw"

    created = sync_topics(TopicAdmin(plan, None), plan.topics)
    assert sorted(t.name for t in created.creates) == sorted(names)
    wait_until(lambda: len(broker_view(bootstrap, names)) == 4, 30, "the four topics")
    view = broker_view(bootstrap, names)
    assert view[raw] == (2, str(DAY_MS)) and view[f"{pipeline_name}-dlq"] == (1, str(30 * DAY_MS))

    again = sync_topics(TopicAdmin(plan, None), plan.topics)
    assert again.changes == 0 and not again.blocked  # idempotent

    grown = admin_plan(pipeline_name, spec(bootstrap, raw=4, raw_retention="2d"))
    decision = sync_topics(TopicAdmin(grown, None), grown.topics)
    assert [(i.topic, i.current, i.desired) for i in decision.increases] == [(raw, 2, 4)]
    assert [(c.topic, dict(c.values)) for c in decision.config_changes] == [(raw, {"retention.ms": str(2 * DAY_MS)})]
    # (the broker applies a committed change from its metadata log a moment after answering)
    wait_until(lambda: broker_view(bootstrap, [raw])[raw] == (4, str(2 * DAY_MS)), 30, "raw grown, 2d retention")

    # a decrease (with a retention change alongside) is refused and nothing at all is applied
    shrunk = admin_plan(pipeline_name, spec(bootstrap, raw=3, raw_retention="5d"))
    refused = sync_topics(TopicAdmin(shrunk, None), shrunk.topics)
    assert refused.blocked and refused.changes == 0
    assert f"topic {raw} has 4 partitions" in refused.refused[0]
    time.sleep(1)  # an applied change would show by now
    assert broker_view(bootstrap, [raw])[raw] == (4, str(2 * DAY_MS))


def test_reconciler_condition_for_a_decrease_and_an_unreachable_broker(kafka: KafkaBroker, pipeline_name: str) -> None:
    rec = reconciler()
    plan = admin_plan(pipeline_name, spec(kafka.bootstrap_servers, raw=3))
    ok, _ = asyncio.run(rec._sync_topics(("ns", pipeline_name), plan))
    assert ok.ready and ok.display == "4/4"
    smaller = admin_plan(pipeline_name, spec(kafka.bootstrap_servers, raw=1))
    refused, retry = asyncio.run(rec._sync_topics(("ns", pipeline_name), smaller))
    assert (refused.ready, refused.reason, retry) == (False, PARTITION_DECREASE, 2.0)
    assert broker_view(kafka.bootstrap_servers, [f"{pipeline_name}-raw"])[f"{pipeline_name}-raw"][0] == 3

    nowhere = admin_plan(pipeline_name, spec("127.0.0.1:1"))
    down, _ = asyncio.run(reconciler(timeout=2.0)._sync_topics(("ns", pipeline_name), nowhere))
    assert (down.ready, down.reason) == (False, KAFKA_UNREACHABLE) and "127.0.0.1:1" in down.message


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_pipeline_deletion_keeps_or_deletes_the_topics(
    kafka: KafkaBroker, pipeline_name: str, policy: str
) -> None:
    spec_ = spec(kafka.bootstrap_servers, policy=policy)
    plan = admin_plan(pipeline_name, spec_)
    names = [t.name for t in plan.topics]
    sync_topics(TopicAdmin(plan, None), plan.topics)
    bystander = f"{pipeline_name}-not-ours"  # a topic of the same prefix that the plan does not name
    admin = admin_client(kafka.bootstrap_servers)  # kept referenced until its future resolves
    for _, future in admin.create_topics([NewTopic(bystander, 1, 1)]).items():
        future.result(10)
    kept = asyncio.run(reconciler().finalize("ns", pipeline_name, body(pipeline_name, spec_)))
    if policy == "Retain":
        time.sleep(1)  # a deletion, had one been requested, would show by now
        assert sorted(broker_view(kafka.bootstrap_servers, [*names, bystander])) == sorted([*names, bystander])
        assert sorted(kept) == sorted(f"Kafka topic {n}" for n in names)
    else:
        wait_until(lambda: sorted(broker_view(kafka.bootstrap_servers, [*names, bystander])) == [bystander], 30,
                   "only the pipeline's topics to be deleted")
        assert kept == []
        # a second finalizer pass (a retry) finds nothing to delete and succeeds
        assert asyncio.run(reconciler().finalize("ns", pipeline_name, body(pipeline_name, spec_))) == []


def test_sasl_login_from_the_secret_and_a_wrong_password(
    make_kafka: Callable[..., KafkaBroker], pipeline_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_kafka(sasl=True)
    creds = {"username": SASL_ADMIN, "password": broker.admin_password}
    spec_ = spec(broker.bootstrap_servers, securityProtocol="SASL_PLAINTEXT",
                 credentialsSecretRef={"name": "kafka-creds"}, policy="Delete")
    plan = admin_plan(pipeline_name, spec_)
    rec = reconciler(FakeKube({"kafka-creds": creds}))
    ok, _ = asyncio.run(rec._sync_topics(("ns", pipeline_name), plan))
    assert ok.ready, ok.message
    names = [t.name for t in plan.topics]
    assert sorted(broker_view(broker.bootstrap_servers, names, broker.admin_client_settings())) == sorted(names)

    wrong = "not-the-password-" + uuid.uuid4().hex
    bad = reconciler(FakeKube({"kafka-creds": {**creds, "password": wrong}}), timeout=5.0)
    refused, _ = asyncio.run(bad._sync_topics(("ns", pipeline_name), plan))
    assert (refused.ready, refused.reason) == (False, KAFKA_AUTH_FAILED), refused.message
    assert wrong not in refused.message and wrong not in caplog.text
    assert broker.admin_password not in caplog.text

    with pytest.raises(TopicAdminError):  # the finalizer cannot log in: it raises (kopf retries, then lets go)
        asyncio.run(bad.finalize("ns", pipeline_name, body(pipeline_name, spec_)))
    asyncio.run(rec.finalize("ns", pipeline_name, body(pipeline_name, spec_)))
    settings = broker.admin_client_settings()
    wait_until(lambda: broker_view(broker.bootstrap_servers, names, settings) == {}, 30, "the topics to go")
