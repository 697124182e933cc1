"""S1 (docs/reliability.md) with schemathesis: requests generated from the OpenAPI description
never get a 5xx."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backend.openapi import build_openapi
from backend.settings import Settings
from tests.backend.conftest import Backend, running_backend, running_engine
from tests.fakes.engine import EngineConfig

# Limits small enough for generated data to cross them.
LIMITS: dict[str, Any] = {
    "max_messages": 6,
    "max_message_chars": 100,
    "max_total_chars": 600,
    "max_body_bytes": 65536,
    "max_tokens_cap": 8,
    "max_inflight": 16,
}
schema = schemathesis.openapi.from_dict(
    build_openapi(dataclasses.replace(Settings(pod_name="test-pod"), **LIMITS))
)


@pytest.fixture(scope="module")
def served() -> Iterator[Backend]:
    """A backend with ``LIMITS`` in front of a fast fake engine."""
    with (
        running_engine(EngineConfig(tokens=3)) as engine,
        running_backend(engine.url, **LIMITS) as backend,
    ):
        yield backend


def test_the_backend_serves_this_description(served: Backend) -> None:
    assert httpx2.get(served.url + "/openapi.json").json() == schema.raw_schema


# Limits that span fields (characters summed over content parts and over all messages) cannot
# be written in OpenAPI, so a schema-valid request may still be refused; it must be refused
# for exactly those limits (checked below) rather than accepted.
CROSS_FIELD_LIMITS = {"message_too_long", "context_too_long"}


@pytest.mark.slow(reason="up to 100 generated requests per operation")
@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_follow_the_description(case: Any, served: Backend) -> None:
    response = case.call_and_validate(
        base_url=served.url, timeout=10, excluded_checks=[positive_data_acceptance]
    )
    assert response.status_code < 500
    positive = case.meta is not None and case.meta.generation.mode.name == "POSITIVE"
    if response.status_code == 400 and positive:
        assert response.json()["error"]["code"] in CROSS_FIELD_LIMITS, response.text
    assert response.headers["x-served-by"] in ("test-pod", ["test-pod"])
