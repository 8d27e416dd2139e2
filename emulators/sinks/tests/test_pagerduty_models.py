"""PagerDuty Events API v2 behaviour, without HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apev_sinks.clock import ManualClock
from apev_sinks.pagerduty.exceptions import InvalidEventError, ThrottledError
from apev_sinks.pagerduty.models import PagerDutyBackend

KEY = "k" * 32
OTHER = "o" * 32


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pd(clock: ManualClock) -> PagerDutyBackend:
    return PagerDutyBackend(clock, routing_keys={KEY: "oncall", OTHER: "other"})


def event(action: str = "trigger", dedup_key: str | None = "job-failures:t1", **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"routing_key": KEY, "event_action": action}
    if dedup_key is not None:
        out["dedup_key"] = dedup_key
    if action == "trigger":
        out["payload"] = {"summary": "2 job failures in 1 h", "source": "monitor", "severity": "error"}
    out.update(overrides)
    return out


def errors_of(pd: PagerDutyBackend, body: Any) -> list[str]:
    with pytest.raises(InvalidEventError) as exc:
        pd.enqueue(body)
    assert exc.value.status == 400
    assert exc.value.body()["status"] == "invalid event"
    return exc.value.errors


def test_three_triggers_one_incident_resolve_closes_a_fourth_opens_a_new_one(pd: PagerDutyBackend) -> None:
    outcomes = [pd.enqueue(event()).outcome for _ in range(3)]
    assert outcomes == ["opened", "deduplicated", "deduplicated"]
    [first] = pd.incidents()
    assert (first.status, first.trigger_count, first.service) == ("triggered", 3, "oncall")

    assert pd.enqueue(event("resolve")).outcome == "resolved"
    assert first.status == "resolved"
    assert first.resolved_at is not None

    fourth = pd.enqueue(event())
    assert fourth.outcome == "opened"
    old, new = pd.incidents(dedup_key="job-failures:t1")
    assert (old.id, old.status) == (first.id, "resolved")
    assert (new.status, new.trigger_count) == ("triggered", 1)
    assert new.id != old.id


def test_acknowledged_incident_stays_acknowledged_when_triggered_again(pd: PagerDutyBackend) -> None:
    pd.enqueue(event())
    assert pd.enqueue(event("acknowledge")).outcome == "acknowledged"
    assert pd.enqueue(event()).outcome == "deduplicated"
    [incident] = pd.incidents()
    assert (incident.status, incident.trigger_count) == ("acknowledged", 2)
    assert [e["event_action"] for e in incident.log] == ["trigger", "acknowledge", "trigger"]


def test_acknowledge_or_resolve_of_an_unknown_key_is_accepted_and_ignored(pd: PagerDutyBackend) -> None:
    assert pd.enqueue(event("acknowledge", "nothing-open")).outcome == "ignored"
    assert pd.enqueue(event("resolve", "nothing-open")).outcome == "ignored"
    assert pd.incidents() == []
    assert len(pd.events()) == 2


def test_a_resolved_incident_is_final(pd: PagerDutyBackend) -> None:
    pd.enqueue(event())
    pd.enqueue(event("resolve"))
    assert pd.enqueue(event("acknowledge")).outcome == "ignored"
    assert pd.enqueue(event("resolve")).outcome == "ignored"
    assert [i.status for i in pd.incidents()] == ["resolved"]


def test_trigger_without_dedup_key_gets_a_generated_one(pd: PagerDutyBackend) -> None:
    one = pd.enqueue(event(dedup_key=None))
    two = pd.enqueue(event(dedup_key=None))
    assert len(one.dedup_key) == 32
    assert one.dedup_key != two.dedup_key
    assert len(pd.incidents()) == 2


def test_dedup_is_scoped_to_the_routing_key(pd: PagerDutyBackend) -> None:
    pd.enqueue(event())
    pd.enqueue(event(routing_key=OTHER))
    assert sorted(i.service for i in pd.incidents()) == ["oncall", "other"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({**event(), "routing_key": ""}, "'routing_key' is missing or blank"),
        ({**event(), "routing_key": "short"}, "Length of 'routing_key' is incorrect (should be 32 characters)"),
        ({**event(), "routing_key": "x" * 32}, "Invalid routing key"),
        ({**event(), "event_action": None}, "'event_action' is missing or blank"),
        ({**event(), "event_action": "escalate"}, "'event_action' must be one of trigger, acknowledge, resolve"),
        (event(dedup_key="d" * 256), "'dedup_key' is too long (maximum is 255 characters, got 256)"),
        (event("resolve", dedup_key=None), "'dedup_key' is missing or blank (required to resolve)"),
        (event("acknowledge", dedup_key=""), "'dedup_key' is missing or blank (required to acknowledge)"),
        ({**event(), "payload": None}, "'payload' is missing or not an object (required to trigger)"),
        (event(payload={"source": "m", "severity": "info"}), "'payload.summary' is missing or blank"),
        (event(payload={"summary": "s" * 1025, "source": "m", "severity": "info"}), "'payload.summary' is too long"),
        (event(payload={"summary": "s", "severity": "info"}), "'payload.source' is missing or blank"),
        (event(payload={"summary": "s", "source": "m"}), "'payload.severity' is missing or blank"),
        (event(payload={"summary": "s", "source": "m", "severity": "high"}), "'payload.severity' must be one of"),
        (
            event(payload={"summary": "s", "source": "m", "severity": "info", "timestamp": "yesterday"}),
            "'payload.timestamp' must be an ISO 8601 timestamp",
        ),
        ([1, 2], "Event object must be a JSON object"),
    ],
)
def test_invalid_events_are_rejected_with_the_reason(pd: PagerDutyBackend, body: Any, expected: str) -> None:
    errors = errors_of(pd, body)
    assert any(e.startswith(expected) for e in errors), errors
    assert pd.events() == []


def test_limits_at_the_boundary_are_accepted(pd: PagerDutyBackend) -> None:
    payload = {"summary": "s" * 1024, "source": "m", "severity": "critical", "timestamp": "2026-01-01T00:00:00Z"}
    pd.enqueue(event(dedup_key="d" * 255, payload=payload))
    assert pd.incidents()[0].dedup_key == "d" * 255


def test_every_problem_is_reported_at_once(pd: PagerDutyBackend) -> None:
    errors = errors_of(pd, {"event_action": "trigger", "payload": {"severity": "loud"}})
    assert len(errors) == 4  # routing_key, summary, source, severity


def test_body_over_512_kb_and_malformed_json_are_400(pd: PagerDutyBackend) -> None:
    big = event(payload={"summary": "s", "source": "m", "severity": "info", "custom_details": {"x": "y" * 524_288}})
    with pytest.raises(InvalidEventError, match="too large"):
        pd.enqueue_bytes(json.dumps(big).encode())
    with pytest.raises(InvalidEventError, match="Malformed JSON"):
        pd.enqueue_bytes(b"{")


def test_more_than_the_limit_per_window_is_throttled_per_routing_key(clock: ManualClock) -> None:
    pd = PagerDutyBackend(clock, rate_limit=3, rate_window=60, routing_keys={KEY: "oncall", OTHER: "other"})
    for _ in range(3):
        pd.enqueue(event())
        clock.advance(10)
    with pytest.raises(ThrottledError) as exc:
        pd.enqueue(event())
    assert exc.value.status == 429
    assert exc.value.body()["status"] == "throttle event"
    pd.enqueue(event(routing_key=OTHER))  # another key has its own budget
    clock.advance(30.5)  # the first event (t=0) is now older than 60 s
    pd.enqueue(event())
    assert pd.incidents(routing_key=KEY)[0].trigger_count == 4


def test_registering_a_key_needs_32_characters(pd: PagerDutyBackend) -> None:
    with pytest.raises(ValueError, match="exactly 32 characters"):
        pd.register("too-short")
    pd.register("n" * 32, "new-service")
    assert pd.routing_keys()["n" * 32] == "new-service"
