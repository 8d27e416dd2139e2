"""Fault injection and counters: the SDK retries 429 and 503, honouring Retry-After, and not 500."""

from __future__ import annotations

import time

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InternalError

from apev_workspace.testing import RunningWorkspace


def test_429_with_retry_after_succeeds_through_sdk_retry(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    ws.reset_counters()
    rule = ws.add_fault(method="GET", path="/api/2.0/preview/scim/v2/Me", action="429", retry_after=1, count=1)
    assert rule["retry_after"] == 1
    started = time.monotonic()
    assert w.current_user.me().user_name == "admin@apev.local"
    assert time.monotonic() - started >= 1.0
    assert ws.counters() == {"GET /api/2.0/preview/scim/v2/Me": 2}
    raw = httpx.get(f"{ws.host}/__admin/faults", headers={"Authorization": f"Bearer {ws.admin_token}"}).json()
    assert raw["faults"][0]["fired"] == 1 and raw["faults"][0]["count"] == 0


def test_429_response_shape_and_503(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    ws.add_fault(path="/api/2.2/jobs/list", action="429", retry_after=3, count=1)
    response = httpx.get(f"{ws.host}/api/2.2/jobs/list", headers={"Authorization": f"Bearer {ws.admin_token}"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    ws.add_fault(path="/api/2.2/jobs/list", action="503", retry_after=1, count=1)
    assert list(w.jobs.list()) == []
    assert ws.counters("/api/2.2/jobs/list")["GET /api/2.2/jobs/list"] == 3


def test_500_is_not_retried_latency_and_ratio(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    ws.add_fault(path="/api/2.2/jobs/list", action="error", status=500, error_code="INTERNAL_ERROR", count=1)
    with pytest.raises(InternalError):
        list(w.jobs.list())
    ws.add_fault(path="/api/2.2/jobs/list", action="latency", latency_ms=300, count=1)
    started = time.monotonic()
    list(w.jobs.list())
    assert time.monotonic() - started >= 0.3
    ws.clear_faults()
    ws.add_fault(path="/api/2.0/secrets/scopes/list", action="error", status=500, ratio=0.0)
    list(w.secrets.list_scopes())  # ratio 0 never fires
    ws.reset_counters()
    assert ws.counters() == {}


def test_admin_endpoint_needs_the_admin(ws: RunningWorkspace) -> None:
    assert httpx.get(f"{ws.host}/__admin/counters").status_code == 401
    bad = httpx.post(
        f"{ws.host}/__admin/faults",
        json={"path": "/x", "action": "boom"},
        headers={"Authorization": f"Bearer {ws.admin_token}"},
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_lost_response_applies_the_request_then_drops_the_connection(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    ws.add_fault(method="POST", path="/api/2.0/secrets/scopes/create", action="lost_response", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{ws.host}/api/2.0/secrets/scopes/create",
            json={"scope": "applied"},
            headers={"Authorization": f"Bearer {ws.admin_token}"},
        )
    assert [s.name for s in w.secrets.list_scopes()] == ["applied"]
