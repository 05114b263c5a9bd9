"""Kopf's diff-base is built for Pipelines only (adnomaly_operator.handlers.PipelinesOnlyDiffBase)."""

from __future__ import annotations

from typing import Any

import kopf
from adnomaly_operator.handlers import OperatorConfig, PipelinesOnlyDiffBase, configure


def pipeline() -> dict[str, Any]:
    return {
        "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7", "labels": {"team": "a"},
                     "annotations": {"note": "x", "adnomaly.io/last-handled-configuration": "{}"},
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"events": {"schema": "clickstream"}},
        "status": {"phase": "Ready"},
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "labels": {"adnomaly.io/pipeline": "p"},
                     "managedFields": [{"manager": "adnomaly-operator"}]},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}]}}},
        "status": {"readyReplicas": 1},
    }


def test_a_pipeline_gets_kopfs_own_essence_and_an_owned_object_none() -> None:
    ours = PipelinesOnlyDiffBase(prefix="adnomaly.io", key="last-handled-configuration")
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="adnomaly.io", key="last-handled-configuration")
    body = kopf.Body(pipeline())
    assert ours.build(body=body) == kopfs.build(body=body) == {
        "spec": {"events": {"schema": "clickstream"}},
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
    }
    assert kopfs.build(body=kopf.Body(deployment()))  # what kopf would copy on every event
    assert ours.build(body=kopf.Body(deployment())) == {}
    # a same-named kind of another API group is not ours
    other = {**pipeline(), "apiVersion": "example.com/v1"}
    assert ours.build(body=kopf.Body(other)) == {}


def test_the_essence_is_a_copy() -> None:
    raw = pipeline()
    essence = PipelinesOnlyDiffBase(prefix="adnomaly.io", key="last-handled-configuration").build(body=kopf.Body(raw))
    essence["spec"]["events"]["schema"] = "changed"
    assert raw == pipeline()


def test_the_operator_is_configured_with_it() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, OperatorConfig())
    assert isinstance(settings.persistence.diffbase_storage, PipelinesOnlyDiffBase)
