from datetime import UTC, datetime

import pytest

from apev_runtime.http import Breaker, BreakerState, CircuitOpenError, HostBreakers


def test_opens_after_threshold_and_half_opens_after_cool_down(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=3, cool_down=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in == pytest.approx(10)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.before_call()
    assert refused.value.host == "h:1"
    assert refused.value.retry_at > datetime.now(UTC)

    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_in == 0
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the probe is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failure_count == 0
    assert breaker.retry_at is None


def test_failed_probe_reopens_for_a_full_cool_down(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=1, cool_down=5, clock=clock)
    breaker.record_failure()
    clock.advance(5)
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in == pytest.approx(5)


def test_success_resets_the_consecutive_count(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=2, cool_down=5, clock=clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_retry_after_longer_than_cool_down_keeps_it_open(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=1, cool_down=5, clock=clock)
    breaker.record_failure(retry_after=60)
    clock.advance(30)
    assert breaker.state is BreakerState.OPEN
    clock.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_cancelled_probe_is_given_back(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=1, cool_down=1, clock=clock)
    breaker.record_failure()
    clock.advance(1)
    with pytest.raises(KeyboardInterrupt), breaker.guard():
        raise KeyboardInterrupt
    breaker.before_call()  # the probe slot is free again


def test_a_call_started_while_closed_does_not_free_the_probe(clock) -> None:
    breaker = Breaker("h:1", failure_threshold=1, cool_down=1, clock=clock)
    with breaker.guard():  # a slow call, started while closed
        breaker.record_failure()  # ...meanwhile another call failed: open
        clock.advance(1)
        assert breaker.before_call() is True  # a probe goes out
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # the slow call ending did not hand out a second probe


def test_host_breakers_are_per_host(clock) -> None:
    breakers = HostBreakers(failure_threshold=1, cool_down=5, clock=clock)
    breakers.for_host("http://a:1/x").record_failure()
    assert breakers.for_host("a:1").state is BreakerState.OPEN
    assert breakers.for_host("b:1").state is BreakerState.CLOSED
    assert [b.host for b in breakers.open_hosts()] == ["a:1"]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        Breaker("h", failure_threshold=0)
