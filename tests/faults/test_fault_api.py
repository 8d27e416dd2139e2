"""One fault-injection shape across the three stand-ins: the same client and rules give the same behaviour
on the local workspace, the MCP simulator and the Slack/PagerDuty sinks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from faults_client import FaultClient
from faults_report import Report

from apev_workspace.testing import running_workspace

pytestmark = pytest.mark.faults

Call = Callable[[], httpx.Response]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws")) as ws:
        yield ws


def _targets(workspace: Any, mcp_sim: Any, alert_sinks: Any) -> dict[str, tuple[FaultClient, str, str, Call]]:
    """name -> (client, method, path, a call of that path)."""
    ws_headers = {"Authorization": f"Bearer {workspace.admin_token}"}
    pd_event = {
        "routing_key": alert_sinks.routing_key,
        "event_action": "trigger",
        "dedup_key": "faults-api",
        "payload": {"summary": "fault api", "source": "tests", "severity": "info"},
    }
    return {
        "workspace": (
            FaultClient(workspace.host, ws_headers),
            "GET",
            "/api/2.1/jobs/list",
            lambda: httpx.get(f"{workspace.host}/api/2.1/jobs/list", headers=ws_headers, timeout=10),
        ),
        "mcp": (
            FaultClient(mcp_sim.base_url, {"Authorization": f"Bearer {mcp_sim.admin_key}"}),
            "GET",
            "/health",
            lambda: httpx.get(f"{mcp_sim.base_url}/health", timeout=10),
        ),
        "sinks": (
            FaultClient(alert_sinks.urls.http),
            "POST",
            "/v2/enqueue",
            lambda: httpx.post(alert_sinks.urls.pagerduty_events, json=pd_event, timeout=10),
        ),
    }


def test_every_stand_in_takes_the_same_rules(workspace: Any, mcp_sim: Any, alert_sinks: Any, report: Report) -> None:
    started = time.monotonic()
    tried = 0
    for name, (client, method, path, call) in _targets(workspace, mcp_sim, alert_sinks).items():
        client.clear()
        try:
            assert call().status_code < 400, name

            client.add("429", path, method=method, count=1, retry_after=3)
            limited = call()
            assert limited.status_code == 429, name
            assert limited.headers["retry-after"] == "3", name
            assert call().status_code < 400, name  # count=1: the next one passes

            client.add("error", path, count=1, status=418)
            assert call().status_code == 418, name

            client.add("503", path, method="DELETE", count=1)  # another method: never fires here
            assert call().status_code < 400, name

            client.add("latency", path, count=1, latency_ms=300)
            t0 = time.monotonic()
            assert call().status_code < 400, name
            assert time.monotonic() - t0 >= 0.3, name

            client.add("lost_response", path, count=1)
            try:
                lost = call()
                assert name == "sinks", f"{name} answered a lost response"
                assert lost.status_code == 502  # the sinks apply it, then fail the answer
            except httpx.HTTPError:
                assert name != "sinks"

            rules = client.list()
            assert [r["action"] for r in rules] == ["429", "error", "503", "latency", "lost_response"], name
            assert [r["fired"] for r in rules] == [1, 1, 0, 1, 1], name
            tried += 6
        finally:
            client.clear()
        assert client.list() == [], name
    report.record("fault_api_shape", tried=tried, seconds=time.monotonic() - started, stand_ins=3)


def test_the_sinks_keep_their_old_route_as_an_alias(alert_sinks: Any) -> None:
    old = httpx.post(f"{alert_sinks.urls.http}/_admin/faults", json={"match": "/v2/*", "status": 503}, timeout=10)
    assert old.status_code == 201
    shared = FaultClient(alert_sinks.urls.http).list()
    assert [(r["path"], r["action"], r["status"]) for r in shared] == [("/v2/*", "503", 503)]
    FaultClient(alert_sinks.urls.http).clear()
    assert httpx.get(f"{alert_sinks.urls.http}/_admin/faults", timeout=10).json() == []


def test_a_bad_rule_names_what_is_wrong(alert_sinks: Any) -> None:
    response = httpx.post(f"{alert_sinks.urls.http}/__admin/faults", json={"path": "/v2/*", "ratio": 0}, timeout=10)
    assert response.status_code == 400
    assert "ratio" in response.text
