"""One monitor service (in-process, under uvicorn), its own Slack/PagerDuty/SMTP stand-ins and a reader of
what it publishes, per test module, on the session's real Kafka and PostgreSQL. Time is a `ManualClock`:
tests move it and call `service.tick()`; the background loops are set far apart so they never interfere."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from apev_contracts import RunFinished, ServingLatencySampled
from apev_contracts.envelope import CloudEvent, decode, encode, new_event
from apev_contracts.events.runs import RunState, RunStatus
from apev_contracts.topics import all_topics
from apev_monitor.app import create_app
from apev_monitor.clock import ManualClock
from apev_monitor.service import MonitorService
from apev_monitor.settings import Settings
from apev_runtime.auth import mint_token
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, no_databricks_env, serve_app
from apev_sinks.testing import RunningSinks, running_sinks
from apev_stack.kafka import free_port

JWT_SECRET = "monitor-tests-secret-0123456789abcdef012345"
BILLING_WEBHOOK = "T0APEV0000/B0BILLING0/apev-local-billing"
READ_TOPICS = ("cost.sampled", "endpoint.scale.requested")


@pytest.fixture(scope="module")
def sinks() -> Iterator[RunningSinks]:
    # Slack's one-message-per-second limit is on the real clock; these tests inject 429s themselves.
    with running_sinks(slack_min_interval=0.0) as s:
        yield s


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    settings: Settings
    service: MonitorService
    clock: ManualClock
    sinks: RunningSinks
    base_url: str
    published: dict[str, list[CloudEvent[Any]]] = field(default_factory=lambda: {t: [] for t in READ_TOPICS})
    producer: AIOKafkaProducer | None = None

    def token(self, tenant: str, roles: tuple[str, ...] = ("engineer",)) -> str:
        return mint_token(JWT_SECRET, tenant_id=tenant, roles=list(roles))

    def http(self, tenant: str | None, roles: tuple[str, ...] = ("engineer",)) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(tenant, roles)}"} if tenant else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    async def send(self, *events: CloudEvent[Any]) -> None:
        assert self.producer is not None
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        await self.producer.flush()

    async def send_raw(self, topic: str, value: bytes) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(self.prefix + topic, value, key=b"junk")

    async def consumed(self, *events: CloudEvent[Any], timeout: float = 30) -> None:
        """Wait until the monitor's inbox holds every event (its handler committed)."""
        from sqlalchemy import select

        from apev_runtime.db.tables import inbox

        ids = {e.id for e in events}
        deadline = time.monotonic() + timeout
        while True:
            async with self.service.db.engine.connect() as conn:
                seen = set((await conn.execute(select(inbox.c.event_id).where(inbox.c.event_id.in_(ids)))).scalars())
            if ids <= seen:
                return
            assert time.monotonic() < deadline, f"not consumed within {timeout}s: {ids - seen}"
            await asyncio.sleep(0.05)

    async def step(self, seconds: float) -> Any:
        """Move the clock and run one full cycle (DLQ snapshot, evaluation, delivery)."""
        self.clock.advance(seconds)
        return await self.service.tick()

    def slack(self, needle: str, webhook: str | None = None) -> list[Any]:
        return [m for m in self.sinks.backend.slack.messages(webhook) if needle in (m.text or "")]

    def incidents(self, needle: str) -> list[Any]:
        return [i for i in self.sinks.backend.pagerduty.incidents() if needle in i.summary]

    def mails(self, needle: str) -> list[Any]:
        return [m for m in self.sinks.backend.mailbox.mails() if needle in m.subject]

    async def wait_published(
        self, topic: str, pred: Callable[[CloudEvent[Any]], bool], n: int = 1, timeout: float = 30
    ) -> list[CloudEvent[Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.published[topic] if pred(e)]
            if len(got) >= n:
                return got
            assert time.monotonic() < deadline, f"{topic}: {len(got)} of {n} within {timeout}s"
            await asyncio.sleep(0.05)


async def _read(stack: Stack, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        *(stack.prefix + t for t in READ_TOPICS), bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                topic = tp.topic[len(stack.prefix) :]
                for r in records:
                    stack.published[topic].append(decode(r.value, list(r.headers), topic=topic))
    finally:
        await consumer.stop()


def monitor_settings(bootstrap: str, pg_url: str, prefix: str, sinks: RunningSinks, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg_url,
        "database_schema": prefix.rstrip(".") + "_monitor",
        "http_port": free_port(),
        "APEV_JWT_SECRET": JWT_SECRET,
        "log_format": "console",
        "log_level": "WARNING",
        "evaluate_interval_seconds": 3600,
        "notify_interval_seconds": 3600,
        "sample_interval_seconds": 3600,
        "slack_webhooks": {"alerts": sinks.slack_url, "billing": sinks.urls.slack_webhook(BILLING_WEBHOOK)},
        "pagerduty_events_url": sinks.urls.http,
        "pagerduty_routing_key": sinks.routing_key,
        "smtp_host": sinks.urls.smtp_host,
        "smtp_port": sinks.urls.smtp_port,
        "email_to": ["finance@example.com"],
        "delivery": DeliverySettings(retry_attempts=3, retry_timeout_seconds=10, retry_initial_wait_seconds=0.05),
        **over,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def serve_monitor(settings: Settings, clock: ManualClock) -> AsyncIterator[MonitorService]:
    app = create_app(settings, clock=clock)
    async with serve_app(app, settings.http_port):
        yield app.state.service


@contextlib.asynccontextmanager
async def monitor_stack(
    bootstrap: str, pg_url: str, sinks: RunningSinks, start: datetime | None = None, **over: Any
) -> AsyncIterator[Stack]:
    prefix = f"m{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, [prefix + t for t in all_topics()], partitions=2)
    clock = ManualClock(start or datetime.now(UTC))
    settings = monitor_settings(bootstrap, pg_url, prefix, sinks, **over)
    async with serve_monitor(settings, clock) as service:
        s = Stack(bootstrap, prefix, settings, service, clock, sinks, f"http://127.0.0.1:{settings.http_port}")
        s.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await s.producer.start()
        stop = asyncio.Event()
        reader = asyncio.create_task(_read(s, stop))
        try:
            yield s
        finally:
            stop.set()
            await reader
            await s.producer.stop()


def run_finished(
    tenant: str,
    job_id: str,
    run_id: str,
    outcome: str,
    end: datetime,
    *,
    kind: str = "adhoc",
    key: str = "k1",
    **extra: Any,
) -> CloudEvent[RunFinished]:
    result = {"success": "SUCCESS", "failure": "FAILED", "timeout": "TIMEDOUT"}[outcome]
    data = RunFinished(
        tenant_id=tenant,
        job_id=job_id,
        run_id=run_id,
        kind=kind,  # type: ignore[arg-type]
        key=key,
        job_name=f"ap:{tenant}:{kind}:{key}",
        state=RunState(life_cycle_state="TERMINATED", result_state=result),
        status=RunStatus(state="TERMINATED"),
        outcome=outcome,  # type: ignore[arg-type]
        start_time=end - timedelta(seconds=42),
        end_time=end,
        run_page_url=f"http://127.0.0.1:8787/?o=1#job/{job_id}/run/{run_id}",
        **extra,
    )
    return new_event(data, tenant_id=tenant, source="tests/monitor")


def latency(
    tenant: str, endpoint: str, replica: str, end: datetime, counts: dict[float, int]
) -> CloudEvent[ServingLatencySampled]:
    from apev_contracts import LATENCY_BUCKET_BOUNDS_MS

    buckets = [counts.get(b, 0) for b in LATENCY_BUCKET_BOUNDS_MS]
    total = sum(buckets)
    data = ServingLatencySampled(
        tenant_id=tenant,
        endpoint_name=endpoint,
        replica_id=replica,
        window_start=end - timedelta(seconds=10),
        window_end=end,
        count=total,
        sum_ms=float(sum(min(b, 20000) * n for b, n in counts.items())),
        buckets=buckets,
    )
    return new_event(data, tenant_id=tenant, source="tests/monitor")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def here() -> Path:
    return Path(__file__).parent


@pytest.fixture(autouse=True, scope="module")
def _no_databricks_env() -> Iterator[None]:
    with no_databricks_env():
        yield
