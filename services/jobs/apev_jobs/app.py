"""Wiring of the jobs service: the one place that builds real adapters."""

from __future__ import annotations

from starlette.applications import Starlette

from apev_jobs import api, handlers
from apev_jobs.service import JobsService
from apev_jobs.settings import Settings
from apev_runtime.app import build_app, build_runtime


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings)
    handlers.register(runtime.broker, JobsService(), settings.consumer_group)
    return build_app(runtime, routes=api.routes())
