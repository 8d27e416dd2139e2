"""Fault rules and counters, without HTTP."""

from __future__ import annotations

import pytest

from apev_sinks.faults import Faults, FaultSpec, RequestCounters


def test_a_counted_rule_applies_that_many_times_then_stops() -> None:
    faults = Faults()
    faults.add(FaultSpec(match="/v2/*", status=503, count=2))
    picks = [faults.pick("/v2/enqueue") for _ in range(3)]
    assert [p.status if p else None for p in picks] == [503, 503, None]
    [rule] = faults.rules()
    assert (rule.remaining, rule.hits) == (0, 2)


def test_patterns_select_the_target_and_the_first_live_rule_wins() -> None:
    faults = Faults()
    faults.add(FaultSpec(match="/services/T1/*", status=500, count=1))
    faults.add(FaultSpec(match="/services/*", latency=0.5))
    assert faults.pick("/v2/enqueue") is None
    first = faults.pick("/services/T1/B1/x")
    second = faults.pick("/services/T1/B1/x")
    assert (first and first.status, second and second.status, second and second.latency) == (500, None, 0.5)
    assert faults.pick("smtp:a@b.c", "smtp:ops@example.com") is None


def test_smtp_rules_match_any_recipient() -> None:
    faults = Faults()
    faults.add(FaultSpec(match="smtp:*@example.com", status=451))
    assert faults.pick("smtp:a@other.org", "smtp:ops@example.com") is not None


def test_ratio_applies_to_about_that_share_reproducibly() -> None:
    def hits(seed: int) -> list[bool]:
        faults = Faults(seed=seed)
        faults.add(FaultSpec(match="*", status=502, ratio=0.3))
        return [faults.pick("/x") is not None for _ in range(1000)]

    assert hits(7) == hits(7)
    assert 230 < sum(hits(7)) < 370


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"match": ""}, "non-empty pattern"),
        ({"match": "*", "status": 200}, "between 400 and 599"),
        ({"match": "*", "latency": -1}, "latency must be >= 0"),
        ({"match": "*", "status": 500, "count": 0}, "count must be >= 1"),
        ({"match": "*", "status": 500, "ratio": 0}, "ratio must be in"),
        ({"match": "*"}, "needs a status, a latency, or both"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultSpec(**spec)  # type: ignore[arg-type]


def test_counters_group_by_sink_target_and_status() -> None:
    counters = RequestCounters()
    counters.record("slack", "POST /services/a", 200)
    counters.record("slack", "POST /services/a", 429)
    counters.record("pagerduty", "POST /v2/enqueue", 202)
    assert counters.count(sink="slack") == 2
    assert counters.count(status=429) == 1
    snap = counters.snapshot()
    assert snap["total"] == 3
    assert snap["sinks"]["slack"]["targets"]["POST /services/a"] == {"200": 1, "429": 1}
