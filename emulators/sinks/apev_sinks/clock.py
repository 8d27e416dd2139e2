"""Time for the stand-ins: the real clock in production, a manual one in tests so rate limits never need sleeps."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; rate limits measure with it."""
        ...

    def now(self) -> datetime:
        """Timezone-aware UTC wall time; records are stamped with it."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: `clock.advance(1.5)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._elapsed = 0.0
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got advance({seconds})")
        with self._lock:
            self._elapsed += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)
