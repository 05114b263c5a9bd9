"""One bounded schemathesis run over a live server's OpenAPI, shared by the ingest and serving API tests.

Every operation gets positive cases (a few for those with no input) and, where `examples` asks for them,
negative ones; each response must not be a 5xx and must conform to the schema (status code, content type,
body, headers). Returns how many cases ran per "METHOD PATH mode".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    response_headers_conformance,
]  # fmt: skip
Examples = Mapping[tuple[str, str, schemathesis.GenerationMode], int]
DEFAULT_POSITIVE = 10


def _operation_test(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, examples: int, base_url: str,
    headers: dict[str, str] | None, ran: dict[str, int],
) -> Callable[[], None]:  # fmt: skip
    label = f"{operation.method.upper()} {operation.path} {mode.value}"

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        ran[label] = ran.get(label, 0) + 1
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    return run


def run_schemathesis(
    base_url: str, examples: Examples, headers_for: Callable[[str], dict[str, str] | None] = lambda _path: None
) -> dict[str, int]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.validate()
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            count = examples.get((operation.method.upper(), operation.path, mode), 0)
            if mode is schemathesis.GenerationMode.POSITIVE:
                count = count or DEFAULT_POSITIVE  # the probes take no input: a few calls each
            if not count:
                continue  # nothing to negate in an operation without parameters or body
            _operation_test(operation, mode, count, base_url, headers_for(operation.path), ran)()
    return ran
