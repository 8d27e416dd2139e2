"""Wiring of the serving service: the one place that builds real adapters."""

from __future__ import annotations

from starlette.applications import Starlette

from apev_runtime.app import build_app, build_runtime
from apev_serving import api, handlers
from apev_serving.service import ServingService
from apev_serving.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings)
    handlers.register(runtime.broker, ServingService(), settings.consumer_group)
    return build_app(runtime, routes=api.routes())
