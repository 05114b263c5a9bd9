"""From rendered objects and live state to writes, readiness and status (all pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from adnomaly.spec import parse_pipeline
from adnomaly_operator.actions import Applied, Capabilities, allowed_stage, plan_actions
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.live import LiveObject, owns_field, readiness, summarize
from adnomaly_operator.names import ANNOTATION_HASH, FIELD_MANAGER
from adnomaly_operator.render import Desired, Owner, RenderContext, render
from adnomaly_operator.render.common import STAGE_APPS, STAGE_STORES, STAGE_TOPICS
from adnomaly_operator.status import Observation, build_status, observe_components

UID = "uid-1"


def desired_of(**spec: Any) -> list[Desired]:
    p = parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
                        "spec": spec})
    return render(kube_plan(p, "ns"), RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline", "p", UID)))


def live_from(
    d: Desired, *, ready: bool = True, hash_: str | None = None, rv: int = 10, partitions: int | None = None,
    managed: str | None = "m1", owners: tuple[str, ...] = (UID,),
) -> LiveObject:
    return LiveObject(d.kind, d.name, f"uid-{d.name}", rv, hash_ or d.hash, owners, ready,
                      "Ready" if ready else "NotReady", partitions, False, managed)


def everything_live(desired: list[Desired], **kw: Any) -> dict[tuple[str, str], LiveObject]:
    return {(d.kind, d.name): live_from(d, **kw) for d in desired}


def test_nothing_to_write_when_everything_is_current() -> None:
    desired = desired_of()
    actions = plan_actions(desired, everything_live(desired), owner_uid=UID, deletion_policy="Retain")
    assert actions.writes == 0 and not actions.problems and actions.allowed_stage == STAGE_APPS


def test_bring_up_is_ordered_by_readiness() -> None:
    desired = desired_of()
    nothing = plan_actions(desired, {}, owner_uid=UID, deletion_policy="Retain")
    assert nothing.allowed_stage == STAGE_STORES
    assert {d.stage for d in nothing.applies + nothing.creates} <= {0, STAGE_STORES}
    assert {d.kind for d in nothing.creates} == {"Secret"}
    stores = {(d.kind, d.name): live_from(d) for d in desired if d.stage <= STAGE_STORES}
    topics = plan_actions(desired, stores, owner_uid=UID, deletion_policy="Retain")
    assert topics.allowed_stage == STAGE_TOPICS and {d.kind for d in topics.applies} == {"KafkaTopic", "KafkaUser"}
    unready = {**stores, **{k: replace(v, ready=False) for k, v in stores.items() if k[0] == "Kafka"}}
    assert allowed_stage(desired, unready) == STAGE_STORES
    with_topics = {**stores, **{(d.kind, d.name): live_from(d) for d in desired if d.stage == STAGE_TOPICS}}
    apps = plan_actions(desired, with_topics, owner_uid=UID, deletion_policy="Retain")
    assert apps.allowed_stage == STAGE_APPS and {d.kind for d in apps.applies} == {"Deployment"}


def test_topics_start_on_a_ready_kafka_while_other_stores_are_still_starting() -> None:
    desired = desired_of()
    kafka_only = {(d.kind, d.name): live_from(d) for d in desired if d.stage < STAGE_STORES or d.kind == "Kafka"}
    actions = plan_actions(desired, kafka_only, owner_uid=UID, deletion_policy="Retain")
    created = {d.kind for d in actions.applies + actions.creates}
    assert actions.allowed_stage == STAGE_STORES  # the status still says: waiting for the stores
    assert {"KafkaTopic", "KafkaUser"} <= created
    assert not created & {"Deployment", "FlinkDeployment"}, "components before PostgreSQL, MinIO and Redis"
    kafka = next(d for d in desired if d.kind == "Kafka")
    unready = {**kafka_only, ("Kafka", kafka.name): live_from(kafka, ready=False)}
    held = plan_actions(desired, unready, owner_uid=UID, deletion_policy="Retain")
    assert not {d.kind for d in held.applies + held.creates} & {"KafkaTopic", "KafkaUser"}, "topics before Kafka"


def test_existing_later_stage_objects_are_updated_even_while_gated() -> None:
    desired = desired_of()
    live = everything_live(desired)
    kafka = next(d for d in desired if d.kind == "Kafka")
    live[("Kafka", kafka.name)] = live_from(kafka, ready=False)
    processor = next(d for d in desired if d.name == "p-processor")
    live[("Deployment", processor.name)] = live_from(processor, hash_="old")
    actions = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain")
    assert actions.allowed_stage == STAGE_STORES and [d.name for d in actions.applies] == ["p-processor"]


def test_a_partition_decrease_blocks_every_write() -> None:
    desired = desired_of()
    live = everything_live(desired)
    raw = next(d for d in desired if d.name == "p-raw")
    live[("KafkaTopic", "p-raw")] = live_from(raw, hash_="other", partitions=12)
    live.pop(("Deployment", "p-processor"))
    actions = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain")
    assert actions.blocked and actions.writes == 0
    (problem,) = actions.problems
    assert problem.reason == "PartitionDecrease" and "p-raw" in problem.message and "12" in problem.message


def test_drift_in_owned_fields_is_taken_back_but_our_own_lag_is_not() -> None:
    desired = desired_of()
    processor = next(d for d in desired if d.name == "p-processor")
    live = everything_live(desired)
    baseline = {("Deployment", "p-processor"): Applied(processor.hash, 10, 0.0, "m1")}
    quiet = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain", recent=baseline)
    assert quiet.writes == 0
    live[("Deployment", "p-processor")] = live_from(processor, rv=11, managed="someone-scaled-it")
    drift = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain", recent=baseline)
    assert [d.name for d in drift.applies] == ["p-processor"]
    stale = {("Deployment", "p-processor"): Applied(processor.hash, 20, 0.0, "m2")}
    assert plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain", recent=stale).writes == 0


def test_a_just_applied_object_missing_from_the_cache_is_not_applied_twice() -> None:
    desired = desired_of()
    live = everything_live(desired)
    processor = live.pop(("Deployment", "p-processor"))
    recent = {("Deployment", "p-processor"): Applied(processor.hash, 50, 100.0)}
    waiting = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain", recent=recent, now=101.0)
    assert waiting.writes == 0 and waiting.waiting_on_cache
    later = plan_actions(desired, live, owner_uid=UID, deletion_policy="Retain", recent=recent, now=200.0)
    assert [d.name for d in later.applies] == ["p-processor"]


def test_objects_no_longer_desired_are_deleted_or_orphaned_by_policy() -> None:
    with_ingest = desired_of()
    without = desired_of(source={"ingest": {"enabled": False}})
    live = everything_live(with_ingest)
    live[("Secret", "stranger")] = LiveObject("Secret", "stranger", "u", 1, None, ("someone-else",), True, "")
    retain = plan_actions(without, live, owner_uid=UID, deletion_policy="Retain")
    assert sorted(f"{o.kind}/{o.name}" for o in retain.deletes) == [
        # its Kafka user (access revoked) and network policy go with it
        "Deployment/p-ingest", "KafkaUser/p-ingest-kafka", "NetworkPolicy/p-ingest", "Service/p-ingest"
    ]
    assert [o.name for o in retain.orphans] == ["p-ingest-tokens"]
    delete = plan_actions(without, live, owner_uid=UID, deletion_policy="Delete")
    assert "p-ingest-tokens" in {o.name for o in delete.deletes} and not delete.orphans


def test_missing_operator_crds_are_reported_and_their_objects_skipped() -> None:
    desired = desired_of()
    actions = plan_actions(desired, {}, owner_uid=UID, deletion_policy="Retain",
                           capabilities=Capabilities(strimzi=False))
    assert [p.reason for p in actions.problems] == ["MissingCRD"]
    assert "Strimzi" in actions.problems[0].message
    assert not any(d.kind.startswith("Kafka") for d in actions.applies)


def _obj(kind: str, spec: dict[str, Any], status: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "generation": generation, "resourceVersion": "7",
                                       "annotations": {ANNOTATION_HASH: "h"}}, "spec": spec, "status": status}


def test_readiness_follows_each_kinds_status() -> None:
    ready = {"type": "Ready", "status": "True"}
    assert readiness("Kafka", _obj("Kafka", {}, {"conditions": [ready], "observedGeneration": 2})) == (True, "Ready")
    assert not readiness("Kafka", _obj("Kafka", {}, {"conditions": [ready], "observedGeneration": 1}))[0]
    assert readiness("KafkaTopic", _obj("KafkaTopic", {}, {}))[0] is False
    running = {"lifecycleState": "STABLE", "jobStatus": {"state": "RUNNING"}}
    assert readiness("FlinkDeployment", _obj("FlinkDeployment", {}, running)) == (True, "RUNNING")
    assert readiness("FlinkDeployment", _obj("FlinkDeployment", {}, {"lifecycleState": "DEPLOYED"})) == (
        False, "DEPLOYED")
    rolled = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    assert readiness("Deployment", _obj("Deployment", {"replicas": 3}, rolled)) == (True, "3/3")
    rolling = {**rolled, "replicas": 4, "availableReplicas": 2}
    assert readiness("Deployment", _obj("Deployment", {"replicas": 3}, rolling)) == (False, "2/3")
    assert readiness("Job", _obj("Job", {}, {"succeeded": 1})) == (True, "Complete")


def test_summary_keeps_the_hash_owners_partitions_and_our_field_set() -> None:
    body = _obj("KafkaTopic", {"partitions": 6}, {})
    body["metadata"]["ownerReferences"] = [{"uid": UID}]
    body["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}},
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:partitions": {}}}},
    ]
    live = summarize("KafkaTopic", body)
    assert (live.hash, live.owner_uids, live.partitions, live.resource_version) == ("h", (UID,), 6, 7)
    other = summarize("KafkaTopic", {**body, "metadata": {**body["metadata"], "managedFields": [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}}]}})
    assert live.managed and other.managed and live.managed != other.managed


def test_status_is_stable_when_nothing_changes_and_transitions_are_timed() -> None:
    desired = desired_of()
    live = everything_live(desired)
    components, not_ready, total, waiting = observe_components(desired, live)
    obs = Observation(3, components, not_ready, total, waiting, notes=(("ReplicasCapped", "capped"),))
    first = build_status(obs, None, "2026-01-01T00:00:00Z")
    assert first["phase"] == "Ready" and first["readyComponents"] == f"{total}/{total}"
    assert {c["type"]: c["status"] for c in first["conditions"]} == {
        "Ready": "True", "Progressing": "False", "Degraded": "False", "ReplicasCapped": "True"}
    assert all(c["observedGeneration"] == 3 for c in first["conditions"])
    again = build_status(obs, first, "2026-01-01T01:00:00Z")
    assert again == first  # same observation, same status: nothing to write
    live[("KafkaTopic", "p-raw")] = live_from(next(d for d in desired if d.name == "p-raw"), ready=False)
    components, not_ready, total, waiting = observe_components(desired, live)
    later = build_status(Observation(3, components, not_ready, total, waiting), first, "2026-01-01T02:00:00Z")
    assert later["phase"] == "Progressing" and later["components"]["topics"] == "3/4"
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "WaitingForTopics"
    assert ready["lastTransitionTime"] == "2026-01-01T02:00:00Z"


def test_field_ownership_is_read_from_the_managers_apply_entry() -> None:
    meta = {"managedFields": [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "handover", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]}
    assert not owns_field(meta, "spec", "replicas")  # the scaler's, through the scale subresource
    assert owns_field(meta, "spec", "template") and owns_field(meta, "spec", "replicas", manager="handover")
    meta["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"] = {}
    assert owns_field(meta, "spec", "replicas")
    assert not owns_field({}, "spec", "replicas")


def test_notes_of_one_reason_make_one_condition() -> None:
    notes = (("ReplicasCapped", "processor capped"), ("FlinkStateEphemeral", "pod"), ("ReplicasCapped", "sink capped"))
    status = build_status(Observation(1, notes=notes), None, "2026-01-01T00:00:00Z")
    capped = [c for c in status["conditions"] if c["type"] == "ReplicasCapped"]
    assert len(capped) == 1 and capped[0]["message"] == "processor capped; sink capped"
    types = [c["type"] for c in status["conditions"]]
    assert len(types) == len(set(types))  # conditions are a map by type: the API server refuses duplicates


def test_failed_and_degraded_phases() -> None:
    from adnomaly_operator.status import Problem

    failed = build_status(Observation(1, failed=Problem("InvalidSpec", "spec.x: bad")), None, "t")
    assert failed["phase"] == "Failed"
    degraded = build_status(Observation(1, problems=(Problem("PartitionDecrease", "no"),)), None, "t")
    assert degraded["phase"] == "Degraded"
    assert next(c for c in degraded["conditions"] if c["type"] == "Degraded")["reason"] == "PartitionDecrease"
