"""An alert storm: the monitor (run as `python -m apev_monitor`) raises one alert per failed job while the Slack
and PagerDuty stand-ins answer 429 (with Retry-After), 503, slowly, or take the request and lose the answer
(502), on 20 % of calls, with a burst of consecutive 503s halfway that opens the notifier's breaker. Counted
in the stand-ins: every alert reaches both sinks, 0 duplicate PagerDuty incidents (one per dedup key) and 0
duplicate Slack messages per alert. Short (`make test`): ~8 s of alerts; long (`make faults`): a minute.

PagerDuty re-sends after a lost answer (its dedup key joins the incident); Slack does not (an incoming webhook
has no key): the notification ends `unconfirmed`, which the stand-in shows was in fact posted. Slack's own rate
limit is off here: with it on, a lost answer can hide a refusal (the stand-in "applies" the message, Slack's
limit refuses it, the fault answers 502) and that message is then missed (one of 20 in a run with a 0.2 s
limit). No client of an incoming webhook can tell those two 502s apart; re-sending instead
(`MONITOR_SLACK_RESEND_UNCONFIRMED=true`) trades the miss for a duplicate of every posted one.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from faults_client import FaultClient
from faults_report import Report
from service_procs import TENANT, Monitor, Stand, metric, until

from apev_contracts import RunFinished
from apev_contracts.envelope import CloudEvent, new_event

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

STORM = [  # 4 x 5 % = 20 % of calls, on each sink
    {"action": "429", "ratio": 0.05, "retry_after": 1},
    {"action": "503", "ratio": 0.05},
    {"action": "latency", "ratio": 0.05, "latency_ms": 400},
    {"action": "lost_response", "ratio": 0.05},
]
SINK_PATHS = ("/services/*", "/v2/enqueue")
RULES = {
    "defaults": {"group_wait": "0s", "group_interval": "1h", "repeat_interval": "4h"},
    "receivers": {"slack": {"send_resolved": False}, "pagerduty": {"send_resolved": False}},
    "rules": [
        {
            "name": "storm_job_failures",
            "kind": "job_failures",
            "severity": "critical",
            "notify": ["pagerduty", "slack"],
            "params": {"threshold": 1, "window": "1h"},
        }
    ],
}
_JOB = re.compile(r"\(job (\d+)\)")


class MonitorAlerts(Monitor):
    """`run.finished` (a failed run of a job of its own) -> one alert -> one PagerDuty incident and one Slack
    message, counted per job id in the stand-ins (the alert's summary names the job; its labels carry it)."""

    topic = "run.finished"

    def __init__(self) -> None:
        self.webhook = f"T0APEV0000/B{secrets.token_hex(4).upper()}/storm-alerts"
        self.routing_key = secrets.token_hex(16)
        self.base = 10**9 + secrets.randbelow(10**8) * 100_000

    async def prepare(self, stand: Stand) -> None:
        stand.sinks.backend.slack.register(self.webhook, "#storm-alerts")
        stand.sinks.backend.pagerduty.register(self.routing_key, "storm")
        (stand.tmp / "storm-rules.yaml").write_text(yaml.safe_dump(RULES))

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        return {
            **super().env(stand, index),
            "MONITOR_RULES_FILE": str(stand.tmp / "storm-rules.yaml"),
            "MONITOR_SLACK_WEBHOOKS": json.dumps({"alerts": stand.sinks.urls.slack_webhook(self.webhook)}),
            "MONITOR_PAGERDUTY_EVENTS_URL": stand.sinks.urls.http,
            "MONITOR_PAGERDUTY_ROUTING_KEY": self.routing_key,
            "MONITOR_EVALUATE_INTERVAL_SECONDS": "0.5",
            "MONITOR_NOTIFY_INTERVAL_SECONDS": "0.2",
            "MONITOR_NOTIFY_TIMEOUT_SECONDS": "5",
            "MONITOR_BREAKER_FAILURES": "5",
            "MONITOR_BREAKER_COOL_DOWN_SECONDS": "1",
        }

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        job_id, end = str(self.base + i), datetime.now(UTC)
        data = RunFinished.model_validate(
            {
                "tenant_id": TENANT,
                "job_id": job_id,
                "run_id": str(self.base + i),
                "kind": "adhoc",
                "key": f"storm-{i}",
                "job_name": f"ap:{TENANT}:adhoc:storm-{i}",
                "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
                "status": {"state": "TERMINATED"},
                "outcome": "failure",
                "start_time": end - timedelta(seconds=30),
                "end_time": end,
            }
        )
        return job_id, new_event(data, tenant_id=TENANT, source="tests/faults")

    def slack(self, stand: Stand) -> Counter[str]:
        texts = [m.text or "" for m in stand.sinks.backend.slack.messages(self.webhook)]
        return Counter(m.group(1) for t in texts if (m := _JOB.search(t)))

    def pagerduty(self, stand: Stand) -> Counter[str]:
        incidents = stand.sinks.backend.pagerduty.incidents(routing_key=self.routing_key)
        return Counter(str((i.custom_details or {}).get("labels", {}).get("job_id")) for i in incidents)

    async def progress(self, stand: Stand) -> int:
        return min(len(self.slack(stand)), len(self.pagerduty(stand)))

    async def notifications(self, stand: Stand) -> Counter[str]:
        return await stand.pairs(
            f"SELECT receiver || ':' || status, count(*) FROM \"{self.schema(stand)}\".monitor_notifications "  # noqa: S608
            "GROUP BY receiver, status"
        )


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, mcp_sim: Any, alert_sinks: Any, service_logs: list[str]
) -> AsyncIterator[Stand]:
    s = Stand(kafka_bootstrap, pg_url, tmp_path, None, mcp_sim, alert_sinks, service_logs)
    await s.open()
    # Slack's own rate limit off: its 429 under an injected lost answer (502 after "applying" a refused message)
    # is a message not posted that no client can tell from one posted; see the module docstring.
    interval = alert_sinks.backend.slack.min_interval
    alert_sinks.backend.slack.min_interval = 0.0
    try:
        yield s
    finally:
        alert_sinks.backend.slack.min_interval = interval
        await s.close()


