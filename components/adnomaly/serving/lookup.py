"""Which Redis hash a request asks for (Feast's hash of the entity), or why it cannot be answered (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adnomaly.feast.layout import redis_key
from adnomaly.sinks.config import FeatureView


class BadLookup(ValueError):
    """A request that cannot be answered; `status` is the HTTP status (400 or 404)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Lookup:
    view: str
    entity: dict[str, str]
    key: bytes


def resolve(
    views: Mapping[str, FeatureView], project: str, view: str, params: Sequence[tuple[str, str]]
) -> Lookup:
    """The hash for `view` of Feast project `project` and the query parameters `params` (every dimension once,
    nothing else)."""
    spec = views.get(view)
    if spec is None:
        raise BadLookup(404, f"unknown feature view `{view}`; known views: {', '.join(sorted(views)) or 'none'}")
    given: dict[str, str] = {}
    repeated: list[str] = []
    for name, value in params:
        if name in given:
            repeated.append(name)
        given[name] = value
    problems = []
    missing = [d for d in spec.dimensions if d not in given]
    unknown = sorted(name for name in given if name not in spec.dimensions)
    empty = [d for d in spec.dimensions if given.get(d) == ""]
    if missing:
        problems.append(f"missing dimensions: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown dimensions: {', '.join(unknown)}")
    if repeated:
        problems.append(f"dimensions given more than once: {', '.join(sorted(set(repeated)))}")
    if empty:
        problems.append(f"empty dimension values: {', '.join(empty)}")
    if problems:
        expected = ", ".join(spec.dimensions)
        raise BadLookup(400, f"{'; '.join(problems)} (view `{view}` is keyed by {expected})")
    entity = {d: given[d] for d in spec.dimensions}
    return Lookup(view, entity, redis_key(project, entity))
