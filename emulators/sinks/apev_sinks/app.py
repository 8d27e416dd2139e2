"""The one HTTP app: Slack under `/services/...`, PagerDuty at `/v2/enqueue`, admin under `/_admin` (and
`/__admin/faults`, the fault shape the workspace and the MCP simulator share)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from apev_sinks import admin
from apev_sinks.backend import Sinks
from apev_sinks.faults import FaultSpec
from apev_sinks.pagerduty import responses as pagerduty_routes
from apev_sinks.pagerduty.exceptions import THROTTLE_MESSAGE
from apev_sinks.slack import responses as slack_routes
from apev_sinks.smtp import responses as smtp_routes

ADMIN_PREFIX = "/_admin"


def sink_of(path: str) -> str:
    if path.startswith(("/services/", "/actions/")):
        return "slack"
    if path.startswith("/v2/"):
        return "pagerduty"
    return "other"


def fault_response(sink: str, fault: FaultSpec) -> Response:
    """An injected error in the sink's own shape: plain text for Slack, JSON for PagerDuty."""
    status = fault.status or 500
    headers = {}
    retry_after = fault.retry_after if fault.retry_after is not None else (1 if status == 429 else None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if sink == "pagerduty":
        if status == 429:
            body = {"status": "throttle event", "message": fault.body or THROTTLE_MESSAGE}
        else:
            body = {"status": "error", "message": fault.body or f"Injected fault ({status})"}
        return JSONResponse(body, status_code=status, headers=headers)
    text = fault.body or ("rate_limited" if status == 429 else "internal_error" if status >= 500 else "invalid_payload")
    return PlainTextResponse(text, status_code=status, headers=headers)


def create_app(sinks: Sinks) -> FastAPI:
    app = FastAPI(
        title="apev-sinks",
        summary="Slack, PagerDuty and SMTP stand-ins",
        docs_url="/_admin/docs",
        openapi_url="/_admin/openapi.json",
        redoc_url=None,
    )
    app.state.sinks = sinks
    app.include_router(slack_routes.api_router(sinks.slack))
    app.include_router(pagerduty_routes.api_router(sinks.pagerduty))
    app.include_router(admin.admin_router(sinks))
    app.include_router(admin.faults_router(sinks))
    app.include_router(slack_routes.admin_router(sinks.slack))
    app.include_router(pagerduty_routes.admin_router(sinks.pagerduty))
    app.include_router(smtp_routes.admin_router(sinks.mailbox))

    @app.middleware("http")
    async def faults_and_counters(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path.startswith((ADMIN_PREFIX, admin.FAULTS_PREFIX)):
            return await call_next(request)
        sink = sink_of(path)
        fault = sinks.faults.pick(path, method=request.method)
        if fault is not None and fault.latency:
            await asyncio.sleep(fault.latency)
        if fault is not None and fault.status is not None and not fault.after_apply:
            response = fault_response(sink, fault)
        else:
            response = await call_next(request)
            if fault is not None and fault.status is not None:
                # Applied, but the caller sees an error: drain the real answer and send the fault instead.
                async for _ in response.body_iterator:  # type: ignore[attr-defined]
                    pass
                response = fault_response(sink, fault)
        sinks.counters.record(sink, f"{request.method} {path}", response.status_code)
        return response

    return app