async def alert_storm(stand: Stand, report: Report, *, seconds: float, rate: float, name: str) -> None:
    started = time.monotonic()
    target = MonitorAlerts()
    await target.prepare(stand)
    client = FaultClient(stand.sinks.urls.http)
    replica = stand.replica(target)
    keys: list[str] = []
    fired: dict[str, int] = {}
    try:
        await replica.start()
        await asyncio.to_thread(client.clear)
        for path in SINK_PATHS:
            # Each kind at least once whatever the dice say (the first calls), then 20 % at random.
            await asyncio.to_thread(client.add, "429", path, count=1, retry_after=1)
            await asyncio.to_thread(client.add, "lost_response", path, count=1)
            await asyncio.to_thread(client.add, "503", path, count=1)
            for rule in STORM:
                await asyncio.to_thread(client.add, path=path, **rule)
        t0 = time.monotonic()
        burst = False
        while time.monotonic() - t0 < seconds:
            key, event = target.event(stand, len(keys))
            keys.append(key)
            await stand.send(event)
            if not burst and time.monotonic() - t0 >= seconds / 2:  # consecutive failures: the breaker opens
                for path in SINK_PATHS:
                    await asyncio.to_thread(client.add, "503", path, count=4, retry_after=1)
                burst = True
            await asyncio.sleep(1 / rate)
        assert stand.producer is not None
        await stand.producer.flush()
        try:
            await until(
                lambda: _reached(target, stand, len(keys)), timeout=120, what=f"all {len(keys)} alerts in both sinks"
            )
        except AssertionError as exc:
            seen = (len(target.slack(stand)), len(target.pagerduty(stand)), dict(await target.notifications(stand)))
            tail = "\n".join(replica.own[-20:])
            raise AssertionError(f"{exc}; (slack, pagerduty, notifications) = {seen}; monitor said:\n{tail}") from None
        storm_seconds = time.monotonic() - t0
        for rule in await asyncio.to_thread(client.list):
            fired[rule["action"]] = fired.get(rule["action"], 0) + int(rule["fired"])
        await asyncio.to_thread(client.clear)

        async def settled() -> bool:  # a PagerDuty answer lost after the incident landed is re-sent after its backoff
            return not any(k.endswith(":pending") for k in await target.notifications(stand))

        await until(settled, timeout=90, what="every notification settled (none pending a re-send)")
        await asyncio.sleep(3)  # a duplicate (a retry of a notification in flight) would land now
        slack, pagerduty = target.slack(stand), target.pagerduty(stand)
        statuses = await target.notifications(stand)
        async with httpx.AsyncClient(timeout=10) as http:
            metrics = (await http.get(f"http://127.0.0.1:{replica.port}/metrics")).text
    finally:
        await asyncio.to_thread(client.clear)
        await replica.stop()
    lost = {
        sink: sum(1 for k in keys if counts.get(k, 0) == 0)
        for sink, counts in (("slack", slack), ("pagerduty", pagerduty))
    }
    duplicated = {
        sink: sum(n - 1 for n in counts.values() if n > 1)
        for sink, counts in (("slack", slack), ("pagerduty", pagerduty))
    }
    strays = {sink: sorted(set(counts) - set(keys)) for sink, counts in (("slack", slack), ("pagerduty", pagerduty))}
    trips = metric(metrics, "apev_monitor_breaker_trips_total")
    report.record(
        name,
        tried=2 * len(keys) + sum(fired.values()),
        lost=sum(lost.values()),
        duplicated=sum(duplicated.values()),
        seconds=time.monotonic() - started,
        service="monitor",
        alerts=len(keys),
        lost_per_sink=lost,
        duplicated_per_sink=duplicated,
        storm_seconds=round(storm_seconds, 1),
        faults_fired=fired,
        notifications=dict(statuses),
        refused_by_open_breaker=trips,
    )
    assert (lost, duplicated) == ({"slack": 0, "pagerduty": 0}, {"slack": 0, "pagerduty": 0}), (lost, duplicated)
    assert strays == {"slack": [], "pagerduty": []}, strays
    assert fired.get("lost_response", 0) > 0 and fired.get("429", 0) > 0 and fired.get("503", 0) > 0, fired
    assert sum(statuses.values()) == 2 * len(keys)  # one notification per alert and sink, none left pending
    assert set(statuses) <= {"slack:delivered", "slack:unconfirmed", "pagerduty:delivered"}, statuses
    assert trips > 0, "the notifier's breaker never opened"


async def _reached(target: MonitorAlerts, stand: Stand, n: int) -> bool:
    return bool(await target.progress(stand) >= n)


@pytest.mark.faults
@pytest.mark.timeout(300)
async def test_an_alert_storm_reaches_every_sink_once(stand: Stand, report: Report) -> None:
    await alert_storm(stand, report, seconds=8, rate=2.5, name="alert_storm_sinks")


@pytest.mark.faults_long
@pytest.mark.timeout(900)
async def test_a_minute_long_alert_storm_reaches_every_sink_once(stand: Stand, report: Report) -> None:
    await alert_storm(stand, report, seconds=60, rate=1.5, name="alert_storm_long_sinks")
