"""The console's calls to the other services: their HTTP APIs only, with a short-lived service token and the
request's trace context (`traceparent`, injected by `apev_runtime.http`), and an answer that says when a service
is down instead of raising, so a page renders what it has.

The service token is minted here (HS256, `APEV_JWT_SECRET`) for the tenant the page is about, with the signed-in
user's roles (an admin's: `admin`), and `sub` = `console:<user>`: the services still decide what the user may do,
and their audit trails name who did it. Without a shared secret (RS256 deployments) the user's own token is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from apev_runtime.auth import Principal, mint_token
from apev_runtime.http import NO_RETRY, CircuitOpenError, HostBreakers, ResilientClient, resilient_client

log = structlog.get_logger("apev.monitor.console")

PARTS = ("ingest", "jobs", "serving", "writeback", "monitor")


@dataclass
class Answer:
    """One service call's outcome: `ok` with a JSON `body`, or `down`/`error` with a sentence for the page."""

    part: str
    status: int = 0
    body: Any = None
    down: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.down and self.error is None and 200 <= self.status < 300

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default) if isinstance(self.body, dict) else default


@dataclass
class ServiceClients:
    urls: dict[str, str | None]
    secret: str | None
    issuer: str
    audience: str
    timeout: float = 8.0
    token_ttl: int = 300
    transports: dict[str, httpx.AsyncBaseTransport] = field(default_factory=dict)
    _clients: dict[str, ResilientClient] = field(default_factory=dict)
    _tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One failure opens nothing: a page asks each service a few times; a breaker per host still spares a
        # dead host the full timeout on every fragment refresh.
        breakers = HostBreakers(failure_threshold=3, cool_down=10.0)
        for part, url in self.urls.items():
            if url:
                self._clients[part] = resilient_client(
                    url.rstrip("/"),
                    timeout=self.timeout,
                    breakers=breakers,
                    retry=NO_RETRY,
                    transport=self.transports.get(part),
                )

    def configured(self, part: str) -> bool:
        return part in self._clients

    def token(self, user: Principal, raw: str, tenant: str) -> str:
        if not self.secret:
            return raw
        roles = ("admin",) if "admin" in user.roles else tuple(sorted(user.roles))
        key = (tenant, user.subject, roles)
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic() + 30:
            return cached[0]
        minted = mint_token(
            self.secret,
            tenant_id=tenant,
            roles=list(roles),
            subject=f"console:{user.subject}",
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=self.token_ttl,
        )
        self._tokens[key] = (minted, time.monotonic() + self.token_ttl)
        return minted

    async def call(
        self,
        part: str,
        method: str,
        path: str,
        *,
        user: Principal,
        raw: str,
        tenant: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Answer:
        client = self._clients.get(part)
        if client is None:
            return Answer(part, down=True, error=f"{part}: not configured (MONITOR_{part.upper()}_URL)")
        headers = {"Authorization": f"Bearer {self.token(user, raw, tenant)}"}
        started = time.monotonic()
        try:
            got = await client.request(method, path, params=params, json=json, headers=headers)
        except CircuitOpenError as exc:
            return Answer(part, down=True, error=f"{part} is down (breaker open, next try in {exc.retry_in:.0f} s)")
        except httpx.TimeoutException:
            return Answer(part, down=True, error=f"{part} is down: no answer within {self.timeout:.0f} s")
        except httpx.TransportError as exc:
            return Answer(part, down=True, error=f"{part} is down: {type(exc).__name__}")
        log.debug("console_call", part=part, method=method, path=path, status=got.status_code,
                  ms=round((time.monotonic() - started) * 1000, 1))  # fmt: skip
        try:
            body = got.json()
        except ValueError:
            body = got.text[:500]
        if got.status_code >= 500:
            return Answer(
                part,
                got.status_code,
                body,
                down=got.status_code in (502, 503, 504),
                error=_detail(part, got.status_code, body),
            )
        if got.status_code >= 400:
            return Answer(part, got.status_code, body, error=_detail(part, got.status_code, body))
        return Answer(part, got.status_code, body)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def _detail(part: str, status: int, body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body
        if isinstance(detail, list):
            detail = "; ".join(
                f"{d.get('field')}: {d.get('message')}" if isinstance(d, dict) else str(d) for d in detail
            )
        return f"{part} answered {status}: {detail}"
    return f"{part} answered {status}: {str(body)[:300]}"
