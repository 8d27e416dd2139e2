"""Resilient outgoing HTTP shared by every client (MCP, Databricks-adjacent calls, Slack, PagerDuty).

    resilient_client(base_url, timeout=, headers=, breakers=, retry=, transport=) -> ResilientClient
    ResilientClient.request/get/post/...      -> httpx.Response (final; may still be 429/503)
        request(method, url, *, params, json, content, headers, timeout, idempotent=None)
    RetryPolicy(attempts, timeout, wait_*, retry_statuses={429, 503}, max_retry_after, idempotency_header)
    HostBreakers.for_host(host) -> Breaker    .state (closed/open/half_open), .retry_in, .retry_at
    CircuitOpenError(host, retry_at, retry_in)   raised instead of calling a host whose breaker is open

Retries (stamina: bounded attempts and total time, jittered exponential backoff) cover 429 and 503,
sleeping ``Retry-After`` when present, and connection errors; other 4xx/5xx are returned at once. A POST
whose response was lost is resent only when it carries an ``Idempotency-Key`` (or is declared
``idempotent=True``). Each attempt passes the
host's breaker; 429 and 5xx and connection errors count as failures. A Kafka consumer pauses while
``breakers.for_host(host).state is BreakerState.OPEN``, for ``retry_in`` seconds, instead of dropping events.
"""

from apev_runtime.http._breaker import Breaker, BreakerState, CircuitOpenError, HostBreakers
from apev_runtime.http._client import DEFAULT_FAILURE_STATUSES, ResilientClient, resilient_client
from apev_runtime.http._retry import IDEMPOTENT_METHODS, NO_RETRY, RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "NO_RETRY",
    "Breaker",
    "BreakerState",
    "CircuitOpenError",
    "HostBreakers",
    "ResilientClient",
    "RetryPolicy",
    "parse_retry_after",
    "resilient_client",
]
