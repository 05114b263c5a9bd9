"""Everything render() produces for full-featured Pipelines (managed and external stores, fixed and
autoscaled replicas) passes the API server's strict field validation against the real Strimzi, Flink
Kubernetes Operator and KEDA CRDs: a misspelt or misplaced security field (a listener's
`networkPolicyPeers`, a template's `securityContext`, a KafkaUser's ACL, a ScaledObject's HPA behavior)
would otherwise be pruned silently."""

from __future__ import annotations

import json
from typing import Any

import pytest
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.render import Owner, RenderContext, render

from tests.operator.operator_harness import install_crds
from tests.unit.test_render_autoscaling import AUTOSCALED, EXTERNAL_KAFKA
from tests.unit.test_render_security import EXTERNAL_SPEC, FULL_SPEC, pipeline

pytestmark = pytest.mark.operator


@pytest.fixture(scope="module")
def crds(kube: KubeControlPlane) -> KubeControlPlane:
    install_crds(kube)
    return kube


AUTOSCALED_EXTERNAL = {**AUTOSCALED, "kafka": {**AUTOSCALED["kafka"], **EXTERNAL_KAFKA}}
AUTOSCALED_FLINK = {**AUTOSCALED, "components": {**AUTOSCALED["components"], "features": {"autoscaler": {}}}}


@pytest.mark.parametrize(
    "spec", [FULL_SPEC, EXTERNAL_SPEC, AUTOSCALED_FLINK, AUTOSCALED_EXTERNAL],
    ids=["managed", "external", "autoscaled-managed", "autoscaled-external"],
)
def test_rendered_objects_pass_strict_server_side_validation(
    crds: KubeControlPlane, namespace: str, spec: dict[str, Any]
) -> None:
    kube = crds
    p = pipeline(spec)
    objects = [d.obj for d in render(kube_plan(p, namespace), RenderContext(
        Owner("adnomaly.io/v1alpha1", "Pipeline", p.name, "00000000-0000-0000-0000-000000000001"),
        service_monitor=False,
    ))]
    manifest = "\n".join(json.dumps(o) for o in objects)
    done = kube.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager=test",
                        "-o", "name", "-f", "-", stdin=manifest, check=False)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "unknown field" not in done.stderr, done.stderr
    assert len(done.stdout.split()) == len(objects)
    if spec in (AUTOSCALED_FLINK, AUTOSCALED_EXTERNAL):  # the scalers really were among them
        kinds = {o["kind"] for o in objects}
        assert {"ScaledObject", "TriggerAuthentication", "HorizontalPodAutoscaler"} <= kinds
