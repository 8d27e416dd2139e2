"""Wiring of the jobs service: the one place that builds real adapters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from starlette.applications import Starlette

from apev_jobs import api, handlers, reconciler
from apev_jobs.gateway import Gateway
from apev_jobs.metrics import Metrics
from apev_jobs.service import JobsService
from apev_jobs.settings import Settings
from apev_runtime.app import build_app, build_runtime
from apev_runtime.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

log = structlog.get_logger("apev.jobs")


def create_app(settings: Settings | None = None, *, gateway: Gateway | None = None) -> Starlette:
    """`gateway` is the seam for tests that need to interfere with Databricks calls (a subclass)."""
    settings = settings or Settings()
    runtime = build_runtime(settings, migrations=[MIGRATIONS])
    if runtime.databricks is None:
        raise RuntimeError("the jobs service needs a workspace: set DATABRICKS_HOST and DATABRICKS_TOKEN")
    metrics = Metrics(runtime.registry)
    gateway = gateway or Gateway(
        runtime.databricks,
        metrics,
        failure_threshold=settings.breaker_failures,
        cool_down=settings.breaker_cool_down_seconds,
    )
    service = JobsService(runtime.db, gateway, settings, metrics, early_commit=handlers.OUTSIDE_CALLS)
    handlers.register(runtime.broker, service, settings.consumer_group)

    async def reconcile(stop: asyncio.Event) -> None:
        await reconciler.run(service, runtime.db, settings.reconcile_interval_seconds, stop)

    runtime.background.append(reconcile)
    runtime.publishes = handlers.PUBLISHES
    app = build_app(runtime, routes=api.routes(service, settings, runtime.jwt))
    app.state.service = service
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        # The destination before the first event: jobs written from then on notify this service.
        await migrate.upgrade(runtime.db, runtime.migrations)
        try:
            await service.destination()
        except Exception:
            log.warning("notification_destination_not_ready", exc_info=True)  # retried on the first job write
        async with inner(a):
            yield

    app.router.lifespan_context = lifespan
    return app
