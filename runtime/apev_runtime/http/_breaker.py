"""A per-host circuit breaker whose state a Kafka consumer can read to pause while a host is down.

Not the `circuitbreaker` package: its clock is `time.monotonic` with no seam (tests would sleep through
real cool-downs), `open_remaining` is rounded to whole seconds, half-open lets every concurrent caller
through instead of one probe, and it is untyped. The state machine is small enough to own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """A call was refused because the host's breaker is open (or its one half-open probe is in flight)."""

    def __init__(self, host: str, retry_at: datetime, retry_in: float) -> None:
        super().__init__(f"circuit breaker for {host} is open; retry at {retry_at.isoformat()}")
        self.host = host
        self.retry_at = retry_at
        self.retry_in = retry_in


class Breaker:
    """Closed → (``failure_threshold`` consecutive failures) → open → (``cool_down`` s) → half-open.

    Half-open lets exactly one probe through: its success closes the breaker, its failure opens it again.
    An opening failure that carried a ``Retry-After`` keeps the breaker open at least that long.
    """

    def __init__(
        self,
        host: str,
        *,
        failure_threshold: int = 5,
        cool_down: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if cool_down < 0:
            raise ValueError(f"cool_down must be >= 0 seconds, got {cool_down}")
        self.host = host
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self._clock = clock
        self._open = False
        self._open_until = 0.0
        self._failures = 0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        if self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def failure_count(self) -> int:
        return self._failures

    @property
    def retry_in(self) -> float:
        """Seconds until calls are let through again (0 when closed or half-open)."""
        if not self._open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    @property
    def retry_at(self) -> datetime | None:
        """When the breaker half-opens (UTC), or None when it is closed."""
        if not self._open:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.retry_in)

    def before_call(self) -> bool:
        """Raise `CircuitOpenError` unless a call may go out now; in half-open, claim the single probe.

        Returns whether this call holds the probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        # Open, or half-open with the probe already out: wait at least a beat before trying again.
        retry_in = self.retry_in if state is BreakerState.OPEN else min(1.0, max(self.cool_down, 0.05))
        raise CircuitOpenError(self.host, datetime.now(UTC) + timedelta(seconds=retry_in), retry_in)

    def record_success(self) -> None:
        self._open = False
        self._failures = 0
        self._probing = False

    def record_failure(self, retry_after: float | None = None) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._open = True
            self._open_until = self._clock() + max(self.cool_down, retry_after or 0.0)
        self._probing = False

    def release(self) -> None:
        """Give back a half-open probe whose call ended without a verdict (e.g. it was cancelled)."""
        self._probing = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``before_call`` on entry; if this call held the probe and recorded no verdict, give it back."""
        probe = self.before_call()
        try:
            yield
        finally:
            if probe:
                self._probing = False

    def reset(self) -> None:
        self.record_success()

    def __repr__(self) -> str:
        return f"Breaker({self.host!r}, state={self.state.value}, failures={self._failures})"


class HostBreakers:
    """One `Breaker` per host (``host:port``), created on first use with shared settings.

    Share one instance between every client of a process so a consumer can ask ``for_host(...).state``.
    """

    def __init__(self, *, failure_threshold: int = 5, cool_down: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    @staticmethod
    def host_key(url_or_host: str) -> str:
        """``http://h:1/x`` → ``h:1``; a bare ``h:1`` or ``h`` is returned as is."""
        if "://" not in url_or_host:
            return url_or_host
        import httpx  # local: the breaker itself has no HTTP dependency

        return httpx.URL(url_or_host).netloc.decode("ascii")

    def for_host(self, host: str) -> Breaker:
        key = self.host_key(host)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = Breaker(
                key, failure_threshold=self.failure_threshold, cool_down=self.cool_down, clock=self._clock
            )
            self._breakers[key] = breaker
        return breaker

    def open_hosts(self) -> list[Breaker]:
        """Breakers that currently refuse calls (open, not yet half-open)."""
        return [b for b in self._breakers.values() if b.state is BreakerState.OPEN]

    def __iter__(self) -> Iterator[Breaker]:
        return iter(list(self._breakers.values()))
