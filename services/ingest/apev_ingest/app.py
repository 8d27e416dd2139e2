"""Wiring of the ingest service: the one place that builds real adapters."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from starlette.applications import Starlette

from apev_ingest import api, handlers
from apev_ingest.lineage_client import MonitorLineage
from apev_ingest.metrics import Metrics
from apev_ingest.service import IngestService, Mcp
from apev_ingest.settings import Settings
from apev_ingest.tenants import tenant_directory
from apev_runtime.app import build_app, build_runtime
from apev_runtime.http import HostBreakers
from apev_runtime.mcp import WebhookVerifier

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

log = structlog.get_logger("apev.ingest")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings, migrations=[MIGRATIONS])
    if runtime.databricks is None:
        raise RuntimeError("the ingest service needs a workspace: set DATABRICKS_HOST and DATABRICKS_TOKEN")
    if not settings.mcp_base_url or settings.mcp_api_key is None:
        raise RuntimeError("the ingest service needs MCP: set MCP_BASE_URL and MCP_API_KEY (the admin key)")
    mcp = Mcp(
        base_url=settings.mcp_base_url,
        admin_key=settings.mcp_api_key.get_secret_value(),
        workspace_url=settings.mcp_workspace_url or settings.mcp_base_url,
        breakers=HostBreakers(
            failure_threshold=settings.breaker_failures, cool_down=settings.breaker_cool_down_seconds
        ),
    )
    metrics = Metrics(runtime.registry)
    lineage = MonitorLineage(
        settings.monitor_url,
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        timeout=settings.monitor_timeout_seconds,
    )
    service = IngestService(
        runtime.db,
        runtime.databricks,
        mcp,
        settings,
        tenant_directory(settings.tenants_file),
        metrics,
        wake_relay=runtime.relay.wake,
        lineage=lineage,
    )
    handlers.register(runtime.broker, service, settings.consumer_group)
    secret = settings.mcp_webhook_secret
    verifier = (
        WebhookVerifier(secret.get_secret_value(), tolerance=settings.webhook_tolerance_seconds) if secret else None
    )

    async def gauges(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await service.refresh_gauges()
            except Exception:
                log.warning("gauges_refresh_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.metrics_refresh_seconds)

    async def credentials(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.credential_check_seconds)
            if stop.is_set():
                return
            try:
                await service.rotation.check()
            except Exception:
                log.warning("credentials_check_failed", exc_info=True)

    async def close_lineage(stop: asyncio.Event) -> None:
        await stop.wait()
        await lineage.aclose()

    runtime.background += [gauges, credentials, close_lineage]
    runtime.publishes = handlers.PUBLISHES
    app = build_app(runtime, routes=api.routes(service, runtime.jwt, verifier))
    app.state.service = service
    return app
