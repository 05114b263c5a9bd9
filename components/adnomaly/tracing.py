"""OpenTelemetry tracing: ingest → produce → processor batch → database write → detection.

Off by default. It turns on only when the standard environment asks for it: `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, or `OTEL_TRACES_EXPORTER` names an exporter (`otlp`,
`console`); `OTEL_SDK_DISABLED=true` wins over both. The exporter reads the rest of the standard variables
itself (headers, timeout, protocol), the sampler comes from `OTEL_TRACES_SAMPLER`/`_ARG`, the service name
from `OTEL_SERVICE_NAME`.

When off, `Tracing.span()` returns one shared null context and `inject()` does nothing: no SDK import, no
allocation per call. Context crosses Kafka as a W3C `traceparent` (and `tracestate`) message header.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, Tracer, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

KafkaHeaders = MutableSequence[tuple[str, bytes]]
TRACE_HEADERS = ("traceparent", "tracestate")
MAX_LINKS = 128  # a processor batch links to at most this many producer spans

_NULL = contextlib.nullcontext(None)
_PROPAGATOR = TraceContextTextMapPropagator()


def tracing_requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard OTEL_* variables ask for traces to be exported (pure)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class _HeaderSetter(Setter[KafkaHeaders]):
    def set(self, carrier: KafkaHeaders, key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes | str | None]]]):
    def get(self, carrier: Sequence[tuple[str, bytes | str | None]], key: str) -> list[str] | None:
        for name, value in carrier:
            if name == key and value is not None:
                return [value.decode(errors="replace") if isinstance(value, bytes) else value]
        return None

    def keys(self, carrier: Sequence[tuple[str, bytes | str | None]]) -> list[str]:
        return [name for name, _ in carrier]


_SETTER = _HeaderSetter()
_GETTER = _HeaderGetter()


class Tracing:
    """One component's tracer; every method is a no-op when `tracer` is None."""

    def __init__(self, tracer: Tracer | None = None, provider: Any = None) -> None:
        self.tracer = tracer
        self._provider = provider

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def span(
        self,
        name: str,
        *,
        parent: Context | None = None,
        links: Sequence[Link] = (),
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> AbstractContextManager[Span | None]:
        if self.tracer is None:
            return _NULL
        return self.tracer.start_as_current_span(name, context=parent, links=links, attributes=attributes)

    def start(
        self, name: str, *, links: Sequence[Link] = (), attributes: Mapping[str, str | int | float | bool] | None = None
    ) -> Span | None:
        """A span that is not made current (it outlives the call: end it with `span.end()`); None when off."""
        if self.tracer is None:
            return None
        return self.tracer.start_span(name, links=links, attributes=attributes)

    @staticmethod
    def context_of(span: Span | None) -> Context | None:
        """A context whose current span is `span`, to parent spans in another thread."""
        return None if span is None else set_span_in_context(span)

    def message_links(self, messages: Iterable[Any]) -> list[Link]:
        """Links to the producer spans of Kafka messages (`message.headers()`), at most MAX_LINKS."""
        if self.tracer is None:
            return []
        return self.links(message.headers() for message in messages if hasattr(message, "headers"))

    def inject(self, headers: KafkaHeaders) -> KafkaHeaders:
        """Append the current span's context to Kafka message headers (unchanged when off)."""
        if self.tracer is not None:
            _PROPAGATOR.inject(headers, setter=_SETTER)
        return headers

    def headers(self) -> list[tuple[str, bytes]] | None:
        """Headers carrying the current context, or None when off (what `produce(headers=...)` accepts)."""
        if self.tracer is None:
            return None
        return self.inject([])

    def extract(self, headers: Sequence[tuple[str, bytes | str | None]] | None) -> Context | None:
        """The producer's context from a message's headers; None when off or absent."""
        if self.tracer is None or not headers:
            return None
        context = _PROPAGATOR.extract(headers, getter=_GETTER)
        return context if get_current_span(context).get_span_context().is_valid else None

    def links(self, headers_of_messages: Iterable[Sequence[tuple[str, bytes | str | None]] | None]) -> list[Link]:
        """Links from a batch span to the spans that produced its messages (at most MAX_LINKS)."""
        if self.tracer is None:
            return []
        found: list[Link] = []
        for headers in headers_of_messages:
            context = self.extract(headers)
            if context is not None:
                found.append(Link(get_current_span(context).get_span_context()))
                if len(found) >= MAX_LINKS:
                    break
        return found

    def shutdown(self) -> None:
        """Flush buffered spans (call on SIGTERM drain)."""
        if self._provider is not None:
            self._provider.shutdown()


DISABLED = Tracing()


def configure(service_name: str, env: Mapping[str, str] = os.environ, exporter: Any = None) -> Tracing:
    """The component's Tracing: DISABLED unless the environment asks for traces (or `exporter` is given,
    for tests). The SDK is imported only when tracing is on."""
    if exporter is None and not tracing_requested(env):
        return DISABLED
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER / _ARG, read by the SDK
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter_from_env(env)))
    return Tracing(provider.get_tracer("adnomaly"), provider)


def _exporter_from_env(env: Mapping[str, str]) -> Any:
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_* variables
