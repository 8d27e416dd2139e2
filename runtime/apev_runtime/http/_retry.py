"""Retry policy and ``Retry-After`` parsing for outgoing HTTP calls."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Methods that may be sent twice without a second effect (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How a `ResilientClient` retries one request. Bounded both in attempts and in total time.

    - ``retry_statuses`` (429 and 503 by default) are retried, sleeping ``Retry-After`` when the server sent
      one (capped: a ``Retry-After`` longer than ``max_retry_after`` or than the time left of ``timeout`` is
      not slept through, the response is returned at once), else a jittered exponential backoff
      (``wait_initial`` doubling up to ``wait_max``, plus up to ``wait_jitter``). Other 4xx and 5xx are never
      retried.
    - Connection errors are retried when the request surely did not reach the server (connect errors), or
      when sending it twice is harmless: an idempotent method, or a request carrying ``idempotency_header``.
      A POST without one whose response was lost is not resent (the server may have applied it).
    """

    attempts: int = 5
    timeout: float = 30.0
    wait_initial: float = 0.1
    wait_max: float = 5.0
    wait_jitter: float = 0.5
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    max_retry_after: float = 60.0
    idempotency_header: str = "Idempotency-Key"

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")


NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
