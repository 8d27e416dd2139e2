"""Fixtures: the stand-ins on a background thread with a manual clock, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from apev_sinks.clock import ManualClock
from apev_sinks.testing import RunningSinks, alert_sinks, alert_sinks_server, running_sinks

__all__ = ["alert_sinks", "alert_sinks_server"]  # the shared fixtures other teams use, tested here too


@pytest.fixture(scope="session")
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def clocked_sinks(manual_clock: ManualClock) -> Iterator[RunningSinks]:
    with running_sinks(clock=manual_clock) as sinks:
        yield sinks


@pytest.fixture
def sinks(clocked_sinks: RunningSinks) -> RunningSinks:
    """Stand-ins whose rate-limit windows move only with `manual_clock.advance(...)`."""
    clocked_sinks.reset()
    return clocked_sinks


@pytest.fixture
async def http(sinks: RunningSinks) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sinks.urls.http, timeout=5) as client:
        yield client
