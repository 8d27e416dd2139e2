"""Wiring of the monitor service: the one place that builds real adapters."""

from __future__ import annotations

from starlette.applications import Starlette

from apev_monitor import api, handlers
from apev_monitor.service import MonitorService
from apev_monitor.settings import Settings
from apev_runtime.app import build_app, build_runtime


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings)
    handlers.register(runtime.broker, MonitorService(), settings.consumer_group)
    return build_app(runtime, routes=api.routes())
