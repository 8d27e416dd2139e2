"""Which failures delivery retries, dead-letters at once, or waits out."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from databricks.sdk.errors import InvalidParameterValue, NotFound, TemporarilyUnavailable, TooManyRequests

from apev_contracts.errors import InvalidPayload
from apev_runtime.errors import Failure, PermanentError, TransientError, classify
from apev_runtime.http import CircuitOpenError
from apev_runtime.mcp import McpConflictError, McpNotFoundError, McpUnavailableError


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://hooks.slack.test/services/x")
    return httpx.HTTPStatusError("boom", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PermanentError("refused"), Failure.PERMANENT),
        (InvalidPayload("bad", field="data.kind"), Failure.PERMANENT),
        (McpNotFoundError("no such employee", status=404), Failure.PERMANENT),
        (McpConflictError("stale expected_version", status=409), Failure.PERMANENT),
        (InvalidParameterValue("bad cron"), Failure.PERMANENT),
        (NotFound("job 7"), Failure.PERMANENT),
        (_status_error(400), Failure.PERMANENT),
        (TransientError("flaky"), Failure.TRANSIENT),
        (McpUnavailableError("503", status=503), Failure.TRANSIENT),
        (TooManyRequests("slow down"), Failure.TRANSIENT),
        (TemporarilyUnavailable("busy"), Failure.TRANSIENT),
        (_status_error(429), Failure.TRANSIENT),
        (_status_error(502), Failure.TRANSIENT),
        (httpx.ConnectError("refused"), Failure.TRANSIENT),
        (TimeoutError(), Failure.TRANSIENT),
        (KeyError("a bug"), Failure.TRANSIENT),  # bounded retries, then the DLQ with its class and message
        (CircuitOpenError("mcp:443", datetime.now(UTC), 5.0), Failure.CIRCUIT_OPEN),
    ],
)
def test_classify(exc: BaseException, expected: Failure) -> None:
    assert classify(exc) is expected
