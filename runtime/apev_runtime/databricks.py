"""Databricks clients: `databricks-sdk` only (never hand-written REST), called in worker threads.

The SDK is synchronous (requests). `DatabricksClients.call(fn, ...)` runs one SDK call in a bounded thread
pool, so a slow workspace never blocks the event loop and never opens unbounded threads. Clients are built
once per token: the service's own, or a tenant principal's, so Unity Catalog grants act as a second wall.

The service's own identity is either a PAT (`token`) or OAuth M2M (`client_id` + `client_secret` of a service
principal: the SDK finds the token endpoint at `<host>/oidc/.well-known/oauth-authorization-server`, asks it for
`client_credentials` tokens and refreshes them before they expire). Exactly one of the two; tenant principals'
clients are always PAT clients.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

T = TypeVar("T")
log = structlog.get_logger("apev.databricks")

_OWN = "\x00own"  # the cache key of the service's own client (never a token value)


class DatabricksConfigError(ValueError):
    """Not exactly one of PAT (`token`) and OAuth M2M (`client_id` + `client_secret`) is configured."""


class DatabricksSignInError(RuntimeError):
    """The workspace refused the service's own credentials (raised at start-up; names the client id only)."""


class DatabricksClients:
    def __init__(
        self,
        host: str,
        token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        threads: int = 8,
        retry_timeout_seconds: int = 60,
    ) -> None:
        if token and (client_id or client_secret):
            raise DatabricksConfigError(
                "Databricks: configure either DATABRICKS_TOKEN (PAT) or DATABRICKS_CLIENT_ID + "
                "DATABRICKS_CLIENT_SECRET (OAuth M2M), not both"
            )
        if bool(client_id) != bool(client_secret):
            missing = "DATABRICKS_CLIENT_SECRET" if client_id else "DATABRICKS_CLIENT_ID"
            raise DatabricksConfigError(f"Databricks OAuth M2M needs both client id and secret; {missing} is not set")
        if not token and not client_id:
            raise DatabricksConfigError(
                "Databricks: no credentials; set DATABRICKS_TOKEN (PAT) or DATABRICKS_CLIENT_ID + "
                "DATABRICKS_CLIENT_SECRET (OAuth M2M)"
            )
        self.host = host
        self._token = token
        self.client_id = client_id
        self._client_secret = client_secret
        self._retry_timeout = retry_timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="databricks")
        self._clients: dict[str, WorkspaceClient] = {}

    @property
    def auth_type(self) -> str:
        return "oauth-m2m" if self.client_id else "pat"

    def _config(self, token: str | None) -> Config:
        # auth_type pins the method: no ~/.databrickscfg or DATABRICKS_* variable can add a second one.
        if token is None and self.client_id:
            return Config(
                host=self.host,
                client_id=self.client_id,
                client_secret=self._client_secret,
                auth_type="oauth-m2m",
                retry_timeout_seconds=self._retry_timeout,
                http_timeout_seconds=30,
            )
        return Config(
            host=self.host,
            token=token or self._token,
            auth_type="pat",
            retry_timeout_seconds=self._retry_timeout,
            http_timeout_seconds=30,
        )

    def workspace(self, token: str | None = None) -> WorkspaceClient:
        """The client for `token` (default: the service's own). Built on first use: its constructor probes
        `/.well-known/databricks-config` (and, for M2M, the OAuth discovery document), so it is never built on
        the event loop (`call` builds it lazily)."""
        key = token or _OWN
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = WorkspaceClient(config=self._config(token))
        return client

    async def call(self, fn: Callable[[WorkspaceClient], T], *, token: str | None = None) -> T:
        """Run `fn(workspace_client)` in the pool: `await clients.call(lambda w: w.jobs.get(job_id=1))`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(lambda: fn(self.workspace(token))))

    async def ping(self) -> None:
        """Readiness: the workspace answers an authenticated call."""
        await self.call(lambda w: w.current_user.me())

    async def check_sign_in(self, timeout: float = 30.0) -> None:
        """Start-up check of OAuth M2M credentials: fetch the service's first access token.

        A refused client (wrong secret, unknown client id, no discovery document) raises `DatabricksSignInError`
        naming the host and client id, never the secret. A workspace that cannot be reached in `timeout` is
        only logged: readiness (`ping`) keeps reporting it. PATs are not checked here (readiness does).
        """
        if not self.client_id:
            return

        def sign_in(w: WorkspaceClient) -> None:
            w.config.authenticate()

        try:
            await asyncio.wait_for(self.call(sign_in), timeout)
        except (TimeoutError, OSError) as exc:  # requests' connection errors and timeouts are OSErrors
            log.warning("databricks_unreachable_at_start", host=self.host, error=type(exc).__name__)
        except Exception as exc:
            reason = str(exc)
            if self._client_secret:
                reason = reason.replace(self._client_secret, "***")
            raise DatabricksSignInError(
                f"Databricks OAuth M2M sign-in failed for client id {self.client_id} at {self.host}: {reason}"
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:  # never print the token or the client secret
        return f"DatabricksClients(host={self.host!r}, auth_type={self.auth_type!r})"
