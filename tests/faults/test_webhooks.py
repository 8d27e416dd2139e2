"""The services' webhook receivers refuse bad signatures and replayed or stale timestamps: MCP webhooks into
ingest (HMAC + replay cache), Slack interactions into writeback (signing secret + timestamp window), and
Databricks notifications into jobs (basic auth). Only the accepted request reaches the service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from faults_report import Report
from starlette.applications import Starlette

from apev_ingest import api as ingest_api
from apev_jobs import api as jobs_api
from apev_jobs.settings import Settings as JobsSettings
from apev_runtime.mcp import WebhookVerifier, signed_headers
from apev_writeback import api as writeback_api
from apev_writeback.settings import Settings as WritebackSettings

pytestmark = pytest.mark.faults

MCP_SECRET = "mcp-webhook-secret-for-the-fault-suite"
SLACK_SECRET = "slack-signing-secret-for-the-fault-suite"


class Stub:
    """A service whose counters and metrics absorb anything; `reached` lists the service calls made."""

    def __init__(self, reached: list[str] | None = None) -> None:
        self.reached = reached if reached is not None else []

    def __getattr__(self, name: str) -> Any:
        if name in ("on_mcp_webhook", "slack_action", "on_run_webhook", "on_webhook"):

            async def call(*args: Any, **kwargs: Any) -> Any:
                self.reached.append(name)
                return "accepted" if name == "on_mcp_webhook" else {"text": "ok"}

            return call
        return Stub(self.reached)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return Stub(self.reached)


async def _post(app: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return (await client.post(path, content=body, headers=headers)).status_code


async def test_mcp_webhooks_into_ingest(report: Report) -> None:
    service = Stub()
    app = Starlette(routes=ingest_api.routes(service, None, WebhookVerifier(MCP_SECRET, tolerance=300)))  # type: ignore[arg-type]
    body = json.dumps(
        {"id": "evt-1", "type": "data.changed", "tenant_code": "ACME", "created_at": "2026-12-01T00:00:00Z", "data": {}}
    ).encode()
    now = int(time.time())

    def headers(secret: str = MCP_SECRET, ts: int = now, delivery: str = "d-1") -> dict[str, str]:
        return signed_headers(secret, body, event="data.changed", delivery_id=delivery, timestamp=ts)

    refused = {
        "unsigned": await _post(app, "/webhooks/mcp", body, {}),
        "wrong secret": await _post(app, "/webhooks/mcp", body, headers(secret="not-the-secret-at-all-000")),
        "body changed": await _post(app, "/webhooks/mcp", body + b" ", headers()),
        "stale timestamp": await _post(app, "/webhooks/mcp", body, headers(ts=now - 3600)),
    }
    assert service.reached == []
    first = await _post(app, "/webhooks/mcp", body, headers())
    refused["replayed"] = await _post(app, "/webhooks/mcp", body, headers())
    report.record("webhooks_mcp", tried=len(refused) + 1, lost=sum(s != 401 for s in refused.values()))
    assert all(s == 401 for s in refused.values()), refused
    assert first < 500 and first != 401, first
    assert service.reached == ["on_mcp_webhook"]  # the replay never reached it


def _slack_headers(body: bytes, ts: int, secret: str = SLACK_SECRET) -> dict[str, str]:
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "x-slack-request-timestamp": str(ts),
        "x-slack-signature": sig,
        "content-type": "application/x-www-form-urlencoded",
    }


async def test_slack_interactions_into_writeback(report: Report) -> None:
    service = Stub()
    settings = WritebackSettings(slack_signing_secret=SLACK_SECRET)  # type: ignore[arg-type]
    app = Starlette(routes=writeback_api.routes(service, settings, None))  # type: ignore[arg-type]
    body = b"payload=" + json.dumps({"type": "block_actions", "actions": []}).encode()
    now = int(time.time())
    refused = {
        "unsigned": await _post(app, "/slack/interactions", body, {}),
        "wrong secret": await _post(app, "/slack/interactions", body, _slack_headers(body, now, "other-secret-xyz")),
        "body changed": await _post(app, "/slack/interactions", body + b"x", _slack_headers(body, now)),
        "replayed timestamp": await _post(app, "/slack/interactions", body, _slack_headers(body, now - 3600)),
        "future timestamp": await _post(app, "/slack/interactions", body, _slack_headers(body, now + 3600)),
    }
    report.record("webhooks_slack", tried=len(refused), lost=sum(s != 401 for s in refused.values()))
    assert all(s == 401 for s in refused.values()), refused
    assert service.reached == []


async def test_databricks_notifications_into_jobs(report: Report) -> None:
    settings = JobsSettings(webhook_password="the-destination-password-0123")  # type: ignore[arg-type]
    app = Starlette(routes=jobs_api.routes(Stub(), settings, None))  # type: ignore[arg-type]

    def basic(user: str, password: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    body = json.dumps({"event_type": "jobs.on_success", "run": {"run_id": 1}}).encode()
    refused = {
        "no auth": await _post(app, "/webhooks/databricks", body, {}),
        "wrong password": await _post(app, "/webhooks/databricks", body, basic(settings.webhook_username, "guess")),
        "wrong user": await _post(app, "/webhooks/databricks", body, basic("someone", "the-destination-password-0123")),
        "bearer instead": await _post(app, "/webhooks/databricks", body, {"authorization": "Bearer abc"}),
        "not base64": await _post(app, "/webhooks/databricks", body, {"authorization": "Basic %%%"}),
    }
    report.record("webhooks_databricks", tried=len(refused), lost=sum(s != 401 for s in refused.values()))
    assert all(s == 401 for s in refused.values()), refused
