"""Alert rules end to end: real Kafka and PostgreSQL, the Slack/PagerDuty/SMTP stand-ins, injected time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from apev_contracts import CostSampled
from apev_contracts.envelope import new_event
from apev_contracts.ids import cost_sample_id
from apev_monitor import tables
from apev_sinks.testing import RunningSinks

from .conftest import Stack, latency, monitor_stack, run_finished, unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, pg_url: str, sinks: RunningSinks, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    tenants = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    tenants.write_text("defaults:\n  freshness_minutes: 1440\ntenants: {}\n")
    async with monitor_stack(kafka_bootstrap, pg_url, sinks, tenants_file=tenants) as s:
        yield s


def job_id() -> str:
    return str(random.randint(10**6, 10**9))


async def alerts_of(s: Stack, rule: str) -> list[dict]:
    async with s.service.db.engine.connect() as conn:
        rows = (await conn.execute(select(tables.alerts).where(tables.alerts.c.rule == rule))).all()
    return [dict(r._mapping) for r in rows]


async def test_two_failures_page_once_repeat_quiet_success_resolves_silence_stops(stack: Stack) -> None:
    s = stack
    s.sinks.reset()
    tenant, job = unique("fail"), job_id()
    t0 = s.clock.now()
    first = [
        run_finished(tenant, job, "11", "failure", t0 - timedelta(minutes=40)),
        run_finished(tenant, job, "12", "failure", t0),
    ]
    await s.send(*first)
    await s.consumed(*first)

    await s.step(1)  # firing at once (for: 0), but the new group waits group_wait (30 s)
    assert [a["state"] for a in await alerts_of(s, "job_failures") if a["tenant_id"] == tenant] == ["firing"]
    assert s.incidents(tenant) == [] and s.slack(tenant) == []
    await s.step(30)
    (incident,) = s.incidents(tenant)
    assert incident.status == "triggered" and len(s.slack(tenant)) == 1
    slack = s.slack(tenant)[0]
    assert any(b.get("type") == "actions" for b in slack.blocks)  # the run page button
    assert "job/" + job + "/run/12" in str(slack.blocks)

    third = run_finished(tenant, job, "13", "failure", s.clock.now())
    await s.send(third)
    await s.consumed(third)
    for _ in range(3):
        await s.step(120)  # past group_interval, inside repeat_interval: the group is unchanged
    assert len(s.incidents(tenant)) == 1 and s.incidents(tenant)[0].trigger_count == 1
    assert len(s.slack(tenant)) == 1

    ok = run_finished(tenant, job, "14", "success", s.clock.now())
    await s.send(ok)
    await s.consumed(ok)
    await s.step(1)
    (incident,) = s.incidents(tenant)
    assert incident.status == "resolved"
    events = s.sinks.backend.pagerduty.events(dedup_key=incident.dedup_key)
    assert [e.event_action for e in events] == ["trigger", "resolve"]
    assert len(s.slack(tenant)) == 1  # resolved notifications are off for Slack by default

    async with s.http(tenant) as http:
        r = await http.post(
            "/api/v1/monitor/silences", json={"matchers": {"rule": "job_failures", "job_id": job}, "duration": "2h"}
        )
        assert r.status_code == 201, r.text
        silence_id = r.json()["silence_id"]
        assert r.json()["matchers"]["tenant_id"] == tenant
    again = [run_finished(tenant, job, str(n), "failure", s.clock.now()) for n in (15, 16)]
    await s.send(*again)
    await s.consumed(*again)
    for step in (1, 31, 301):
        await s.step(step)
    assert len(s.incidents(tenant)) == 1 and len(s.slack(tenant)) == 1
    async with s.http(tenant) as http:
        body = (await http.get("/api/v1/monitor/alerts", params={"rule": "job_failures"})).json()
        (alert,) = body["alerts"]
        assert alert["state"] == "firing" and alert["silenced"] is True
        assert [h["state"] for h in alert["history"]] == ["firing", "resolved", "firing"]
        silences = (await http.get("/api/v1/monitor/silences")).json()["silences"]
        assert [x["state"] for x in silences if x["silence_id"] == silence_id] == ["active"]
        assert (await http.delete(f"/api/v1/monitor/silences/{silence_id}")).json()["state"] == "expired"
    async with s.http(unique("other")) as http:  # another tenant sees none of it
        assert (await http.get("/api/v1/monitor/alerts")).json()["alerts"] == []
    async with s.http(None) as http:
        assert (await http.get("/api/v1/monitor/alerts")).status_code == 401


async def test_p95_over_500ms_for_5_minutes_scales_once_and_a_spike_does_not(stack: Stack) -> None:
    s = stack
    s.sinks.reset()
    tenant = unique("lat")
    slow, spiky = unique("ep-slow"), unique("ep-spike")
    states: list[str] = []
    for i in range(17):  # 8 minutes in 30 s steps, two replicas each
        now = s.clock.now()
        spike = {1000: 30, 50: 1} if i < 2 else {50: 40}
        events = [
            latency(tenant, slow, "r1", now, {1000: 18, 100: 2}),
            latency(tenant, slow, "r2", now, {2500: 10, 50: 1}),
            latency(tenant, spiky, "r1", now, spike),
            latency(tenant, spiky, "r2", now, {50: 20}),
        ]
        await s.send(*events)
        await s.consumed(*events)
        await s.service.tick()
        states.append(
            next(
                a["state"] for a in await alerts_of(s, "model_serving_latency") if a["labels"]["endpoint_name"] == slow
            )
        )
        s.clock.advance(30)
    # pending for 5 minutes (10 steps of 30 s), then firing, and it stays firing
    assert states[:10] == ["pending"] * 10 and set(states[10:]) == {"firing"}, states
    spike_states = [
        a["state"] for a in await alerts_of(s, "model_serving_latency") if a["labels"]["endpoint_name"] == spiky
    ]
    assert spike_states == ["inactive"]

    (scale,) = await s.wait_published("endpoint.scale.requested", lambda e: e.data.endpoint_name == slow)
    assert scale.data.rule == "model_serving_latency" and scale.data.threshold_ms == 500
    assert scale.data.observed_p95_ms == 2500
    await s.step(60)
    assert [e for e in s.published["endpoint.scale.requested"] if e.data.endpoint_name in (slow, spiky)] == [scale]
    assert len(s.slack(slow)) == 1 and len(s.incidents(slow)) == 1
    assert s.slack(spiky) == [] and s.incidents(spiky) == []


async def test_slack_429_and_pagerduty_503_are_retried_and_delivered_once(stack: Stack) -> None:
    s = stack
    s.sinks.reset()
    tenant, job = unique("retry"), job_id()
    now = s.clock.now()
    runs = [run_finished(tenant, job, "21", "failure", now), run_finished(tenant, job, "22", "failure", now)]
    await s.send(*runs)
    await s.consumed(*runs)
    s.sinks.fault("/services/*", status=429, count=1, retry_after=2)
    s.sinks.fault("/v2/enqueue", status=503, count=1, retry_after=1)
    await s.step(1)
    await s.step(30)
    assert s.slack(tenant) == [] and s.incidents(tenant) == []
    await s.step(1)  # PagerDuty's Retry-After (1 s) has passed, Slack's (2 s) not yet
    assert len(s.incidents(tenant)) == 1 and s.slack(tenant) == []
    await s.step(1)
    assert len(s.slack(tenant)) == 1
    for step in (1, 10, 60):
        await s.step(step)
    assert len(s.slack(tenant)) == 1
    (incident,) = s.incidents(tenant)
    assert incident.trigger_count == 1 and len(s.sinks.backend.pagerduty.events(dedup_key=incident.dedup_key)) == 1

    async with s.service.db.engine.connect() as conn:
        n, a = tables.notifications.c, tables.attempts.c
        rows = (
            await conn.execute(
                select(tables.notifications.c.receiver, n.status, n.attempts, a.outcome, a.status_code, a.retry_after)
                .join(tables.attempts, a.notification_id == n.id)
                .where(n.dedup_key == incident.dedup_key)
                .order_by(a.id)
            )
        ).all()
    attempts = {(r.receiver, r.outcome, r.status_code, r.retry_after) for r in rows}
    assert attempts == {
        ("slack", "retry", 429, 2.0),
        ("slack", "delivered", 200, None),
        ("pagerduty", "retry", 503, 1.0),
        ("pagerduty", "delivered", 202, None),
    }
    assert {(r.receiver, r.status, r.attempts) for r in rows} == {
        ("slack", "delivered", 2),
        ("pagerduty", "delivered", 2),
    }


async def test_a_lost_answer_is_retried_for_pagerduty_and_not_resent_to_slack(stack: Stack) -> None:
    """Both stand-ins take the request, then answer 502: PagerDuty's trigger is re-sent and joins the incident
    (its dedup key); Slack's message is not re-sent (a webhook has no key: it would be a second message)."""
    s = stack
    s.sinks.reset()
    tenant, job = unique("lost"), job_id()
    now = s.clock.now()
    runs = [run_finished(tenant, job, "41", "failure", now), run_finished(tenant, job, "42", "failure", now)]
    await s.send(*runs)
    await s.consumed(*runs)
    s.sinks.fault("/services/*", status=502, count=1, after_apply=True)
    s.sinks.fault("/v2/enqueue", status=502, count=1, after_apply=True)
    for step in (1, 30, 5, 10, 60):
        await s.step(step)
    assert len(s.slack(tenant)) == 1
    (incident,) = s.incidents(tenant)
    assert incident.trigger_count == 2  # taken twice, one incident
    async with s.service.db.engine.connect() as conn:
        n = tables.notifications.c
        rows = (
            await conn.execute(select(n.receiver, n.status, n.attempts).where(n.dedup_key == incident.dedup_key))
        ).all()
    assert {(r.receiver, r.status, r.attempts) for r in rows} == {
        ("slack", "unconfirmed", 1),
        ("pagerduty", "delivered", 2),
    }


