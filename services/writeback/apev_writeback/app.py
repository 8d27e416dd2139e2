"""Wiring of the writeback service: the one place that builds real adapters."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import structlog
from starlette.applications import Starlette

from apev_runtime.app import build_app, build_runtime
from apev_writeback import api, handlers
from apev_writeback.gateway import Gateway
from apev_writeback.metrics import Metrics
from apev_writeback.service import WritebackService
from apev_writeback.settings import Settings
from apev_writeback.tenants import tenant_directory

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

log = structlog.get_logger("apev.writeback")


def create_app(settings: Settings | None = None, *, mcp_transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """`mcp_transport` is the seam for tests that need to interfere with MCP calls."""
    settings = settings or Settings()
    runtime = build_runtime(settings, migrations=[MIGRATIONS])
    metrics = Metrics(runtime.registry)
    gateway = Gateway(settings, metrics, transport=mcp_transport)
    service = WritebackService(runtime.db, gateway, tenant_directory(settings.tenants_file), settings, metrics)
    handlers.register(runtime.broker, service, settings.consumer_group)

    async def resume(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.resume_interval_seconds)
            if stop.is_set():
                break
            try:
                await service.resume()
            except Exception:
                log.warning("resume_pass_failed", exc_info=True)
        await service.drain()
        await gateway.aclose()

    runtime.background.append(resume)
    runtime.publishes = handlers.PUBLISHES
    app = build_app(runtime, routes=api.routes(service, settings, runtime.jwt))
    app.state.service = service
    return app
