"""Hostile input generated from our own /openapi.json against the real service: no 5xx, no response
that breaks the documented schema, authenticated and not.

Schema-valid data may still be refused on purpose (an unknown list, DELETE without `all` or `id`), so
the "valid data must be accepted" check is left out; every other schemathesis check applies.
"""

from __future__ import annotations

import base64
import os
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from bounce_service.app import ROUTES
from bounce_service.openapi import documented_routes
from tests.serving import serve

ADMIN = "Basic " + base64.b64encode(b"admin:dev-admin-token").decode()


@pytest.fixture(scope="module")
def service_url(database_url: str) -> Iterator[str]:
    with serve(database_url) as (url, _):
        yield url


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value) -> bytes:
    """The import body is documented as a string of NDJSON lines; send it as such."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


OPERATIONS = [(method.upper(), path) for method, path, _ in documented_routes(ROUTES)]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def api_schema(service_url: str):
    return schemathesis.openapi.from_url(f"{service_url}/openapi.json")


# Driven through Hypothesis directly: schemathesis's pytest plugin does not support pytest 9 yet.
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("authenticated", [True, False], ids=["admin", "anonymous"])
def test_operation(api_schema, method, path, authenticated):
    operation = api_schema[path][method]
    headers = {"Authorization": ADMIN} if authenticated else {}

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    exercise()
