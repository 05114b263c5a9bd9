"""The operator benchmark's ceiling applies exactly what the operator would write, as plain objects."""

import asyncio
import json
import os
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from adnomaly.bench.operator import (
    APPLY_ATTEMPTS,
    apply_retrying,
    ceiling_fields,
    ceiling_objects,
    ceiling_or_error,
    control_plane_cpu_seconds,
    fleet,
)
from adnomaly.bench.operator import _workloads_ready as workloads_ready
from adnomaly.spec import parse_pipeline
from adnomaly_operator.client import ApiError
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.render import Owner, RenderContext, render


def test_the_ceiling_writes_the_operators_objects_without_owners_into_its_own_namespace() -> None:
    docs = fleet(3)
    objects = ceiling_objects(docs, "ceiling")
    pipeline = parse_pipeline(docs[0])
    per_pipeline = render(kube_plan(pipeline, "ceiling"), RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline",
                                                                             pipeline.name, "uid")))
    assert len(objects) == 3 * len(per_pipeline)
    assert {(o["kind"], o["metadata"]["name"]) for o in objects[: len(per_pipeline)]} == {
        (d.kind, d.name) for d in per_pipeline
    }
    assert all("ownerReferences" not in o["metadata"] for o in objects)
    assert all(o["metadata"].get("namespace") in (None, "ceiling") for o in objects)
    generated = [o for o, d in zip(objects, per_pipeline * 3, strict=True) if d.recipe is not None]
    assert generated and all(o["stringData"] for o in generated)


class FlakyApiServer:
    """Answers each object's first `failures[name]` applies with the given errors, then takes it."""

    def __init__(self, failures: dict[str, list[Exception]]) -> None:
        self.failures = failures
        self.applied: list[str] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        pending = self.failures.get(name) or []
        if pending:
            raise pending.pop(0)
        self.applied.append(name)
        return obj


def test_the_ceiling_applies_again_what_the_api_server_answered_late_or_refused_for_now() -> None:
    server = FlakyApiServer({
        "late": [TimeoutError()], "busy": [ApiError("PATCH", "/x", 429, "TooManyRequests", "slow down")],
        "gone": [aiohttp.ServerDisconnectedError(), ApiError("PATCH", "/x", 503, "ServiceUnavailable", "")],
    })  # fmt: skip
    for name in ("late", "busy", "gone", "fine"):
        asyncio.run(apply_retrying(server, {"metadata": {"name": name}}, pause=0.0))
    assert server.applied == ["late", "busy", "gone", "fine"]


def test_the_ceiling_does_not_retry_a_refusal_that_would_refuse_again() -> None:
    invalid = ApiError("PATCH", "/x", 422, "Invalid", "spec.replicas: must be >= 0")
    server = FlakyApiServer({"bad": [invalid]})
    with pytest.raises(ApiError):
        asyncio.run(apply_retrying(server, {"metadata": {"name": "bad"}}, pause=0.0))
    always = FlakyApiServer({"down": [TimeoutError() for _ in range(APPLY_ATTEMPTS)]})
    with pytest.raises(TimeoutError):
        asyncio.run(apply_retrying(always, {"metadata": {"name": "down"}}, pause=0.0))
    assert always.applied == [] and always.failures["down"] == []


def test_a_failed_ceiling_keeps_the_operators_figures_and_says_why() -> None:
    def overloaded() -> dict[str, float]:
        raise TimeoutError("the API server answered late\nsix times")

    failed = ceiling_or_error(overloaded)
    assert failed == "TimeoutError: the API server answered late"
    fields = ceiling_fields(2640.0, failed)
    assert fields["seconds_to_ready"] == 2640.0 and fields["ceiling_error"] == failed
    assert fields["ratio"] is None and fields["ceiling_seconds_to_ready"] is None
    assert ceiling_or_error(lambda: (_ for _ in ()).throw(TimeoutError())) == "TimeoutError"

    measured = ceiling_or_error(lambda: {"ceiling_seconds_to_ready": 110.0, "ceiling_seconds_to_write": 55.0})
    fields = ceiling_fields(132.0, measured)
    assert fields["ratio"] == round(110.0 / 132.0, 3) and fields["write_ratio"] == round(55.0 / 132.0, 3)
    assert "ceiling_error" not in fields and "cpu_ratio" not in fields  # no CPU figures were given

    measured = {"ceiling_seconds_to_ready": 110.0, "ceiling_seconds_to_write": 55.0,
                "ceiling_cpu_seconds_to_ready": 120.0, "ceiling_cpu_steal_share": 0.02}
    fields = ceiling_fields(132.0, measured, 150.0)
    assert fields["ceiling_cpu_seconds_to_ready"] == 120.0 and fields["ceiling_cpu_steal_share"] == 0.02
    assert fields["cpu_ratio"] == round(120.0 / 150.0, 3)


class Listing:
    """`kube.kubectl("get", ...)` answering a fixed list of objects."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def kubectl(self, *args: str) -> SimpleNamespace:
        return SimpleNamespace(stdout=json.dumps({"items": self.items}))


def test_the_ceiling_is_ready_only_once_every_workload_and_the_bucket_job_are() -> None:
    ready = [
        {"kind": "StatefulSet", "spec": {"replicas": 1}, "status": {"readyReplicas": 1}},
        {"kind": "Deployment", "spec": {"replicas": 2}, "status": {"readyReplicas": 2}},
        {"kind": "Kafka", "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"kind": "Job", "spec": {"completions": 1}, "status": {"succeeded": 1}},
    ]
    assert workloads_ready(Listing(ready), "ceiling")
    for pending in ({"kind": "Job", "spec": {}, "status": {"active": 1}},
                    {"kind": "Deployment", "spec": {"replicas": 2}, "status": {"readyReplicas": 1}},
                    {"kind": "Kafka", "spec": {}, "status": {}}):
        assert not workloads_ready(Listing([*ready, pending]), "ceiling")


def test_the_control_planes_cpu_is_the_sum_of_its_processes() -> None:
    sum(range(3_000_000))  # some CPU of our own to count
    me = SimpleNamespace(pid=os.getpid())  # counted once per process entry; one not started (no pid) counts 0
    kube = SimpleNamespace(processes={"a": me, "b": me, "gone": SimpleNamespace(pid=None)})
    both = control_plane_cpu_seconds(kube)
    one = control_plane_cpu_seconds(SimpleNamespace(processes={"a": me}))
    assert both > 0 and abs(both - 2 * one) < 0.05


def test_the_operators_work_is_read_from_its_own_counters() -> None:
    from adnomaly.bench.operator import _work

    scraped = {
        ("adnomaly_operator_reconciles_total", "changed"): 412.0,
        ("adnomaly_operator_reconciles_total", "noop"): 930.0,
        ("adnomaly_operator_owned_events_total", "true"): 1500.0,
        ("adnomaly_operator_owned_events_total", "false"): 2100.0,
    }

    def total(name: str, **labels: str) -> float:
        (value,) = labels.values()
        return scraped.get((name, value), 0.0)

    assert _work(SimpleNamespace(total=total)) == {
        "reconciles_changed_to_ready": 412, "reconciles_noop_to_ready": 930,
        "owned_events_queued_to_ready": 1500, "owned_events_skipped_to_ready": 2100,
    }


def test_the_fleet_comes_up_under_the_operators_own_drift_period() -> None:
    from adnomaly.bench.operator import DRIFT_INTERVAL
    from adnomaly_operator.handlers import OperatorConfig

    assert OperatorConfig().drift_interval == DRIFT_INTERVAL
