"""Retries must really happen in these tests, whatever another suite set stamina's testing mode to."""

from collections.abc import Iterator

import pytest
import stamina


@pytest.fixture(autouse=True)
def real_retries() -> Iterator[None]:
    before = stamina.is_testing()
    stamina.set_testing(False)
    yield
    stamina.set_testing(before)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
