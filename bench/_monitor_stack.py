"""The monitor service (in-process, real clock), its Slack/PagerDuty/SMTP stand-ins, and event builders, for
benchmarks 5 (tenants), 7 (monitor) and 9 (memory)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import Env
from _jobs_stack import JWT_SECRET
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from apev_contracts import RunFinished
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.events.runs import RunState, RunStatus
from apev_contracts.topics import all_topics
from apev_monitor.app import create_app
from apev_monitor.service import MonitorService
from apev_monitor.settings import Settings
from apev_runtime.db.tables import inbox
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, serve_app
from apev_sinks.testing import RunningSinks, running_sinks
from apev_stack.kafka import free_port
from apev_stack.paths import repo_root


def rules_without_group_wait(folder: Path) -> Path:
    """The shipped rules with `group_wait: 0s`, so the alert latency is the pipeline's, not the policy's."""
    text = (repo_root() / "services/monitor/apev_monitor/rules.yaml").read_text()
    path = folder / "rules-bench.yaml"
    path.write_text(text.replace("group_wait: 30s", "group_wait: 0s", 1))
    return path


def run_finished(tenant: str, job_id: str, run_id: str, outcome: str, end: datetime) -> CloudEvent[RunFinished]:
    result = {"success": "SUCCESS", "failure": "FAILED"}[outcome]
    data = RunFinished(
        tenant_id=tenant,
        job_id=job_id,
        run_id=run_id,
        kind="adhoc",
        key=f"k{job_id}",  # type: ignore[arg-type]
        job_name=f"ap:{tenant}:adhoc:k{job_id}",
        state=RunState(life_cycle_state="TERMINATED", result_state=result),
        status=RunStatus(state="TERMINATED"),
        outcome=outcome,
        start_time=end - timedelta(seconds=42),
        end_time=end,  # type: ignore[arg-type]
        run_page_url=f"http://127.0.0.1:8787/?o=1#job/{job_id}/run/{run_id}",
    )
    return new_event(data, tenant_id=tenant, source="bench/monitor")


@dataclass
class MonitorStack:
    env: Env
    prefix: str
    settings: Settings
    service: MonitorService
    sinks: RunningSinks
    producer: AIOKafkaProducer

    async def send(self, *events: CloudEvent[Any], flush: bool = True) -> None:
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        if flush:
            await self.producer.flush()

    async def consumed_count(self) -> int:
        async with self.service.db.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())

    async def processed_at(self, ids: list[str]) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        async with self.service.db.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(inbox.c.event_id, inbox.c.processed_at).where(inbox.c.event_id.in_(ids[i : i + 500]))
                out.update({r.event_id: r.processed_at for r in await conn.execute(q)})
        return out

    async def wait_consumed(self, total: int, timeout: float = 600) -> float:
        """Seconds until the inbox holds `total` rows (polled every 20 ms)."""
        t0 = time.monotonic()
        while await self.consumed_count() < total:
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"monitor consumed {await self.consumed_count()} of {total} in {timeout}s")
            await asyncio.sleep(0.02)
        return time.monotonic() - t0


@contextlib.asynccontextmanager
async def monitor_stack(env: Env, folder: Path, **over: Any) -> AsyncIterator[MonitorStack]:
    pg = await env.ensure_database()
    prefix = env.prefix("bm")
    await create_topics(env.bootstrap, [prefix + t for t in all_topics()], partitions=3)
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a temporary folder, once)
    tenants = folder / "tenants.yaml"
    tenants.write_text("defaults:\n  freshness_minutes: 1440\ntenants: {}\n")
    with running_sinks(slack_min_interval=0.0) as sinks:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": env.bootstrap,
            "kafka_topic_prefix": prefix,
            "database_url": pg,
            "database_schema": prefix.rstrip(".") + "_monitor",
            "http_port": free_port(),
            "APEV_JWT_SECRET": JWT_SECRET,
            "log_format": "console",
            "log_level": "ERROR",
            "tenants_file": tenants,
            "rules_file": rules_without_group_wait(folder),
            "evaluate_interval_seconds": 3600,
            "notify_interval_seconds": 3600,
            "sample_interval_seconds": 36000,
            "slack_webhooks": {"alerts": sinks.slack_url, "billing": sinks.slack_url},
            "pagerduty_events_url": sinks.urls.http,
            "pagerduty_routing_key": sinks.routing_key,
            "smtp_host": sinks.urls.smtp_host,
            "smtp_port": sinks.urls.smtp_port,
            "email_to": ["finance@example.com"],
            "delivery": DeliverySettings(retry_attempts=3, retry_timeout_seconds=10, retry_initial_wait_seconds=0.05),
            **over,
        }
        settings = Settings(**values)
        app = create_app(settings)
        async with serve_app(app, settings.http_port):
            producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, enable_idempotence=True, linger_ms=5)
            await producer.start()
            try:
                yield MonitorStack(env, prefix, settings, app.state.service, sinks, producer)
            finally:
                await producer.stop()


def now() -> datetime:
    return datetime.now(UTC)
