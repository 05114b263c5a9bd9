"""`manageTopics` on an external Kafka: the spec field, the desired set (the KafkaTopics' own), the pure
decision, its effect on the actions and the status, and the reconciler's sync (login from the Secret,
back-off, no secret in any message) with the Admin API replaced by a fake."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from adnomaly.plan import TopicPlan
from adnomaly.spec import SpecError, parse_pipeline
from adnomaly_operator.actions import plan_actions
from adnomaly_operator.crd import crd
from adnomaly_operator.desired import KafkaAdminPlan, kube_plan
from adnomaly_operator.kafka_admin import Login, TopicAdminError
from adnomaly_operator.reconcile import Reconciler
from adnomaly_operator.render import Owner, RenderContext, render
from adnomaly_operator.render.common import STAGE_APPS, STAGE_TOPICS
from adnomaly_operator.status import Observation, build_status, observe_components, with_topics_sync
from adnomaly_operator.topics import (
    CREDENTIALS_MISSING,
    KAFKA_UNREACHABLE,
    PARTITION_DECREASE,
    RETRY_BACKOFF,
    ExistingTopic,
    TopicDecision,
    decide_topics,
    failure,
    outcome_of,
    retry_delay,
)

from tests.unit.test_render_actions import live_from

UID = "uid-1"
PASSWORD = "s3cr3t-Pa55word-never-shown"
EXTERNAL = {"bootstrapServers": "kafka.example.com:9096", "securityProtocol": "SASL_SSL",
            "credentialsSecretRef": {"name": "kafka-creds"}, "manageTopics": True}
TOPICS = {"raw": {"partitions": 12, "retention": "7d", "replicas": 3},
          "dlq": {"partitions": 1, "retention": "30d", "replicas": 3},
          "features": {"partitions": 6, "retention": "3d", "replicas": 3},
          "anomalies": {"partitions": 3, "retention": "30d", "replicas": 3}}


def pipeline(spec: dict[str, Any], name: str = "p") -> Any:
    return parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
                           "spec": spec})


def admin_plan(**external: Any) -> KafkaAdminPlan:
    plan = kube_plan(pipeline({"kafka": {"external": {**EXTERNAL, **external}, "topics": TOPICS}}), "ns").kafka_admin
    assert plan is not None
    return plan


def topic(name: str, partitions: int, replicas: int = 3, retention_ms: int = 86_400_000) -> TopicPlan:
    return TopicPlan(name, name, partitions, replicas, retention_ms)


def existing(t: TopicPlan, *, partitions: int | None = None, replicas: int | None = None,
             config: Mapping[str, str] | None = None) -> ExistingTopic:
    return ExistingTopic(t.name, t.partitions if partitions is None else partitions,
                         t.replicas if replicas is None else replicas, dict(t.config) if config is None else config)


# --- the spec field -------------------------------------------------------------------------------


def test_manage_topics_is_opt_in_and_needs_a_login_for_sasl() -> None:
    plain = pipeline({"kafka": {"external": {"bootstrapServers": "k:9092"}}})
    assert plain.spec.kafka.external is not None and plain.spec.kafka.external.manage_topics is False
    assert kube_plan(plain, "ns").kafka_admin is None  # default: the topics are the user's
    assert kube_plan(pipeline({}), "ns").kafka_admin is None  # managed Kafka: KafkaTopic CRs
    with pytest.raises(SpecError, match="manageTopics with securityProtocol SASL_PLAINTEXT needs credentialsSecretRef"):
        pipeline({"kafka": {"external": {"bootstrapServers": "k:9092", "securityProtocol": "SASL_PLAINTEXT",
                                         "manageTopics": True}}})
    # without manageTopics the same spec stays as valid as it was; PLAINTEXT needs no login
    pipeline({"kafka": {"external": {"bootstrapServers": "k:9092", "securityProtocol": "SASL_PLAINTEXT"}}})
    unauthenticated = kube_plan(pipeline({"kafka": {"external": {"bootstrapServers": "k:9092",
                                                                  "manageTopics": True}}}), "ns").kafka_admin
    assert unauthenticated is not None and unauthenticated.credentials is None


def test_the_crd_carries_the_field_and_its_cel_rule() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    external = schema["properties"]["kafka"]["properties"]["external"]
    assert external["properties"]["manageTopics"]["type"] == "boolean"
    assert external["properties"]["manageTopics"]["default"] is False
    rules = [v["rule"] for v in external["x-kubernetes-validations"]]
    assert any("manageTopics" in r and "credentialsSecretRef" in r for r in rules)


# --- one desired set ------------------------------------------------------------------------------


def test_the_admin_api_gets_exactly_the_topics_the_kafkatopics_carry() -> None:
    managed = pipeline({"kafka": {"managed": {"replicas": 3}, "topics": TOPICS}})
    kp = kube_plan(managed, "ns")
    rendered = render(kp, RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline", "p", UID)))
    crs = {d.name: d.obj["spec"] for d in rendered if d.kind == "KafkaTopic"}
    plan = admin_plan()
    assert {t.name: {"partitions": t.partitions, "replicas": t.replicas, "config": dict(t.config)}
            for t in plan.topics} == crs
    assert plan.bootstrap == "kafka.example.com:9096" and plan.security_protocol == "SASL_SSL"
    assert plan.credentials is not None
    assert [(r.name, r.key) for r in plan.credentials] == [("kafka-creds", "username"), ("kafka-creds", "password")]
    # an external Kafka renders no KafkaTopic (the operator uses the Admin API instead)
    external = kube_plan(pipeline({"kafka": {"external": EXTERNAL, "topics": TOPICS}}), "ns")
    assert not [d for d in render(external, RenderContext(Owner("a/v1", "Pipeline", "p", UID)))
                if d.kind.startswith("Kafka")]


# --- the decision ---------------------------------------------------------------------------------


def test_missing_topics_are_created_with_partitions_replicas_and_config() -> None:
    raw, dlq = topic("raw", 6), topic("dlq", 1)
    decision = decide_topics([raw, dlq], {})
    assert decision.creates == (dlq, raw) and not decision.increases and not decision.config_changes
    assert decision.changes == 2 and not decision.blocked


def test_topics_in_sync_need_nothing() -> None:
    raw = topic("raw", 6)
    decision = decide_topics([raw], {"raw": existing(raw)})
    assert decision == TopicDecision()
    assert outcome_of(decision, 1).ready and outcome_of(decision, 1).message == "1/1 topics as the spec says"


def test_partitions_only_grow() -> None:
    raw = topic("raw", 12)
    decision = decide_topics([raw], {"raw": existing(raw, partitions=6)})
    assert [(i.topic, i.current, i.desired) for i in decision.increases] == [("raw", 6, 12)]
    assert not decision.creates and not decision.refused


def test_a_partition_decrease_is_refused_and_nothing_else_is_done() -> None:
    raw, dlq, features = topic("raw", 3), topic("dlq", 1), topic("features", 6)
    have = {"raw": existing(raw, partitions=6), "features": existing(features, partitions=2, config={})}
    decision = decide_topics([raw, dlq, features], have)
    assert decision.blocked and decision.changes == 0  # dlq is missing and features could grow: neither happens
    assert decision.refused == (
        "topic raw has 6 partitions and Kafka cannot remove partitions; the spec asks for 3: "
        "set it back to at least 6 (nothing was applied)",
    )
    outcome = outcome_of(decision, 3)
    assert not outcome.ready and outcome.reason == PARTITION_DECREASE and outcome.blocks_everything


def test_only_the_plans_config_keys_that_differ_are_altered() -> None:
    raw = topic("raw", 6, retention_ms=1000)
    have = existing(raw, config={"retention.ms": "5", "min.insync.replicas": "2", "cleanup.policy": "compact"})
    decision = decide_topics([raw], {"raw": have})
    assert [(c.topic, c.values) for c in decision.config_changes] == [("raw", (("retention.ms", "1000"),))]
    missing_key = decide_topics([raw], {"raw": existing(raw, config={"retention.ms": "1000"})})
    assert [c.values for c in missing_key.config_changes] == [(("min.insync.replicas", "2"),)]


def test_a_different_replication_factor_is_reported_not_changed() -> None:
    raw = topic("raw", 6, replicas=3)
    decision = decide_topics([raw], {"raw": existing(raw, replicas=1)})
    assert decision.changes == 0 and not decision.blocked
    assert decision.notes == ("topic raw has replication factor 1, the spec asks for 3 "
                              "(not changed: that is a partition reassignment)",)
    outcome = outcome_of(decision, 1)
    assert outcome.ready and "replication factor 1" in outcome.message


def test_topics_that_are_not_desired_are_never_touched() -> None:
    raw = topic("raw", 6)
    other = ExistingTopic("someone-elses", 1, 1, {"retention.ms": "1"})
    decision = decide_topics([raw], {"raw": existing(raw), "someone-elses": other})
    assert decision == TopicDecision()


def test_retry_back_off_grows_and_is_capped() -> None:
    delays = [retry_delay(n) for n in range(1, 10)]
    assert delays == sorted(delays) and delays[0] == RETRY_BACKOFF[0] and delays[-1] == RETRY_BACKOFF[-1]


# --- actions and status ---------------------------------------------------------------------------


def desired_external() -> list[Any]:
    p = pipeline({"kafka": {"external": EXTERNAL, "topics": TOPICS}})
    return render(kube_plan(p, "ns"), RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline", "p", UID)))


def test_topics_not_ready_gate_the_apps_and_degrade() -> None:
    desired = desired_external()
    stores = {(d.kind, d.name): live_from(d) for d in desired if d.stage < STAGE_TOPICS}  # stores are ready
    ok = plan_actions(desired, stores, owner_uid=UID, deletion_policy="Retain", topics=outcome_of(TopicDecision(), 4))
    assert ok.allowed_stage == STAGE_APPS and not ok.problems
    assert any(d.kind == "Deployment" for d in ok.applies)
    without = plan_actions(desired, stores, owner_uid=UID, deletion_policy="Retain")  # not managed: not gated
    assert without.allowed_stage == STAGE_APPS
    down = failure(KAFKA_UNREACHABLE, "no Kafka broker answered at kafka.example.com:9096", 4)
    gated = plan_actions(desired, stores, owner_uid=UID, deletion_policy="Retain", topics=down)
    assert gated.allowed_stage == STAGE_TOPICS and not gated.blocked
    assert not [d for d in gated.applies + gated.creates if d.stage == STAGE_APPS]
    assert [p.reason for p in gated.problems] == [KAFKA_UNREACHABLE]


def test_a_refused_decrease_blocks_every_write() -> None:
    refused = outcome_of(decide_topics([topic("raw", 1)], {"raw": existing(topic("raw", 1), partitions=4)}), 4)
    actions = plan_actions(desired_external(), {}, owner_uid=UID, deletion_policy="Retain", topics=refused)
    assert actions.blocked and actions.writes == 0 and actions.problems[0].reason == PARTITION_DECREASE


def test_status_shows_topics_ready_and_components_topics() -> None:
    desired = desired_external()
    ready = outcome_of(TopicDecision(), 4)
    observed = with_topics_sync(observe_components(desired, {}), ready)
    assert observed[0]["topics"] == "4/4" and "topics" not in observed[1]
    status = build_status(Observation(2, *observed, topics_sync=ready), None, "t0")
    cond = next(c for c in status["conditions"] if c["type"] == "TopicsReady")
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "TopicsReady", 2)
    assert build_status(Observation(2, *observed, topics_sync=ready), status, "t1") == status  # stable

    down = failure(KAFKA_UNREACHABLE, "no Kafka broker answered", 4)
    components, not_ready, total, waiting = with_topics_sync(observe_components(desired, {}), down)
    assert components["topics"] == "0/4" and "topics" in not_ready and waiting is not None
    later = build_status(Observation(2, components, not_ready, total, waiting, topics_sync=down), status, "t2")
    cond = next(c for c in later["conditions"] if c["type"] == "TopicsReady")
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == ("False", KAFKA_UNREACHABLE, "t2")
    assert build_status(Observation(2, {}, (), 0), None, "t")["conditions"][-1]["type"] != "TopicsReady"


# --- the reconciler's sync (Admin API faked) ------------------------------------------------------


class FakeKube:
    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    async def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        data = self.secrets.get(name)
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


class FakeAdmin:
    """Records logins; fails with `error` or serves `existing`."""

    def __init__(self, existing: dict[str, ExistingTopic] | None = None, error: TopicAdminError | None = None) -> None:
        self.existing = existing or {}
        self.error = error
        self.logins: list[Login | None] = []
        self.applied: list[TopicDecision] = []

    def __call__(self, plan: KafkaAdminPlan, login: Login | None) -> FakeAdmin:
        self.logins.append(login)
        return self

    def describe(self, names: Any, config_keys: Any = ()) -> dict[str, ExistingTopic]:
        if self.error is not None:
            raise self.error
        return {n: t for n, t in self.existing.items() if n in set(names)}

    def apply(self, decision: TopicDecision) -> None:
        self.applied.append(decision)


def reconciler(admin: FakeAdmin, secrets: dict[str, dict[str, str]]) -> Reconciler:
    return Reconciler(FakeKube(secrets), lambda key: {}, topic_admin=admin)  # type: ignore[arg-type]


def test_sync_logs_in_with_the_secret_and_creates_the_topics() -> None:
    admin = FakeAdmin()
    rec = reconciler(admin, {"kafka-creds": {"username": "adnomaly", "password": PASSWORD}})
    plan = admin_plan()
    outcome, requeue = asyncio.run(rec._sync_topics(("ns", "p"), plan))
    assert outcome.ready and requeue is None
    assert admin.logins == [Login("adnomaly", PASSWORD)] and PASSWORD not in repr(admin.logins)
    assert [t.name for t in admin.applied[0].creates] == sorted(t.name for t in plan.topics)
    # in sync: not described again before `topics_recheck`
    asyncio.run(rec._sync_topics(("ns", "p"), plan))
    assert len(admin.logins) == 1


def test_a_missing_secret_or_key_is_a_condition_not_a_crash() -> None:
    plan = admin_plan()
    for secrets, fragment in (({}, "Secret kafka-creds (kafka.external.credentialsSecretRef) does not exist"),
                              ({"kafka-creds": {"username": "u"}}, "Secret kafka-creds has no usable key `password`")):
        admin = FakeAdmin()
        outcome, requeue = asyncio.run(reconciler(admin, secrets)._sync_topics(("ns", "p"), plan))
        assert (outcome.ready, outcome.reason, outcome.message) == (False, CREDENTIALS_MISSING, fragment)
        assert requeue == RETRY_BACKOFF[0] and admin.logins == []


def test_failures_back_off_and_a_changed_spec_retries_at_once() -> None:
    admin = FakeAdmin(error=TopicAdminError(KAFKA_UNREACHABLE, "no Kafka broker answered at kafka.example.com:9096"))
    rec = reconciler(admin, {"kafka-creds": {"username": "u", "password": PASSWORD}})
    plan = admin_plan()
    outcome, requeue = asyncio.run(rec._sync_topics(("ns", "p"), plan))
    assert (outcome.reason, requeue) == (KAFKA_UNREACHABLE, RETRY_BACKOFF[0])
    _, again = asyncio.run(rec._sync_topics(("ns", "p"), plan))  # inside the back-off: no new attempt
    assert len(admin.logins) == 1 and again is not None and 0 < again <= RETRY_BACKOFF[0]
    state = rec._topics[("ns", "p")]
    rec._topics[("ns", "p")] = replace(state, at=state.at - RETRY_BACKOFF[0])  # the back-off has passed
    _, third = asyncio.run(rec._sync_topics(("ns", "p"), plan))
    assert len(admin.logins) == 2 and third == RETRY_BACKOFF[1]
    grown = admin_plan(bootstrapServers="kafka2.example.com:9096")
    asyncio.run(rec._sync_topics(("ns", "p"), grown))
    assert len(admin.logins) == 3 and rec._topics[("ns", "p")].failures == 1


def test_an_unexpected_error_becomes_a_condition_without_the_password() -> None:
    class Exploding(FakeAdmin):
        def describe(self, names: Any, config_keys: Any = ()) -> dict[str, ExistingTopic]:
            raise RuntimeError("librdkafka said something")

    rec = reconciler(Exploding(), {"kafka-creds": {"username": "u", "password": PASSWORD}})
    outcome, _ = asyncio.run(rec._sync_topics(("ns", "p"), admin_plan()))
    assert not outcome.ready and outcome.reason == "TopicsFailed" and PASSWORD not in outcome.message


def test_the_admin_client_config_hides_the_password() -> None:
    from adnomaly_operator.kafka_admin import client_config

    config = client_config("k:9092", "SASL_SSL", Login("u", PASSWORD))
    assert config["sasl.password"] == PASSWORD and config["sasl.username"] == "u"
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert PASSWORD not in repr(config) and PASSWORD not in str(config)
    assert client_config("k:9092", "PLAINTEXT", Login("u", PASSWORD))["security.protocol"] == "SASL_PLAINTEXT"
    with pytest.raises(TopicAdminError) as refused:
        client_config("k:9092", "SASL_SSL", None)
    assert refused.value.reason == CREDENTIALS_MISSING


class DeletingAdmin(FakeAdmin):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[list[str]] = []

    def delete(self, names: Any) -> list[str]:
        self.deleted.append(sorted(names))
        return sorted(names)


class ListingKube(FakeKube):
    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        return {"items": []}


def finalize(admin: DeletingAdmin, policy: str, manage: bool = True) -> list[str]:
    external = {**EXTERNAL, "manageTopics": manage}
    doc = {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p", "uid": UID},
           "spec": {"kafka": {"external": external, "topics": TOPICS}, "deletionPolicy": policy}}
    rec = Reconciler(ListingKube({"kafka-creds": {"username": "u", "password": PASSWORD}}), lambda key: {},
                     topic_admin=admin)  # type: ignore[arg-type]
    return asyncio.run(rec.finalize("ns", "p", doc))


def test_the_finalizer_deletes_the_topics_only_under_delete() -> None:
    admin = DeletingAdmin()
    assert finalize(admin, "Delete") == [] and admin.deleted == [sorted(f"p-{r}" for r in TOPICS)]
    assert admin.logins == [Login("u", PASSWORD)]
    kept = DeletingAdmin()
    assert sorted(finalize(kept, "Retain")) == sorted(f"Kafka topic p-{r}" for r in TOPICS)
    assert kept.deleted == [] and kept.logins == []  # Retain needs no Kafka at all
    theirs = DeletingAdmin()
    assert finalize(theirs, "Delete", manage=False) == [] and theirs.deleted == []  # not ours to delete
