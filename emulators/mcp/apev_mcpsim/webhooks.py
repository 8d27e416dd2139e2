"""Signed webhook delivery with retries.

Headers on every delivery (the body is the JSON event ``{id, type, tenant_code, created_at, data}``):

    X-MCP-Timestamp: <Unix seconds at this attempt>
    X-MCP-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>
    X-MCP-Event:     sync.completed | data.changed
    X-MCP-Delivery:  <event id, the same on every attempt>

A non-2xx answer or a connection error is retried ``attempts`` times with exponential backoff
(``backoff`` x 2^n, jittered); every attempt is recorded and served at ``GET /__admin/webhooks/deliveries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from typing import Any

import httpx

from apev_mcpsim.models import OutgoingEvent


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class Dispatcher:
    def __init__(self, *, attempts: int, backoff: float, timeout: float) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.deliveries: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def submit(self, outgoing: OutgoingEvent) -> None:
        """Called by the backend from inside a request; delivery happens in the background."""
        task = asyncio.get_running_loop().create_task(self._deliver(outgoing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, outgoing: OutgoingEvent) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        body = json.dumps(outgoing.event, separators=(",", ":")).encode()
        record: dict[str, Any] = {
            "event_id": outgoing.event["id"],
            "type": outgoing.event["type"],
            "tenant_code": outgoing.webhook.tenant_code,
            "url": outgoing.webhook.url,
            "attempts": [],
            "status": "pending",
        }
        self.deliveries.append(record)
        for attempt in range(self.attempts):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-MCP-Timestamp": str(timestamp),
                "X-MCP-Signature": signature(outgoing.webhook.secret, timestamp, body),
                "X-MCP-Event": outgoing.event["type"],
                "X-MCP-Delivery": outgoing.event["id"],
            }
            try:
                response = await self._client.post(outgoing.webhook.url, content=body, headers=headers)
                outcome: str | int = response.status_code
                ok = response.is_success
            except httpx.HTTPError as exc:
                outcome, ok = type(exc).__name__, False
            record["attempts"].append(outcome)
            if ok:
                record["status"] = "delivered"
                return
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff * 2**attempt * random.uniform(0.8, 1.2))
        record["status"] = "failed"

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
