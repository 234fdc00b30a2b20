"""schemathesis against runbookd's own OpenAPI document, served by a real runbookd on
127.0.0.1: for every operation, valid and invalid inputs (Hypothesis-generated, derandomised
so CI is reproducible) must never get a 5xx, and every answer must match the documented
schema and content type.

The API is called as the admin identity, the webhooks with the bearer token, so requests get
past authentication and reach the code behind it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.auth import WEBHOOK_TOKEN, auth
from tests.support.binaries import need_module
from tests.support.net import RunningServer

pytestmark = pytest.mark.e2e

# Examples per operation and generation mode: about 30 operations, twice, within ~60 s.
EXAMPLES = 10
NO_INPUT = {"GET /api/v1/guards", "POST /-/reload", "GET /api/v1/runbooks", "GET /api/v1/mappings",
            "POST /slack/interactions", "POST /api/v1/approval-links/{link_id}/revoke",
            "GET /-/healthy", "GET /-/ready", "GET /metrics"}


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    # Operations that take no input at all have no invalid input to send.
    no_invalid_input: list[str] = field(default_factory=list)
    calls: int = 0


def fuzz(base_url: str, admin_token: str) -> Report:
    """Run every operation in both generation modes and collect what fails."""
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    admin = auth(admin_token)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=admin,
                                           timeout=10)
    report = Report()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            headers = (auth(WEBHOOK_TOKEN) if operation.path.startswith("/webhooks/")
                       else admin)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                exercise(operation, mode, base_url=base_url, session=session,
                         headers=headers, report=report)
    return report


def exercise(operation: Any, mode: Any, *, base_url: str, session: Any,
             headers: dict[str, str], report: Report) -> None:
    """Up to EXAMPLES generated calls of one operation; a failure is recorded, not raised."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
    )

    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        report.calls += 1
        case.call_and_validate(base_url=base_url, session=session, headers=headers,
                               checks=checks, timeout=15)

    try:
        run()
    except Unsatisfiable as exc:
        if mode.is_positive:
            report.failures.append(f"[{mode.value}] {operation.label}: {exc}")
        else:
            report.no_invalid_input.append(operation.label)
    # schemathesis raises a FailureGroup, which is a BaseExceptionGroup.
    except (Exception, BaseExceptionGroup) as exc:
        report.failures.append(f"[{mode.value}] {operation.label}: {exc}")


async def test_openapi_fuzz_no_5xx_and_responses_match_the_schema(
        server: RunningServer, tokens: dict[str, str]) -> None:
    need_module("schemathesis")
    started = time.monotonic()
    # schemathesis calls with `requests` (blocking): run it on a thread while this event
    # loop serves runbookd.
    report = await asyncio.to_thread(fuzz, server.url, tokens["root"])
    took = time.monotonic() - started
    print(f"\nschemathesis: {report.calls} calls in {took:.0f}s; no invalid input exists for "
          f"{', '.join(report.no_invalid_input) or 'none'}")
    assert report.calls > 200, f"only {report.calls} calls were made"
    # Only operations whose every input is free-form can have no invalid input.
    assert set(report.no_invalid_input) <= NO_INPUT, report.no_invalid_input
    assert not report.failures, "\n\n".join(report.failures)
    assert took < 120, f"the fuzz run took {took:.0f}s"
