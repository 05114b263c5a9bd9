"""Rendering the chart into objects for the chart tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from adnomaly.services.helm import template


def render(helm: Path, *sets: str, namespace: str = "adnomaly-system", crds: bool = False) -> list[dict[str, Any]]:
    """The chart's objects for `--set` assignments `sets` (e.g. "operator.watchNamespaces={a,b}")."""
    args = [f"--set={s}" for s in sets] + (["--include-crds"] if crds else [])
    return [doc for doc in yaml.safe_load_all(template(helm, *args, namespace=namespace)) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
