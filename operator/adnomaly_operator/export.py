"""`adnomaly render`: the objects the operator would apply for one Pipeline, as multi-document YAML. Pure.

For review (what will this change create?) and for GitOps diffs. The objects come from the operator's own
entry point (`render_pipeline`), with the images the operator would use (`ADNOMALY_IMAGE_*`, as in its
Deployment). Two things only the live cluster knows:

- the Pipeline object's uid, which every object's `ownerReferences` (and so its hash annotation) carries:
  pass it to get byte-identical objects, else a placeholder stands in — do not apply objects with the
  placeholder, the garbage collector deletes objects whose owner does not exist;
- generated Secrets (ingest tokens, store passwords): the operator creates them once with random contents
  and never re-rolls them. They are printed as it creates them, metadata only, with a comment naming their
  random keys.
"""

from __future__ import annotations

import yaml
from adnomaly.spec import Pipeline

from adnomaly_operator.render import Desired, Images, render_pipeline

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors and `*id001` aliases where render shares one dict between two places."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def rendered_objects(
    pipeline: Pipeline,
    namespace: str,
    *,
    uid: str = PLACEHOLDER_UID,
    images: Images | None = None,
    service_monitor: bool = False,
    keda: bool = True,
) -> list[Desired]:
    """What the operator wants for `pipeline` in `namespace`, in the order it renders them."""
    _, desired = render_pipeline(
        pipeline, namespace, uid, images if images is not None else Images.from_env(),
        service_monitor=service_monitor, keda=keda,
    )
    return desired


def to_yaml(desired: list[Desired]) -> str:
    """Multi-document YAML, one object per document, keys in the order the operator builds them."""
    documents = []
    for d in desired:
        head = ""
        if d.recipe is not None:
            keys = ", ".join([*d.recipe.random, *d.recipe.templates])
            head = f"# generated once by the operator with random contents ({keys}); never overwritten\n"
        documents.append(head + yaml.dump(d.obj, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False))
    return "---\n".join(documents)
