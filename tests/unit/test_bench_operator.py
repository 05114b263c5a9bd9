"""The operator benchmark's ceiling applies exactly what the operator would write, as plain objects."""

from adnomaly.bench.operator import ceiling_objects, fleet
from adnomaly.spec import parse_pipeline
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
