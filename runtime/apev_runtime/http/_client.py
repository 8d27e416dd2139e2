"""`ResilientClient`: an httpx.AsyncClient wrapper adding bounded retries and a per-host circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import stamina
import structlog

from apev_runtime.http._breaker import Breaker, HostBreakers
from apev_runtime.http._retry import IDEMPOTENT_METHODS, RetryPolicy, parse_retry_after
from apev_runtime.tracing import inject_headers

log = structlog.get_logger(__name__)

# Statuses that count against a host's breaker: the host is overloaded or broken, not the request.
DEFAULT_FAILURE_STATUSES = frozenset({429, 500, 502, 503, 504})


class _RetryableStatusError(Exception):
    """Carries a 429/503 response through stamina's retry loop."""

    def __init__(self, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__(f"{response.request.method} {response.request.url} -> {response.status_code}")
        self.response = response
        self.retry_after = retry_after


class ResilientClient:
    """Send requests through a host's breaker, retrying per a `RetryPolicy`.

    Returns the final `httpx.Response` (which may still be a 429/503 after the last attempt, or any other
    status: interpreting it is the caller's job). Raises `CircuitOpenError` when the host's breaker refuses
    the call, and httpx's transport errors when the connection kept failing.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        breakers: HostBreakers | None = None,
        retry: RetryPolicy | None = None,
        failure_statuses: frozenset[int] = DEFAULT_FAILURE_STATUSES,
    ) -> None:
        self.http = client
        self.breakers = breakers if breakers is not None else HostBreakers()
        self.retry = retry if retry is not None else RetryPolicy()
        self.failure_statuses = failure_statuses

    @property
    def base_url(self) -> httpx.URL:
        return self.http.base_url

    def breaker(self) -> Breaker:
        """The breaker of this client's base URL host."""
        return self.breakers.for_host(self.http.base_url.netloc.decode("ascii"))

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send with retries. ``idempotent=True`` declares a POST safe to resend after a lost response (the
        server deduplicates it some other way); by default only idempotent methods and requests carrying the
        policy's ``idempotency_header`` are."""
        method = method.upper()
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}

        # The active trace (e.g. of the event being handled) travels with every call, unless the caller set one.
        traced = dict(headers or {})
        if "traceparent" not in {k.lower() for k in traced}:
            inject_headers(traced)

        def build() -> httpx.Request:
            return self.http.build_request(
                method, url, params=params, json=json, content=content, headers=traced, **extra
            )

        first = build()
        breaker = self.breakers.for_host(first.url.netloc.decode("ascii"))
        if idempotent is None:
            resend_safe = method in IDEMPOTENT_METHODS or self.retry.idempotency_header in first.headers
        else:
            resend_safe = idempotent
        policy = self.retry
        attempt_no = 0
        started = time.monotonic()

        def should_retry(exc: Exception) -> bool | float:
            if isinstance(exc, _RetryableStatusError):
                if exc.retry_after is None:
                    return True
                # A wait the server asks for that outlasts our cap or our time budget: give up now, not later.
                budget = min(policy.max_retry_after, policy.timeout - (time.monotonic() - started))
                return exc.retry_after if exc.retry_after <= budget else False
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                return True  # the request never left
            if isinstance(exc, httpx.TransportError):
                return resend_safe
            return False

        try:
            async for attempt in stamina.retry_context(
                on=should_retry,
                attempts=policy.attempts,
                timeout=policy.timeout,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    request = first if attempt_no == 0 else build()
                    attempt_no += 1
                    return await self._send_once(request, breaker)
        except _RetryableStatusError as exc:
            if attempt_no > 1:
                log.warning(
                    "http.retries_exhausted", method=method, url=str(first.url), status=exc.response.status_code
                )
            return exc.response
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _send_once(self, request: httpx.Request, breaker: Breaker) -> httpx.Response:
        with breaker.guard():
            try:
                response = await self.http.send(request)
            except httpx.TransportError:
                breaker.record_failure()
                raise
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if response.status_code in self.failure_statuses:
                breaker.record_failure(retry_after)
            else:
                breaker.record_success()
        if response.status_code in self.retry.retry_statuses:
            raise _RetryableStatusError(response, retry_after)
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def resilient_client(
    base_url: str,
    *,
    timeout: float | httpx.Timeout = 10.0,
    headers: Mapping[str, str] | None = None,
    breakers: HostBreakers | None = None,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    failure_statuses: frozenset[int] = DEFAULT_FAILURE_STATUSES,
) -> ResilientClient:
    """A `ResilientClient` over a new ``httpx.AsyncClient``; ``transport`` is the seam for tests."""
    client = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=dict(headers or {}), transport=transport)
    return ResilientClient(client, breakers=breakers, retry=retry, failure_statuses=failure_statuses)
