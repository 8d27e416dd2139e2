"""Wire the simulator: backend, webhook dispatcher, routes, error shape, and the fault middleware outermost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from apev_mcpsim import admin, responses
from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.faults import FaultMiddleware, Faults
from apev_mcpsim.models import Backend, SimConfig
from apev_mcpsim.webhooks import Dispatcher


@dataclass
class Simulator:
    """``asgi`` is what a server runs (the fault middleware around ``app``); the rest is for tests and admin."""

    config: SimConfig
    app: FastAPI
    asgi: FaultMiddleware
    backend: Backend
    faults: Faults
    dispatcher: Dispatcher


def create_simulator(config: SimConfig | None = None) -> Simulator:
    config = config or SimConfig()
    dispatcher = Dispatcher(
        attempts=config.webhook_attempts, backoff=config.webhook_backoff, timeout=config.webhook_timeout
    )
    backend = Backend(config, on_event=dispatcher.submit)
    faults = Faults(config.seed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await dispatcher.aclose()

    app = FastAPI(title="DentalERP MCP simulator", lifespan=lifespan)
    app.state.backend = backend
    app.state.faults = faults
    app.state.dispatcher = dispatcher
    app.state.sinks = {}

    @app.exception_handler(McpSimError)
    async def mcp_error(_: Request, exc: McpSimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app.include_router(responses.router)
    app.include_router(admin.router)
    app.include_router(admin.sink_router)
    return Simulator(
        config,
        app,
        FaultMiddleware(app, [*responses.router.routes, *admin.router.routes, *admin.sink_router.routes], faults),
        backend,
        faults,
        dispatcher,
    )
