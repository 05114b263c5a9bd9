"""`render(kube_plan, context)` → every object one Pipeline wants in the cluster. Pure and deterministic:
no clock, no randomness, no I/O — the same inputs give byte-identical objects (and hashes).

Generated secrets appear as metadata-only Secrets with a `SecretRecipe`; the operator creates them
once with random contents and never re-rolls them.
"""

from __future__ import annotations

from adnomaly.spec import API_GROUP, API_VERSION, KIND, Pipeline

from adnomaly_operator.desired import KubePlan, kube_plan
from adnomaly_operator.render.autoscaling import render_autoscaling
from adnomaly_operator.render.common import (
    Desired,
    Images,
    Owner,
    RenderContext,
    SecretRecipe,
)
from adnomaly_operator.render.components import render_components
from adnomaly_operator.render.feast import render_feast
from adnomaly_operator.render.flink import render_flink
from adnomaly_operator.render.kafka import render_kafka
from adnomaly_operator.render.network import render_network
from adnomaly_operator.render.stores import generated_secret, render_stores

__all__ = ["Desired", "Images", "Owner", "RenderContext", "SecretRecipe", "render", "render_pipeline"]


def _ingest_tokens(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    if kp.ingest_tokens is None or kp.ingest_tokens.name != kp.names.ingest_tokens:
        return []  # no ingest, or the user brings the tokens Secret
    return [generated_secret(kp, ctx, kp.names.ingest_tokens, "ingest", SecretRecipe(random={"tokens": 32}))]


def render(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    parts = [
        *render_kafka(kp, ctx),
        *render_stores(kp, ctx),
        *_ingest_tokens(kp, ctx),
        *render_components(kp, ctx),
        *render_feast(kp, ctx),
        *render_autoscaling(kp, ctx),
        *render_flink(kp, ctx),
        *render_network(kp, ctx),
    ]
    seen: set[tuple[str, str]] = set()
    for item in parts:  # each object is sealed as its `Desired` is made: only duplicates to refuse here
        key = (item.kind, item.name)
        if key in seen:
            raise ValueError(f"render produced {item.kind}/{item.name} twice")
        seen.add(key)
    return parts


def render_pipeline(
    pipeline: Pipeline, namespace: str, uid: str, images: Images, *, service_monitor: bool = False,
    keda: bool = True,
) -> tuple[KubePlan, list[Desired]]:
    """The operator's entry point: one valid Pipeline in `namespace`, whose object has `uid` (every object is
    owned by it) → its Kubernetes plan and every object it wants. The reconciler and `adnomaly render` both
    come through here, so what the command prints is what the operator applies."""
    kp = kube_plan(pipeline, namespace)
    owner = Owner(f"{API_GROUP}/{API_VERSION}", KIND, pipeline.name, uid)
    return kp, render(kp, RenderContext(owner, images, service_monitor, keda))
