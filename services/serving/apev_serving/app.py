"""Wiring of the serving service: the one place that builds real adapters."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.applications import Starlette

from apev_runtime.app import build_app, build_runtime
from apev_serving import api, handlers
from apev_serving.gateway import Gateway
from apev_serving.insights import Insights
from apev_serving.latency import Latency
from apev_serving.offboarding import Offboarding
from apev_serving.retrieval import Retrieval
from apev_serving.service import ServingService
from apev_serving.settings import Settings
from apev_serving.sql import SqlQueries

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings, migrations=[MIGRATIONS])
    if runtime.databricks is None:
        raise RuntimeError("the serving service needs a workspace: set DATABRICKS_HOST and DATABRICKS_TOKEN")
    latency = Latency(runtime.registry, settings.replica_id)
    gateway = Gateway(runtime.databricks, runtime.registry)
    sql = SqlQueries(gateway, settings, runtime.registry)
    insights = Insights(runtime.db, gateway, settings, sql)
    service = ServingService(runtime.db, gateway, settings, latency, insights)
    retrieval = Retrieval(runtime.db, gateway, settings)
    handlers.register(runtime.broker, service, settings.consumer_group, sql, settings.replica_id, retrieval)
    offboarding = Offboarding(gateway, settings, service, sql)
    handlers.register_offboarding(runtime.broker, offboarding, settings.consumer_group, settings.replica_id)

    async def publish_latency(stop: asyncio.Event) -> None:
        await service.latency_loop(stop)

    runtime.background.append(publish_latency)
    runtime.publishes = handlers.PUBLISHES
    app = build_app(runtime, routes=api.routes(service, sql, runtime.jwt))
    app.state.service = service
    app.state.sql = sql
    app.state.retrieval = retrieval
    return app
