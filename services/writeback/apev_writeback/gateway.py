"""Outside calls of the writeback service: MCP (one client per tenant code, with that tenant's own key) and
Slack (the approvals channel's incoming webhook, and a decision's `response_url`).

Every MCP client shares one `HostBreakers`, so an open breaker on the MCP host stops every tenant's calls
(and, through `McpCircuitOpenError`, pauses consumption); retries honour `Retry-After`. Limits per
(tenant, target system): at most `target_concurrency` calls in flight and `target_rate_per_second`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog

from apev_runtime.http import HostBreakers, RetryPolicy, resilient_client
from apev_runtime.mcp import McpClient, WriteBack, WriteBackResult
from apev_writeback.metrics import Metrics
from apev_writeback.settings import Settings

log = structlog.get_logger("apev.writeback.gateway")


class _TargetLimit:
    """A semaphore plus a pace: one tenant's burst waits on its own slots, never on another tenant's."""

    def __init__(self, concurrency: int, rate: float) -> None:
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self.slots:
            if self.interval:
                async with self.lock:
                    wait = self.next_at - time.monotonic()
                    self.next_at = max(self.next_at, time.monotonic()) + self.interval
                if wait > 0:
                    await asyncio.sleep(wait)
            yield


class Gateway:
    def __init__(self, settings: Settings, metrics: Metrics, *, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.metrics = metrics
        self.breakers = HostBreakers(
            failure_threshold=settings.breaker_failures, cool_down=settings.breaker_cool_down_seconds
        )
        self.retry = RetryPolicy(
            attempts=settings.mcp_attempts,
            timeout=settings.mcp_retry_timeout_seconds,
            wait_initial=settings.mcp_wait_initial_seconds,
            wait_max=2.0,
            wait_jitter=settings.mcp_wait_initial_seconds,
        )
        self._transport = transport
        self._clients: dict[str, McpClient] = {}
        self._keys_lock = asyncio.Lock()
        self._limits: dict[tuple[str, str], _TargetLimit] = {}
        self._slack = resilient_client(
            "http://slack.invalid", timeout=5.0, breakers=HostBreakers(failure_threshold=5, cool_down=10.0)
        )

    @property
    def mcp_configured(self) -> bool:
        return bool(self.settings.mcp_base_url and self.settings.mcp_api_key)

    async def _client(self, code: str) -> McpClient:
        """The client for one MCP tenant, with a key minted for that tenant only (the admin key mints it)."""
        client = self._clients.get(code)
        if client is not None:
            return client
        async with self._keys_lock:
            client = self._clients.get(code)
            if client is None:
                assert self.settings.mcp_base_url and self.settings.mcp_api_key
                base = self.settings.mcp_base_url
                async with McpClient(
                    base, self.settings.mcp_api_key.get_secret_value(), breakers=self.breakers, retry=self.retry,
                    transport=self._transport,
                ) as admin:  # fmt: skip
                    key = (await admin.create_api_key(code)).api_key
                client = McpClient(
                    base, key, tenant=code, breakers=self.breakers, retry=self.retry,
                    timeout=self.settings.mcp_timeout_seconds, transport=self._transport,
                )  # fmt: skip
                self._clients[code] = client
        return client

    def limit(self, tenant_id: str, system: str) -> _TargetLimit:
        key = (tenant_id, system)
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = _TargetLimit(
                self.settings.target_concurrency, self.settings.target_rate_per_second
            )
        return found

    async def update(
        self, tenant_id: str, code: str, system: str, change: WriteBack, idempotency_key: str
    ) -> WriteBackResult:
        client = await self._client(code)
        async with self.limit(tenant_id, system).hold():
            return await client.update(system, change, idempotency_key=idempotency_key)

    async def current_values(self, code: str, entity_type: str, entity_id: str, fields: list[str]) -> dict[str, Any]:
        """The record's present values of `fields` (for the approval message); empty when it cannot be read."""
        try:
            client = await self._client(code)
            for record in await client.current(entity_type, limit=1000):
                if str(next(iter(record.values()))) == entity_id:
                    return {f: _plain(record.get(f.lower())) for f in fields}
        except Exception as exc:  # the message is still worth sending without old values
            log.warning("current_values_unavailable", entity_type=entity_type, error=repr(exc)[:300])
        return {}

    async def post_slack(self, url: str, message: dict[str, Any]) -> None:
        """One message to an incoming webhook (429 retried after Retry-After); raises on a refusal."""
        response = await self._slack.post(url, json=message)
        self.metrics.slack_posts.labels(str(response.status_code)).inc()
        if response.status_code != 200:
            raise RuntimeError(f"Slack refused the message: {response.status_code} {response.text[:200]}")

    async def respond_slack(self, response_url: str, message: dict[str, Any]) -> None:
        response = await self._slack.post(response_url, json=message)
        self.metrics.slack_posts.labels(str(response.status_code)).inc()
        if response.status_code != 200:
            log.warning("slack_response_url_refused", status=response.status_code, body=response.text[:200])

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        await self._slack.aclose()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
