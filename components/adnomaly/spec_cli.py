"""`adnomaly validate` and `adnomaly render`: what the cluster would say about a Pipeline file, offline.

Both start nothing and talk to no cluster. `validate` reports every error the API server (the CRD's schema
and CEL rules) and the model would report, each with its field path, and exits 1 on any. `render` prints the
exact objects the operator would apply, from the operator's own render entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import yaml

from adnomaly.spec import KIND, SpecError, parse_pipeline, read_pipeline_document


def validate_file(path: Path, out: TextIO) -> int:
    """Print every error of every Pipeline document in `path` (exit code 1), or that it is valid (0)."""
    from adnomaly_operator.admission import admission_errors

    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        print(f"{path}: {exc}", file=out)
        return 1
    pipelines = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if not pipelines:
        print(f"{path}: no `kind: {KIND}` document", file=out)
        return 1
    failed = False
    for document in pipelines:
        meta = document.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        errors = admission_errors(document)
        if errors:
            failed = True
            print(f"{path}: Pipeline {name or '(unnamed)'}: {len(errors)} error(s)", file=out)
            for error in errors:
                print(f"  {error.path}: {error.message}", file=out)
        else:
            print(f"{path}: Pipeline {name} is valid", file=out)
    return 1 if failed else 0


def render_file(
    path: Path, namespace: str | None, uid: str | None, service_monitor: bool, keda: bool, out: TextIO
) -> int:
    """Print the objects the operator would apply for the Pipeline in `path` (exit 1 when it is invalid)."""
    from adnomaly_operator.admission import admission_errors
    from adnomaly_operator.export import PLACEHOLDER_UID, rendered_objects, to_yaml

    try:
        document = read_pipeline_document(path)
    except (OSError, SpecError) as exc:
        print(exc, file=sys.stderr)
        return 1
    errors = admission_errors(document)
    if errors:
        print(f"{path}: invalid Pipeline, nothing rendered:", file=sys.stderr)
        for error in errors:
            print(f"  {error.path}: {error.message}", file=sys.stderr)
        return 1
    pipeline = parse_pipeline(document)
    ns = namespace or pipeline.metadata.namespace or "default"
    objects = rendered_objects(
        pipeline, ns, uid=uid or PLACEHOLDER_UID, service_monitor=service_monitor, keda=keda
    )
    out.write(to_yaml(objects))
    return 0


def _validate(args: argparse.Namespace) -> int:
    return validate_file(args.file, sys.stdout)


def _render(args: argparse.Namespace) -> int:
    return render_file(args.file, args.namespace, args.uid, args.service_monitor, not args.no_keda, sys.stdout)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    validate = subparsers.add_parser(
        "validate", help="check a Pipeline file as the API server and the operator would; start nothing",
        description="Report every error (with its field path) the CRD's schema and rules and the Pipeline model "
        "give; exit 1 on any. Transition rules (partitions never shrink) need the live object and are not checked.",
    )  # fmt: skip
    validate.add_argument("-f", "--file", type=Path, required=True, help="the Pipeline YAML")
    validate.set_defaults(func=_validate)

    render = subparsers.add_parser(
        "render", help="print the objects the operator would apply for a Pipeline (multi-document YAML)",
        description="The operator's own render of the Pipeline, for review and GitOps. Every object is owned by "
        "the Pipeline: pass --uid (kubectl get anp NAME -o jsonpath='{.metadata.uid}') for byte-identical "
        "objects; without it a placeholder uid is used.",
    )  # fmt: skip
    render.add_argument("-f", "--file", type=Path, required=True, help="the Pipeline YAML")
    render.add_argument("-n", "--namespace", default=None,
                        help="namespace of the Pipeline (default: its metadata.namespace, else `default`)")
    render.add_argument("--uid", default=None, help="the live Pipeline object's metadata.uid")
    render.add_argument("--service-monitor", action="store_true",
                        help="render the ServiceMonitor too, as the operator does where the Prometheus Operator's "
                        "CRD is installed")
    render.add_argument("--no-keda", action="store_true",
                        help="render as for a cluster without KEDA (the operator then sets autoscaled consumers' "
                        "replicas itself)")
    render.set_defaults(func=_render)