async def test_pagerduty_400_is_not_retried(stack: Stack) -> None:
    s = stack
    s.sinks.reset()
    tenant, job = unique("bad"), job_id()
    now = s.clock.now()
    runs = [run_finished(tenant, job, "31", "failure", now), run_finished(tenant, job, "32", "failure", now)]
    await s.send(*runs)
    await s.consumed(*runs)
    s.sinks.fault("/v2/enqueue", status=400, count=5)
    for step in (1, 30, 5, 60):
        await s.step(step)
    assert s.incidents(tenant) == [] and len(s.slack(tenant)) == 1  # Slack is not held back by PagerDuty
    async with s.service.db.engine.connect() as conn:
        n = tables.notifications.c
        rows = (await conn.execute(select(n.receiver, n.status, n.attempts).where(n.rule == "job_failures"))).all()
    assert ("pagerduty", "failed", 1) in {(r.receiver, r.status, r.attempts) for r in rows}


def cost_event(tenant: str, day_offset: int, dollars: str, s: Stack) -> object:
    day = s.clock.now().date() - timedelta(days=day_offset)
    start = s.clock.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=day_offset)
    data = CostSampled(
        tenant_id=tenant,
        usage_date=day,
        sku="STANDARD_JOBS_COMPUTE",
        dbus=Decimal(dollars) * 2,
        dollars=Decimal(dollars),
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    return new_event(data, tenant_id=tenant, source="tests/monitor", id=cost_sample_id(tenant, day, data.sku, 0))


async def test_cost_anomaly_fires_on_a_planted_spike_and_not_on_a_steady_series(stack: Stack) -> None:
    s = stack
    spiky, steady = unique("spike"), unique("steady")
    history = ["10.00", "10.50", "9.80", "10.20", "9.90", "10.10", "10.30"]
    events = [cost_event(spiky, i + 1, d, s) for i, d in enumerate(history)] + [cost_event(spiky, 0, "61.00", s)]
    events += [cost_event(steady, i + 1, d, s) for i, d in enumerate(history)] + [cost_event(steady, 0, "10.60", s)]
    await s.send(*events)  # type: ignore[arg-type]
    await s.consumed(*events)  # type: ignore[arg-type]
    await s.step(1)
    firing = {a["tenant_id"]: a for a in await alerts_of(s, "cost_anomaly") if a["tenant_id"] in (spiky, steady)}
    assert set(firing) == {spiky} and firing[spiky]["state"] == "firing"
    assert firing[spiky]["labels"]["usage_date"] == s.clock.now().date().isoformat()
    async with s.http(spiky, ("analyst",)) as http:
        days = (await http.get(f"/api/v1/monitor/tenants/{spiky}/cost")).json()["days"]
        assert days[-1]["dollars"] == "61.000000" and len(days) == 7  # the default range is the last 7 days


async def test_dlq_growth_from_end_offsets_and_stale_ingest(stack: Stack, tmp_path: Path) -> None:
    s = stack
    await s.step(1)  # a baseline snapshot of the DLQ end offsets
    before = await s.service.dlq.end_offsets() if s.service.dlq else {}
    await s.send_raw("run.finished", b"\xff not an event")
    for _ in range(200):
        assert s.service.dlq is not None
        if (await s.service.dlq.end_offsets()).get("run.finished.dlq", 0) > before.get("run.finished.dlq", 0):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the junk never reached run.finished.dlq")
    await s.step(1)
    (dlq,) = [a for a in await alerts_of(s, "dlq_growth") if a["labels"]["topic"] == "run.finished.dlq"]
    assert dlq["state"] == "firing" and dlq["value"] == "1"
    await s.step(16 * 60)
    (dlq,) = [a for a in await alerts_of(s, "dlq_growth") if a["labels"]["topic"] == "run.finished.dlq"]
    assert dlq["state"] == "resolved"

    tenant = unique("fresh")
    s.settings.tenants_file.write_text(
        f"defaults:\n  freshness_minutes: 1440\ntenants:\n  {tenant}:\n    freshness_minutes: {{ds-1: 60}}\n"
    )
    ok = run_finished(
        tenant, job_id(), "41", "success", s.clock.now(), kind="ingest", key="ds-1", tags={"ap_datasource_id": "ds-1"}
    )
    await s.send(ok)
    await s.consumed(ok)
    await s.step(59 * 60)
    assert [a for a in await alerts_of(s, "data_freshness") if a["tenant_id"] == tenant] == []
    await s.step(2 * 60)
    (stale,) = [a for a in await alerts_of(s, "data_freshness") if a["tenant_id"] == tenant]
    assert stale["state"] == "firing" and stale["labels"]["datasource_id"] == "ds-1"
    fresh = run_finished(
        tenant,
        ok.data.job_id,
        "42",
        "success",
        s.clock.now(),
        kind="ingest",
        key="ds-1",
        tags={"ap_datasource_id": "ds-1"},
    )
    await s.send(fresh)
    await s.consumed(fresh)
    await s.step(1)
    (stale,) = [a for a in await alerts_of(s, "data_freshness") if a["tenant_id"] == tenant]
    assert stale["state"] == "resolved"
