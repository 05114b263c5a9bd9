"""The ingest API's OpenAPI 3.1 document, written out rather than inferred.

The events endpoint reads its body itself (two content types, streamed under a size limit), so FastAPI
cannot infer the request and responses; this module states them, with the event schema of this pipeline
(the msgspec struct of a built-in schema, or the pipeline's own JSON Schema).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from adnomaly.config import EventsConfig
from adnomaly.events.codec import REASON_CODES
from adnomaly.events.schemas import BUILTIN_SCHEMAS
from adnomaly.ingest.body import JSON, MAX_LINES, NDJSON

MAX_ERRORS = 100  # per-line errors listed in one answer; `errors_omitted` counts the rest
_REF = "#/components/schemas/{name}"
SECURITY_SCHEME = "bearerAuth"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def event_schemas(events: EventsConfig) -> tuple[str, dict[str, Any]]:
    """The name of the event schema and the component schemas it needs."""
    if events.json_schema is not None:
        schema = copy.deepcopy(events.json_schema)
        schema.pop("$schema", None)
        return "Event", {"Event": schema}
    struct = BUILTIN_SCHEMAS[events.schema_name].struct
    _, components = msgspec.json.schema_components([struct], ref_template=_REF)
    return struct.__name__, components


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref("Problem")}}}
    if headers:
        response["headers"] = headers
    return response


_RESULT_SCHEMAS: dict[str, Any] = {
    "IngestResult": {
        "type": "object",
        "description": "What became of each line of the request.",
        "properties": {
            "accepted": {"type": "integer", "minimum": 0, "description": "events now in the raw topic"},
            "rejected": {"type": "integer", "minimum": 0, "description": "invalid lines (also dead-lettered)"},
            "errors": {"type": "array", "maxItems": MAX_ERRORS, "items": _ref("LineError")},
            "errors_omitted": {
                "type": "integer", "minimum": 0,
                "description": f"rejected lines beyond the first {MAX_ERRORS}, not listed in `errors`",
            },
        },
        "required": ["accepted", "rejected", "errors", "errors_omitted"],
        "additionalProperties": False,
    },
    "LineError": {
        "type": "object",
        "properties": {
            "line": {"type": "integer", "minimum": 1, "description": "1-based line number in the body"},
            "code": {"type": "string", "enum": list(REASON_CODES)},
            "reason": {"type": "string"},
        },
        "required": ["line", "code", "reason"],
        "additionalProperties": False,
    },
    "Problem": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        "required": ["error", "detail"],
        "additionalProperties": False,
    },
    "Readiness": {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "detail": {"type": "string"}},
        "required": ["ready", "detail"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok", "failed"]}, "detail": {"type": "string"}},
        "required": ["status"],
        "additionalProperties": False,
    },
}  # fmt: skip

_EVENTS_DESCRIPTION = """\
Send one event (`application/json`) or a batch, one event per line (`application/x-ndjson`; blank lines are
skipped; line numbers count every line). Each event is validated against the pipeline's schema. Valid events
are produced to the raw Kafka topic, keyed by event id; invalid lines are answered in `errors` (at most
{max_errors} listed) and also written to the dead-letter topic with a `reason` header.

The answer comes only after Kafka has acknowledged every message of the request. `202` (and `400` for an
invalid single event) means all of it is durably recorded. `503` means Kafka did not take all of it: treat
the whole request as not accepted and send it again after `Retry-After` seconds; lines that did reach Kafka
are stored once anyway, because storage is idempotent by event id (given, or derived from the content).
Bodies above {max_body} bytes are refused with `413`, whether or not they declare a Content-Length, and so
are NDJSON bodies of more than {max_lines} lines."""


def build_openapi(events: EventsConfig, *, max_body_bytes: int, title: str, version: str) -> dict[str, Any]:
    event_name, event_components = event_schemas(events)
    www_authenticate = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": '`Bearer realm="adnomaly-ingest"`'}
    }
    retry_after = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "required": True}}
    post_events = {
        "operationId": "postEvents",
        "summary": "Ingest one event or an NDJSON batch",
        "description": _EVENTS_DESCRIPTION.format(
            max_errors=MAX_ERRORS, max_body=max_body_bytes, max_lines=MAX_LINES
        ),
        "security": [{SECURITY_SCHEME: []}],
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": _ref(event_name)},
                NDJSON: {
                    "schema": {
                        "type": "array",
                        "minItems": 1,
                        "items": _ref(event_name),
                        "description": "newline-delimited JSON: each item is one line, one event",
                    },
                },
            },
        },
        "responses": {
            "202": {
                "description": "Every line is accounted for: accepted ones are in Kafka, rejected ones listed",
                "content": {JSON: {"schema": _ref("IngestResult")}},
            },
            "400": {
                "description": "Empty body, a malformed Content-Length, or the single event is invalid "
                "(then the body is an IngestResult listing why)",
                "content": {JSON: {"schema": {"anyOf": [_ref("IngestResult"), _ref("Problem")]}}},
            },
            "401": _problem("No Authorization header, or not `Bearer <token>`", www_authenticate),
            "403": _problem("The bearer token is not valid"),
            "413": _problem(f"The body is larger than {max_body_bytes} bytes, or has more than {MAX_LINES} lines"),
            "415": _problem(f"Content-Type is neither {JSON} nor {NDJSON}"),
            "503": _problem("Kafka did not acknowledge the request's messages: send it again later", retry_after),
        },
    }
    probe = {"description": "OK"}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {
            "/v1/events": {"post": post_events},
            "/healthz": {"get": {
                "operationId": "getHealth", "summary": "Liveness: the process is serving",
                "responses": {
                    "200": {**probe, "content": {JSON: {"schema": _ref("Health")}}},
                    "503": {"description": "The Kafka producer hit a fatal error; restart the process",
                            "content": {JSON: {"schema": _ref("Health")}}},
                },
            }},
            "/readyz": {"get": {
                "operationId": "getReadiness", "summary": "Readiness: Kafka reachable and the raw topic exists",
                "responses": {
                    "200": {**probe, "content": {JSON: {"schema": _ref("Readiness")}}},
                    "503": {"description": "Not ready", "content": {JSON: {"schema": _ref("Readiness")}}},
                },
            }},
            "/metrics": {"get": {
                "operationId": "getMetrics", "summary": "Prometheus metrics",
                "responses": {"200": {**probe, "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
        },
        "components": {
            "schemas": {**event_components, **_RESULT_SCHEMAS},
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
        },
    }  # fmt: skip
