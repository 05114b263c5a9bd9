"""The `pipelines.adnomaly.io` CRD, generated from the pydantic `Pipeline` model. Pure and deterministic.

    python -m adnomaly_operator.crd > crds/pipelines.adnomaly.io.yaml     (or: adnomaly-operator crd)

The OpenAPI schema comes from `PipelineSpec.model_json_schema()` (see `openapi.py`); the model's
cross-field validators are mirrored as CEL `x-kubernetes-validations` in `CEL_RULES`, keyed by model
name, so the API server refuses at admission what `parse_pipeline` would refuse. A unit test fails when
a model gains a validator without a CEL entry here (or an explicit reason why CEL cannot express it),
and another when the committed YAML drifts from this generator.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml
from adnomaly.events.schemas import BUILTIN_SCHEMAS, struct_fields
from adnomaly.spec import (
    API_GROUP,
    API_VERSION,
    DLQ_FEATURE,
    DLQ_METRICS,
    GENERATOR_MIN_EVENT_BYTES,
    KIND,
    SCENARIO_SCHEMAS,
    PipelineSpec,
)

from adnomaly_operator.openapi import Schema, to_structural

PLURAL = "pipelines"
SINGULAR = "pipeline"
SHORT_NAMES = ["anp"]
# Not in `all`: `kubectl delete all --all` must not delete pipelines (and, under `Delete`, their data).
CATEGORIES = ["adnomaly"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"
PHASES = ["Pending", "Progressing", "Ready", "Degraded", "Failed"]
CONDITION_TYPES = ["Ready", "Progressing", "Degraded"]


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str
    field_path: str | None = None
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            out["reason"] = self.reason
        return out


def _cel_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_cel_str(i) for i in items) + "]"


def _schema_fields_map() -> str:
    return "{" + ", ".join(f"{_cel_str(n)}: {_cel_list(struct_fields(n))}" for n in BUILTIN_SCHEMAS) + "}"


def _time_fields_map() -> str:
    return "{" + ", ".join(f"{_cel_str(n)}: {_cel_str(s.time_field)}" for n, s in BUILTIN_SCHEMAS.items()) + "}"


def cel_ms(expr: str) -> str:
    """CEL for the milliseconds in a spec duration (`500ms`, `30s`, `5m`, `2h`, `7d`), like durations.py."""
    return (
        f"({expr}.endsWith('ms') ? int({expr}.substring(0, {expr}.size() - 2)) : "
        f"int({expr}.substring(0, {expr}.size() - 1)) * "
        f"({expr}.endsWith('s') ? 1000 : {expr}.endsWith('m') ? 60000 : {expr}.endsWith('h') ? 3600000 : 86400000))"
    )


def _one_of(a: str, b: str) -> Rule:
    return Rule(f"!(has(self.{a}) && has(self.{b}))", f"set either `{a}` or `{b}`, not both", f".{b}")


# minReplicas (default 1) at most maxReplicas (required for CPU; default the partition count for lag)
_BOUNDS = Rule("!has(self.maxReplicas) || !has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
               "autoscaling: minReplicas must be at most maxReplicas", ".minReplicas")


_SCHEMA = "(has(self.schema) ? self.schema : 'clickstream')"
_EVENTS_SCHEMA = "(has(self.events) && has(self.events.schema) ? self.events.schema : 'clickstream')"
_FIELDS = _schema_fields_map()
_CUSTOM = "(has(self.events) && has(self.events.jsonSchema))"


_GENERATOR_ON = (
    "(!has(self.source) || !has(self.source.generator) || !has(self.source.generator.enabled) "
    "|| self.source.generator.enabled)"
)
_SCENARIO_SCHEMAS = "{" + ", ".join(
    f"{_cel_str(name)}: {_cel_list(sorted(allowed) if allowed is not None else list(BUILTIN_SCHEMAS))}"
    for name, allowed in SCENARIO_SCHEMAS.items()
) + "}"


def _operand_in_fields(var: str, operand: str) -> str:
    return f"(!has({var}.{operand}) || {var}.{operand} in {_FIELDS}[{_EVENTS_SCHEMA}])"


# Model name → CEL rules on that model's object. Mirrors the model validators in adnomaly/spec.py.
CEL_RULES: dict[str, list[Rule]] = {
    "EventsSpec": [
        _one_of("schema", "jsonSchema"),
        Rule("!has(self.jsonSchema) || has(self.timeField)", "a custom jsonSchema needs `timeField`", ".timeField"),
        Rule(
            f"has(self.jsonSchema) || !has(self.timeField) || self.timeField == {_time_fields_map()}[{_SCHEMA}]",
            "`timeField` must be the built-in schema's event-time field "
            + ", ".join(f"({n}: {s.time_field})" for n, s in BUILTIN_SCHEMAS.items()),
            ".timeField",
        ),
        Rule(
            f"has(self.jsonSchema) || !has(self.idField) || self.idField in {_FIELDS}[{_SCHEMA}]",
            "`idField` is not a field of the schema", ".idField",
        ),
        Rule(
            f"has(self.jsonSchema) || !has(self.dimensions) || self.dimensions.all(d, d in {_FIELDS}[{_SCHEMA}])",
            "every entry of `dimensions` must be a field of the schema", ".dimensions",
        ),
    ],
    "KafkaSpec": [_one_of("managed", "external")],
    "ExternalKafka": [
        Rule(
            "!has(self.manageTopics) || !self.manageTopics || !has(self.securityProtocol) || "
            "!self.securityProtocol.startsWith('SASL_') || has(self.credentialsSecretRef)",
            "manageTopics with a SASL securityProtocol needs credentialsSecretRef "
            "(the operator logs in to create the topics)",
            ".credentialsSecretRef", "FieldValueRequired",
        ),
    ],
    "CpuAutoscaling": [_BOUNDS],
    "LagAutoscaling": [
        _BOUNDS,
        _one_of("lagThreshold", "targetLagSeconds"),
        Rule("has(self.targetLagSeconds) == has(self.replicaRecordsPerSecond)",
             "autoscaling: `targetLagSeconds` and `replicaRecordsPerSecond` go together", ".replicaRecordsPerSecond",
             "FieldValueRequired"),
    ],
    "PostgresSpec": [_one_of("managed", "external")],
    "S3Spec": [_one_of("managed", "external")],
    "RedisSpec": [_one_of("managed", "external")],
    "LakeSpec": [_one_of("s3", "uri")],
    "WindowSpec": [
        # (`type` defaults to tumbling; the CRD's own default is checked before nested defaulting)
        Rule("(has(self.type) && self.type == 'hopping') || !has(self.slide)", "a tumbling window has no `slide`",
             ".slide"),
        Rule("!has(self.type) || self.type != 'hopping' || has(self.slide)", "a hopping window needs `slide`",
             ".slide", "FieldValueRequired"),
        Rule(
            f"!has(self.slide) || ({cel_ms('self.slide')} > 0 && {cel_ms('self.slide')} <= {cel_ms('self.size')}"
            f" && {cel_ms('self.size')} % {cel_ms('self.slide')} == 0)",
            "`size` must be a whole multiple of `slide`", ".slide",
        ),
    ],
    "ScenarioSchedule": [
        Rule(
            f"!has(self.duration) || !has(self.every) || {cel_ms('self.duration')} <= {cel_ms('self.every')}",
            "a scenario's `duration` must fit its slot (`every`)", ".duration",
        ),
    ],
    "MetricSpec": [
        Rule("self.agg != 'count' || !(has(self.field) || has(self.numerator) || has(self.denominator))",
             "`count` takes no field", ".field"),
        Rule("self.agg != 'ratio' || (has(self.numerator) && has(self.denominator) && !has(self.field))",
             "`ratio` takes `numerator` and `denominator`", ".numerator"),
        Rule("self.agg in ['count', 'ratio'] || (has(self.field) && !has(self.numerator) && !has(self.denominator))",
             "this aggregation takes `field`", ".field"),
    ],
    "ThresholdRule": [
        Rule("has(self.warningAbove) || has(self.criticalAbove) || has(self.warningBelow) || has(self.criticalBelow)",
             "a threshold needs at least one bound"),
    ],
    "Auto": [
        Rule("!has(self.criticalThreshold) || !has(self.threshold) || self.criticalThreshold >= self.threshold",
             "auto: criticalThreshold must be at least threshold", ".criticalThreshold"),
    ],
    "AlertmanagerSpec": [
        Rule("!has(self.credentialsSecretRef) || has(self.url)",
             "credentialsSecretRef needs `url` (the local Alertmanager takes no credentials)", ".url",
             "FieldValueRequired"),
        Rule("!has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.key)",
             "credentialsSecretRef takes no `key`: the Secret's keys are username/password or token",
             ".credentialsSecretRef.key"),
    ],
    "DetectorSpec": [
        Rule("[has(self.threshold), has(self.robustZScore), has(self.ewma), has(self.auto)].filter(m, m).size() == 1",
             "a detector takes exactly one of `threshold`, `robustZScore`, `ewma`, `auto`"),
        Rule(
            f"self.feature != '{DLQ_FEATURE}' || self.metric in {_cel_list(DLQ_METRICS)}",
            f"the reserved feature `{DLQ_FEATURE}` has the metrics {', '.join(DLQ_METRICS)}", ".metric",
        ),
    ],
    "PipelineSpec": [
        # feature/detector name uniqueness: `x-kubernetes-list-type: map` (see LIST_MAP_KEYS)
        Rule(
            f"{_CUSTOM} || !has(self.features) || self.features.all(f, "
            f"f.dimensions.all(d, d in {_FIELDS}[{_EVENTS_SCHEMA}]))",
            "every feature dimension must be an event field", ".features",
        ),
        Rule(
            f"{_CUSTOM} || !has(self.features) || self.features.all(f, f.metrics.all(m, "
            f"{_operand_in_fields('m', 'field')} && {_operand_in_fields('m', 'numerator')} && "
            f"{_operand_in_fields('m', 'denominator')}))",
            "every metric `field`/`numerator`/`denominator` must be an event field", ".features",
        ),
        Rule(
            f"!{_GENERATOR_ON} || !{_CUSTOM}",
            "the generator makes built-in schemas only: disable it for a custom jsonSchema", ".source.generator",
        ),
        Rule(
            f"!{_GENERATOR_ON} || {_CUSTOM} || "
            "!(has(self.source) && has(self.source.generator) && has(self.source.generator.scenarios)) || "
            f"self.source.generator.scenarios.all(s, {_EVENTS_SCHEMA} in {_SCENARIO_SCHEMAS}[s])",
            "every generator scenario must fit the events' schema "
            + ", ".join(f"({n}: {'/'.join(sorted(a))})" for n, a in SCENARIO_SCHEMAS.items() if a is not None),
            ".source.generator.scenarios",
        ),
        Rule(
            f"!{_GENERATOR_ON} || !has(self.events) || !has(self.events.maxEventBytes) || "
            f"self.events.maxEventBytes >= {GENERATOR_MIN_EVENT_BYTES}",
            f"events.maxEventBytes must be at least {GENERATOR_MIN_EVENT_BYTES} with the generator on",
            ".events.maxEventBytes",
        ),
        Rule(
            "!has(self.detection) || !has(self.detection.detectors) || self.detection.detectors.all(d, "
            f"d.feature == '{DLQ_FEATURE}' || (has(self.features) && "
            "self.features.exists(f, f.name == d.feature && f.metrics.exists(m, m.name == d.metric))))",
            "every detector's `feature` must name a feature and `metric` one of its metrics",
            ".detection.detectors",
        ),
        Rule(
            f"!has(self.features) || self.features.all(f, f.name != '{DLQ_FEATURE}')",
            f"the feature name `{DLQ_FEATURE}` is reserved (the dead-letter share)", ".features",
        ),
    ],
}

# Model validators CEL cannot (cheaply) express; the operator still refuses these specs (phase Failed).
NOT_IN_CEL: dict[str, str] = {
    "PipelineSpec": "fields of a custom `jsonSchema` are free-form data, checked by the operator only",
}

# Transition rules on properties: (model, property) → rules with `oldSelf`.
PROPERTY_RULES: dict[tuple[str, str], list[Rule]] = {
    ("TopicSpec", "partitions"): [
        Rule("self >= oldSelf", "partitions may not decrease (Kafka cannot remove partitions)",
             reason="FieldValueForbidden"),
    ],
}

# Lists whose items are unique by key (the API server refuses duplicates).
LIST_MAP_KEYS: dict[tuple[str, str], list[str]] = {
    ("PipelineSpec", "features"): ["name"],
    ("DetectionSpec", "detectors"): ["name"],
}


def _on_model(name: str, schema: Schema) -> Schema:
    schema = dict(schema)
    props = dict(schema.get("properties", {}))
    for (model, prop), rules in PROPERTY_RULES.items():
        if model == name and prop in props:
            props[prop] = {**props[prop], "x-kubernetes-validations": [r.to_dict() for r in rules]}
    for (model, prop), keys in LIST_MAP_KEYS.items():
        if model == name and prop in props:
            props[prop] = {**props[prop], "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys}
    if props:
        schema["properties"] = props
    if name in CEL_RULES:
        schema["x-kubernetes-validations"] = [r.to_dict() for r in CEL_RULES[name]]
    return schema


def spec_schema() -> Schema:
    document = PipelineSpec.model_json_schema(by_alias=True, mode="validation")
    schema = to_structural(document, on_model=_on_model)
    schema["default"] = {}
    return schema


def _condition_schema() -> Schema:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "Ready, Progressing, Degraded, TopicsReady "
                     "(kafka.external.manageTopics), or a warning (ReplicasCapped)"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }


def status_schema() -> Schema:
    return {
        "description": "Written by the operator only",
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "phase": {"type": "string", "enum": PHASES},
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": _condition_schema(),
            },
            "components": {
                "description": "Per-component readiness, e.g. {kafka: Ready, topics: 4/4, processor: 3/3}",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "readyComponents": {"type": "string", "description": "Ready components / all, e.g. 9/11"},
            "kafkaBootstrap": {"type": "string", "description": "Where components reach Kafka"},
            "topics": {
                "description": "Kafka topic names by role (raw, dlq, features, anomalies)",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    }


def crd() -> dict[str, Any]:
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": [
            Rule("self.metadata.name.size() <= 40",
                 "metadata.name: a Pipeline name has at most 40 characters (object names derive from it)",
                 reason="FieldValueInvalid").to_dict(),
            Rule("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                 "metadata.name: a Pipeline name is a DNS label (lower-case letters, digits, `-`; no dots)").to_dict(),
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "adnomaly", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ready", "type": "string", "jsonPath": ".status.readyComponents",
                         "description": "Ready components / all"},
                        {"name": "Reason", "type": "string", "priority": 1,
                         "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = (
    "# GENERATED by `python -m adnomaly_operator.crd` from the Pipeline model in components/adnomaly/spec.py.\n"
    "# Do not edit: change the model (or operator/adnomaly_operator/crd.py) and regenerate.\n"
)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if "\n" in data else None)


_Dumper.add_representer(str, _str_presenter)


def render_yaml() -> str:
    return HEADER + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
