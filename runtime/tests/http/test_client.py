import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from apev_runtime.http import (
    BreakerState,
    CircuitOpenError,
    HostBreakers,
    RetryPolicy,
    parse_retry_after,
    resilient_client,
)

FAST = RetryPolicy(attempts=4, timeout=10, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)


class Script:
    """A transport answering from a list of responses (or exceptions), recording every request."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]] | type[Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, type):
            raise answer("scripted", request=request)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, json={"detail": f"status {status}"})


def client(script: Callable[[httpx.Request], httpx.Response], **kwargs):
    kwargs.setdefault("retry", FAST)
    return resilient_client("http://svc.test:8080", transport=httpx.MockTransport(script), **kwargs)


@pytest.mark.parametrize("status", [429, 503])
async def test_429_and_503_are_retried_until_success(status: int) -> None:
    script = Script((status, {"Retry-After": "0"}), status, 200)
    async with client(script) as http:
        response = await http.get("/x")
    assert response.status_code == 200
    assert len(script.requests) == 3


async def test_retry_after_is_slept() -> None:
    script = Script((429, {"Retry-After": "0.4"}), 200)
    async with client(script) as http:
        started = time.monotonic()
        response = await http.get("/x")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_retry_after_beyond_the_cap_is_returned_not_slept() -> None:
    script = Script((429, {"Retry-After": "120"}), 200)
    async with client(script) as http:
        response = await http.get("/x")
    assert response.status_code == 429
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 502])
async def test_other_errors_are_not_retried(status: int) -> None:
    script = Script(status, 200)
    async with client(script) as http:
        response = await http.post("/x", json={})
    assert response.status_code == status
    assert len(script.requests) == 1


async def test_attempts_are_bounded_and_the_last_answer_returned() -> None:
    script = Script(503)
    async with client(script, retry=RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.01, wait_jitter=0)) as http:
        response = await http.get("/x")
    assert response.status_code == 503
    assert len(script.requests) == 3


async def test_retry_after_beyond_the_time_budget_is_returned_at_once() -> None:
    script = Script((503, {"Retry-After": "5"}), 200)
    async with client(script, retry=RetryPolicy(attempts=5, timeout=2)) as http:
        started = time.monotonic()
        response = await http.get("/x")
    assert response.status_code == 503
    assert time.monotonic() - started < 1


async def test_total_time_is_bounded() -> None:
    script = Script((503, {"Retry-After": "0.3"}))
    policy = RetryPolicy(attempts=100, timeout=0.5, wait_initial=0.01, wait_max=0.01, wait_jitter=0)
    async with client(script, retry=policy) as http:
        started = time.monotonic()
        response = await http.get("/x")
    assert response.status_code == 503
    assert time.monotonic() - started < 1.5
    assert len(script.requests) <= 3


async def test_connect_errors_are_retried_even_for_post() -> None:
    script = Script(httpx.ConnectError, 200)
    async with client(script) as http:
        response = await http.post("/x", json={"a": 1})
    assert response.status_code == 200
    assert len(script.requests) == 2


async def test_lost_response_of_a_post_is_resent_only_with_an_idempotency_key() -> None:
    script = Script(httpx.RemoteProtocolError, 200)
    async with client(script) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/x", json={})
    assert len(script.requests) == 1

    script = Script(httpx.ReadError, 200)
    async with client(script) as http:
        response = await http.post("/x", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["k1", "k1"]
    assert script.requests[0].content == script.requests[1].content == b'{"a":1}'


async def test_a_post_declared_idempotent_is_resent() -> None:
    script = Script(httpx.RemoteProtocolError, 200)
    async with client(script) as http:
        assert (await http.post("/x", json={}, idempotent=True)).status_code == 200
    assert len(script.requests) == 2


async def test_a_get_is_resent_after_a_read_error() -> None:
    script = Script(httpx.ReadTimeout, 200)
    async with client(script) as http:
        assert (await http.get("/x")).status_code == 200


async def test_breaker_opens_refuses_without_calling_and_recovers(clock) -> None:
    breakers = HostBreakers(failure_threshold=3, cool_down=30, clock=clock)
    script = Script(503)
    no_retry = RetryPolicy(attempts=1)
    async with client(script, breakers=breakers, retry=no_retry) as http:
        for _ in range(3):
            assert (await http.get("/x")).status_code == 503
        assert http.breaker().state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError) as refused:
            await http.get("/x")
        assert refused.value.host == "svc.test:8080"
        assert len(script.requests) == 3

        clock.advance(30)
        assert breakers.for_host("svc.test:8080").state is BreakerState.HALF_OPEN
        script.answers = [200]
        assert (await http.get("/x")).status_code == 200
        assert http.breaker().state is BreakerState.CLOSED


async def test_retries_stop_when_the_breaker_opens(clock) -> None:
    breakers = HostBreakers(failure_threshold=2, cool_down=30, clock=clock)
    script = Script(503)
    async with client(script, breakers=breakers) as http:
        with pytest.raises(CircuitOpenError):
            await http.get("/x")
    assert len(script.requests) == 2


async def test_4xx_does_not_count_against_the_breaker(clock) -> None:
    breakers = HostBreakers(failure_threshold=1, cool_down=30, clock=clock)
    async with client(Script(404), breakers=breakers) as http:
        await http.get("/x")
        await http.get("/x")
    assert breakers.for_host("svc.test:8080").state is BreakerState.CLOSED


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0


async def test_active_trace_travels_with_every_request() -> None:
    from opentelemetry import trace

    from apev_runtime.http import resilient_client
    from apev_runtime.tracing import setup_tracing

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200)

    setup_tracing("http-test")
    async with resilient_client("http://svc.test", transport=httpx.MockTransport(handler)) as client:
        with trace.get_tracer("t").start_as_current_span("handling-an-event") as span:
            await client.get("/x")
            trace_id = format(span.get_span_context().trace_id, "032x")
        await client.get("/y", headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert seen[0] is not None and seen[0].split("-")[1] == trace_id
    assert seen[1] == "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
