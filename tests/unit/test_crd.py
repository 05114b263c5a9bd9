"""The Pipeline CRD is generated from the model, stays in sync with it, and means the same thing."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from adnomaly import spec as spec_module
from adnomaly.spec import Pipeline, PipelineSpec, SpecError, load_pipeline, parse_pipeline
from adnomaly_operator import crd
from adnomaly_operator.openapi import apply_defaults
from pydantic import BaseModel

from tests.operator.spec_cases import INVALID_SPECS, document

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "pipelines.adnomaly.io.yaml"
MANIFESTS = sorted(p for p in (REPO / "manifests").rglob("*.yaml") if "\nkind: Pipeline" in p.read_text())




def _root_schema() -> dict[str, Any]:
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_committed_crd_matches_the_model() -> None:
    assert CRD_FILE.read_text() == crd.render_yaml(), (
        "crds/pipelines.adnomaly.io.yaml is stale: "
        "run `python -m adnomaly_operator.crd > crds/pipelines.adnomaly.io.yaml`"
    )


def test_generation_is_deterministic() -> None:
    assert crd.render_yaml() == crd.render_yaml()
    assert yaml.safe_load(crd.render_yaml().split("\n", 2)[2]) == json.loads(json.dumps(crd.crd()))


def test_crd_identity_columns_and_subresources() -> None:
    doc = crd.crd()
    assert doc["metadata"]["name"] == "pipelines.adnomaly.io"
    spec = doc["spec"]
    assert spec["group"] == "adnomaly.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Pipeline" and "anp" in spec["names"]["shortNames"]
    assert "adnomaly" in spec["names"]["categories"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Ready"] == ".status.readyComponents"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_is_structural() -> None:
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "examples", "const"}
    for path, node in _walk(_root_schema()):
        assert not forbidden & node.keys(), f"{path} keeps {forbidden & node.keys()}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path
        if node.get("exclusiveMinimum") is not None:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_schema_keeps_constraints_enums_defaults_and_descriptions() -> None:
    nodes = dict(_walk(_root_schema()))
    raw = nodes[".spec.kafka.topics.raw.partitions"]
    assert raw["minimum"] == 1 and raw["maximum"] == 10_000
    assert nodes[".spec.deletionPolicy"]["enum"] == ["Retain", "Delete"]
    assert nodes[".spec.deletionPolicy"]["default"] == "Retain"
    assert nodes[".spec.events.maxFutureSkew"]["pattern"] == spec_module.DURATION_PATTERN
    assert nodes[".spec.kafka.topics.raw"]["default"] == {"partitions": 6, "retention": "7d"}
    assert "description" in nodes[".spec.source.generator.invalidRate"]
    assert nodes[".spec.events.jsonSchema"]["x-kubernetes-preserve-unknown-fields"] is True
    assert nodes[".spec.source.generator.eventsPerSecond"]["exclusiveMinimum"] is True


def test_partitions_may_only_grow_and_lists_are_keyed() -> None:
    nodes = dict(_walk(_root_schema()))
    for role in ("raw", "dlq", "features", "anomalies"):
        rules = nodes[f".spec.kafka.topics.{role}.partitions"]["x-kubernetes-validations"]
        assert {"rule": "self >= oldSelf"}.items() <= rules[0].items()
    assert nodes[".spec.features"]["x-kubernetes-list-type"] == "map"
    assert nodes[".spec.detection.detectors"]["x-kubernetes-list-map-keys"] == ["name"]


def _validated_models() -> list[type[BaseModel]]:
    models = []
    for _, obj in inspect.getmembers(spec_module, inspect.isclass):
        if issubclass(obj, BaseModel) and obj.__module__ == spec_module.__name__:
            own = {name for name, dec in obj.__pydantic_decorators__.model_validators.items()
                   if dec.cls_ref.split(":")[0] == f"{obj.__module__}.{obj.__qualname__}"}
            if own:
                models.append(obj)
    return models


def test_every_model_validator_has_cel_rules_or_a_reason() -> None:
    models = _validated_models()
    assert models, "the spec has model validators"
    for model in models:
        if model.__name__ in ("Pipeline", "ObjectMeta"):
            continue
        assert model.__name__ in crd.CEL_RULES or model.__name__ in crd.NOT_IN_CEL, (
            f"{model.__name__} has a model validator but no CEL mirror in adnomaly_operator/crd.py"
        )


def _spec_of(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == "Pipeline"]
    return docs[0].get("spec") or {}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_api_server_defaults_mean_what_the_model_defaults_mean(path: Path) -> None:
    spec_schema = _root_schema()["properties"]["spec"]
    defaulted = apply_defaults(_spec_of(path), spec_schema)
    pipeline = load_pipeline(path)
    as_defaulted = parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline",
                                   "metadata": {"name": pipeline.name}, "spec": defaulted})
    assert as_defaulted.spec == pipeline.spec


def test_empty_spec_defaults_to_the_model_default() -> None:
    spec_schema = _root_schema()["properties"]["spec"]
    defaulted = apply_defaults(apply_defaults({}, {"properties": {"spec": spec_schema}})["spec"], spec_schema)
    assert PipelineSpec.model_validate(defaulted) == PipelineSpec()


def test_every_example_is_a_valid_pipeline() -> None:
    assert MANIFESTS
    for path in MANIFESTS:
        assert isinstance(load_pipeline(path), Pipeline)


@pytest.mark.parametrize(("case", "spec", "api_field", "model_fragment"), INVALID_SPECS,
                         ids=[c[0] for c in INVALID_SPECS])
def test_the_model_refuses_what_the_crd_refuses(case: str, spec: dict[str, Any], api_field: str,
                                                model_fragment: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_pipeline(document(case, spec))
    assert model_fragment in str(refused.value)


def test_crd_command_prints_the_committed_file(capsys: pytest.CaptureFixture[str]) -> None:
    from adnomaly_operator.main import main

    assert main(["crd"]) == 0
    assert capsys.readouterr().out == CRD_FILE.read_text()
