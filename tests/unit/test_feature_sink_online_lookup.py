"""Which Redis hash (Feast's) an online API request asks for, and its 400/404 answers (adnomaly.serving.lookup)."""

from __future__ import annotations

import pytest
from adnomaly.feast.layout import redis_key
from adnomaly.serving.lookup import BadLookup, resolve
from adnomaly.sinks.config import FeatureView

VIEWS = {
    "traffic": FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr"], ttl_s=60),
    "latency": FeatureView(name="latency", dimensions=["region"], metrics=["p99"], ttl_s=60),
}


def test_the_key_is_feasts_hash_of_the_entity_and_the_entity_follows_the_view_order() -> None:
    lookup = resolve(VIEWS, "p", "traffic", [("platform", "ios"), ("geo", "US")])
    assert lookup.key == redis_key("p", {"geo": "US", "platform": "ios"})  # what the sink writes
    assert list(lookup.entity.items()) == [("geo", "US"), ("platform", "ios")]


def test_unknown_view_is_404_and_lists_the_known_ones() -> None:
    with pytest.raises(BadLookup) as caught:
        resolve(VIEWS, "k", "nope", [])
    assert caught.value.status == 404
    assert caught.value.detail == "unknown feature view `nope`; known views: latency, traffic"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("geo", "US")], "missing dimensions: platform"),
        ([], "missing dimensions: geo, platform"),
        ([("geo", "US"), ("platform", "ios"), ("os", "17"), ("a", "b")], "unknown dimensions: a, os"),
        ([("geo", "US"), ("geo", "DE"), ("platform", "ios")], "dimensions given more than once: geo"),
        ([("geo", ""), ("platform", "ios")], "empty dimension values: geo"),
    ],
)
def test_bad_dimensions_are_400_and_named(params: list[tuple[str, str]], expected: str) -> None:
    with pytest.raises(BadLookup) as caught:
        resolve(VIEWS, "k", "traffic", params)
    assert caught.value.status == 400
    assert expected in caught.value.detail
    assert "(view `traffic` is keyed by geo, platform)" in caught.value.detail


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(BadLookup) as caught:
        resolve(VIEWS, "k", "traffic", [("geo", "US"), ("os", "x")])
    assert "missing dimensions: platform" in caught.value.detail
    assert "unknown dimensions: os" in caught.value.detail
