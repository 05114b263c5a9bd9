"""Which Prometheus series each component exposes, collected from the code's own metric constructors.

The dashboards and alert rules are checked against this: a metric name used in a query that no component
registers is a typo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def exposed_names(collector: Collector) -> set[str]:
    """The series names a collector puts on /metrics (`_created` left out: nobody should query it)."""
    names = set()
    for family in collector.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def _module_metrics(module: str) -> Callable[[], set[str]]:
    def collect() -> set[str]:
        found = importlib.import_module(module)
        names: set[str] = set()
        for value in vars(found).values():
            if isinstance(value, MetricWrapperBase):
                names |= exposed_names(value)
        return names

    return collect


def _registry_metrics(build: Callable[[CollectorRegistry], object]) -> set[str]:
    registry = CollectorRegistry()
    build(registry)
    return {name for name in exposed_names(registry) if name.startswith("adnomaly_")}


def _ingest() -> set[str]:
    from adnomaly.ingest.metrics import IngestMetrics

    return {name for name in exposed_names(IngestMetrics().registry) if name.startswith("adnomaly_")}


def _processor() -> set[str]:
    from adnomaly.processor.metrics import ProcessorMetrics

    return _registry_metrics(ProcessorMetrics.create)


def _lake() -> set[str]:
    from adnomaly.sinks.lake.metrics import LakeMetrics

    return _registry_metrics(LakeMetrics.create)


def _feature_sink() -> set[str]:
    from adnomaly.sinks.features.metrics import FeatureSinkMetrics

    return _registry_metrics(FeatureSinkMetrics.create)


def _detector() -> set[str]:
    from adnomaly.detector.metrics import DetectorMetrics

    return _registry_metrics(DetectorMetrics)


def _serving() -> set[str]:
    from adnomaly.serving.app import ServingMetrics

    return _registry_metrics(ServingMetrics.create)


# component (as in plan.COMPONENT_MODULES, plus the operator) → how to list its series
_SOURCES: dict[str, Callable[[], set[str]]] = {
    "generator": _module_metrics("adnomaly.generator.metrics"),
    "ingest": _ingest,
    "processor": _processor,
    "lake-sink": _lake,
    "feature-sink": _feature_sink,
    "serving": _serving,
    "detector": _detector,
    "operator": _module_metrics("adnomaly_operator.metrics"),
}


def registered_metrics(components: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
    """component → the `adnomaly_` series names its code registers."""
    wanted = _SOURCES if components is None else {name: _SOURCES[name] for name in components}
    return {name: frozenset(collect()) for name, collect in wanted.items()}


def owners(catalog: dict[str, frozenset[str]]) -> dict[str, set[str]]:
    """series name → the components exposing it (consumer lag is shared by every consumer)."""
    found: dict[str, set[str]] = {}
    for component, names in catalog.items():
        for name in names:
            found.setdefault(name, set()).add(component)
    return found
