"""Fault injection and request counters, as a pure ASGI middleware around the whole app.

Same rule language as the local Databricks workspace's ``/__admin/faults``: a rule matches a method (``*``
for any) and a path pattern, either a shell glob on the concrete path (``/api/v1/integrations/*/update``) or
a route template (``/api/v1/integrations/{integration_type}/update``). It fires on the next ``count``
matching requests, or on a ``ratio`` of them (a seeded draw, so runs are reproducible), or both (``count``
then caps the firings). Actions:

- ``429`` / ``503`` / ``error`` (any ``status``): answer at once with ``{"detail": ...}``, ``Retry-After``
  when ``retry_after`` is set (1 s by default for 429); the request is not applied.
- ``latency``: sleep ``latency_ms`` then serve normally.
- ``lost_response``: serve the request (its effect is applied), then drop the connection without sending a
  byte of the response.
- ``empty_page``: answer 200 ``{"data": [], "next_cursor": null}`` at once (a source that lost its data, or a
  connector bug), for the data endpoints' consumers to notice.
- ``duplicate_record``: serve normally, then repeat the page's first record at its end (the same id and
  version twice: what a broken source export looks like).

Counters are per method and route template (``GET /api/v1/integrations/{integration_id}/data``).
``/__admin/...`` itself is never faulted or counted, except the webhook sink ``/__admin/sink/...``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultAction = Literal["429", "503", "error", "latency", "lost_response", "empty_page", "duplicate_record"]
ADMIN_PREFIX = "/__admin"
SINK_PREFIX = "/__admin/sink/"


class LostResponseError(Exception):
    """Raised where the server gives no way to drop the connection (not uvicorn): the client sees an error."""


@dataclass
class Fault:
    id: int
    path: str
    method: str = "*"
    action: FaultAction = "429"
    count: int | None = None  # remaining firings; None = unlimited
    ratio: float = 1.0
    retry_after: int | None = None
    latency_ms: int = 0
    status: int = 500
    fired: int = 0

    def matches(self, method: str, path: str, template: str | None) -> bool:
        if self.method != "*" and self.method.upper() != method:
            return False
        return self.path == template or fnmatch.fnmatchcase(path, self.path)

    def view(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The fault table and the per-route counters (shared by the middleware and the admin routes)."""

    def __init__(self, seed: int) -> None:
        self.faults: list[Fault] = []
        self.counters: Counter[str] = Counter()
        self._rng = random.Random(f"{seed}:faults")
        self._ids = itertools.count(1)

    def add(self, **spec: Any) -> Fault:
        fault = Fault(id=next(self._ids), **spec)
        fault.method = fault.method.upper()
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self.faults)
        self.faults = [f for f in self.faults if f.id != fault_id]
        return len(self.faults) < before

    def clear(self) -> None:
        self.faults.clear()

    def pick(self, method: str, path: str, template: str | None) -> Fault | None:
        for fault in self.faults:
            if not fault.matches(method, path, template):
                continue
            if fault.count is not None and fault.count <= 0:
                continue
            if fault.ratio < 1.0 and self._rng.random() >= fault.ratio:
                continue
            if fault.count is not None:
                fault.count -= 1
            fault.fired += 1
            return fault
        return None


class FaultMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], faults: Faults) -> None:
        self.app = app
        self.routes = list(routes)  # the app's own routes, for the route template of a request
        self.faults = faults

    def _template(self, scope: Scope) -> str | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                path: str | None = getattr(route, "path", None)
                return path
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope["path"].startswith(ADMIN_PREFIX) and not scope["path"].startswith(SINK_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        template = self._template(scope)
        self.faults.counters[f"{method} {template or path}"] += 1
        fault = self.faults.pick(method, path, template)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.action == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            await self.app(scope, receive, send)
        elif fault.action == "lost_response":
            await self._lose_response(scope, receive, send)
        elif fault.action == "empty_page":
            await self._json(200, {"data": [], "next_cursor": None}, send)
        elif fault.action == "duplicate_record":
            await self._duplicate_first(scope, receive, send)
        else:
            status = fault.status if fault.action == "error" else int(fault.action)
            await self._reject(status, fault.retry_after, send)

    async def _reject(self, status: int, retry_after: int | None, send: Send) -> None:
        reason = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Injected error")
        body = json.dumps({"detail": f"{reason} (injected fault)"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(self, status: int, payload: Any, send: Send) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _duplicate_first(self, scope: Scope, receive: Receive, send: Send) -> None:
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        payload = json.loads(b"".join(chunks) or b"null")
        if isinstance(payload, dict) and isinstance(payload.get("data"), list) and payload["data"]:
            payload["data"].append(dict(payload["data"][0]))
        elif isinstance(payload, list) and payload:
            payload.append(dict(payload[0]))
        await self._json(int(started.get("status", 200)), payload, send)

    async def _lose_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        # uvicorn's `send` is a bound method of the request cycle that owns the socket: close it, and mark the
        # cycle disconnected so uvicorn does not answer a 500 of its own.
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None and hasattr(cycle, "disconnected"):
            transport.abort()
            cycle.disconnected = True  # type: ignore[union-attr]
            cycle.response_complete = True  # type: ignore[union-attr]
            return
        raise LostResponseError(f"{scope['method']} {scope['path']}: response dropped by an injected fault")
