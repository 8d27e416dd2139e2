"""Databricks clients: `databricks-sdk` only (never hand-written REST), called in worker threads.

The SDK is synchronous (requests). `DatabricksClients.call(fn, ...)` runs one SDK call in a bounded thread
pool, so a slow workspace never blocks the event loop and never opens unbounded threads. Clients are built
once per token: the service's own, or a tenant principal's, so Unity Catalog grants act as a second wall.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

T = TypeVar("T")


class DatabricksClients:
    def __init__(self, host: str, token: str, *, threads: int = 8, retry_timeout_seconds: int = 60) -> None:
        self.host = host
        self._token = token
        self._retry_timeout = retry_timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="databricks")
        self._clients: dict[str, WorkspaceClient] = {}

    def workspace(self, token: str | None = None) -> WorkspaceClient:
        """The client for `token` (default: the service's own). Built on first use: its constructor probes
        `/.well-known/databricks-config`, so it is never built on the event loop (`call` builds it lazily)."""
        key = token or self._token
        client = self._clients.get(key)
        if client is None:
            # auth_type pins PAT auth: no ~/.databrickscfg or DATABRICKS_* variable can add a second method.
            cfg = Config(
                host=self.host,
                token=key,
                auth_type="pat",
                retry_timeout_seconds=self._retry_timeout,
                http_timeout_seconds=30,
            )
            client = self._clients[key] = WorkspaceClient(config=cfg)
        return client

    async def call(self, fn: Callable[[WorkspaceClient], T], *, token: str | None = None) -> T:
        """Run `fn(workspace_client)` in the pool: `await clients.call(lambda w: w.jobs.get(job_id=1))`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(lambda: fn(self.workspace(token))))

    async def ping(self) -> None:
        """Readiness: the workspace answers an authenticated call."""
        await self.call(lambda w: w.current_user.me())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:  # never print the token
        return f"DatabricksClients(host={self.host!r})"
