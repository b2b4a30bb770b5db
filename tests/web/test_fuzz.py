"""A property-based fuzz of the whole API from its own OpenAPI document (schemathesis),
through the proxy and the real web process: no 5xx, and every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from appliance.web.openapi import openapi_document
from tests.web.stack import Stack, running_stack

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fuzz"), mongodb_uri, database_name) as stack:
        yield stack


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_document(case: Any, stack: Stack) -> None:
    # Every check but "schema-valid data is accepted": a request can fit the document and
    # still be refused as documented (an unknown job is 404, a 30 February is 400).
    case.call_and_validate(
        base_url=stack.proxy + "/api", excluded_checks=[positive_data_acceptance]
    )
