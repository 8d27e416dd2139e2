"""The fault middleware (pure ASGI, outermost) and the admin endpoints that switch faults and read counters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apev_workspace.core.exceptions import ApiError, InvalidParameterValue
from apev_workspace.core.http import error_response
from apev_workspace.faults.models import FaultRule, Faults

ADMIN_PREFIX = "/__admin"


class FaultMiddleware:
    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.faults.record(method, path)
        rule = self.faults.match(method, path)
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.action == "latency":
            await asyncio.sleep(rule.latency_ms / 1000)
            await self.app(scope, receive, send)
        elif rule.action == "lost_response":
            await self._lose_response(scope, receive)
        else:
            await _fault_response(rule)(scope, receive, send)

    async def _lose_response(self, scope: Scope, receive: Receive) -> None:
        """Apply the request, then close the socket without a byte of response, as a lost reply looks."""

        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        # uvicorn's receive() is a bound method of its per-request cycle, which owns the transport.
        cycle: Any = getattr(receive, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise RuntimeError("lost_response needs uvicorn's transport; the server is not uvicorn")
        transport.abort()
        cycle.disconnected = True  # uvicorn then skips its "returned without a response" 500
        cycle.response_complete = True


def _fault_response(rule: FaultRule) -> Response:
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    if rule.action == "429":
        body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Injected: too many requests"}
        return JSONResponse(body, status_code=429, headers=headers)
    if rule.action == "503":
        body = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "Injected: the service is temporarily unavailable"}
        return JSONResponse(body, status_code=503, headers=headers)
    return JSONResponse(
        {"error_code": rule.error_code, "message": rule.message}, status_code=rule.status, headers=headers
    )


def _admin(request: Request) -> None:
    principal = request.app.state.workspace.identity.authenticate(request.headers.get("authorization"))
    if not principal.is_admin:
        raise ApiError(
            "Only workspace admins may use the fault admin endpoint", error_code="PERMISSION_DENIED", status=403
        )


async def add_fault(request: Request) -> Response:
    try:
        _admin(request)
        try:
            spec = json.loads(await request.body() or b"{}")
        except ValueError:
            raise InvalidParameterValue("Body must be JSON") from None
        rules = spec if isinstance(spec, list) else [spec]
        added = [request.app.state.workspace.faults.add(r).to_dict() for r in rules]
    except ApiError as err:
        return error_response(err)
    return JSONResponse(added if isinstance(spec, list) else added[0])


async def list_faults(request: Request) -> Response:
    try:
        _admin(request)
    except ApiError as err:
        return error_response(err)
    return JSONResponse({"faults": [r.to_dict() for r in request.app.state.workspace.faults.rules]})


async def clear_faults(request: Request) -> Response:
    try:
        _admin(request)
        if "rule_id" in request.path_params:
            request.app.state.workspace.faults.remove(int(request.path_params["rule_id"]))
        else:
            request.app.state.workspace.faults.clear()
    except ApiError as err:
        return error_response(err)
    return JSONResponse({})


async def get_counters(request: Request) -> Response:
    try:
        _admin(request)
    except ApiError as err:
        return error_response(err)
    counters = dict(request.app.state.workspace.faults.counters)
    prefix = request.query_params.get("prefix")
    if prefix:
        counters = {k: v for k, v in counters.items() if k.split(" ", 1)[1].startswith(prefix)}
    return JSONResponse({"counters": counters, "total": sum(counters.values())})


async def reset_counters(request: Request) -> Response:
    try:
        _admin(request)
    except ApiError as err:
        return error_response(err)
    request.app.state.workspace.faults.reset_counters()
    return JSONResponse({})
