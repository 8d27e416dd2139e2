"""What the monitor decides. Handlers only record what events say (runs and their owners, latency windows,
cost samples); the leader's cycle samples billing, snapshots DLQ offsets, evaluates the rules and queues
notifications; the notifier delivers them. Time comes from an injectable clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import CostSampled, RunFinished, ServingLatencySampled, TenantOffboarded
from apev_contracts.envelope import CloudEvent
from apev_contracts.events.serving import LATENCY_BUCKET_BOUNDS_MS
from apev_monitor import tables
from apev_monitor.alerting import Alerting, EvalResult
from apev_monitor.billing import BillingSampler, SampleResult, store_sample
from apev_monitor.clock import Clock
from apev_monitor.conditions import aware
from apev_monitor.dlq import DlqOffsets
from apev_monitor.metrics import Metrics
from apev_monitor.notifiers import Notifier
from apev_monitor.rules import RuleSet
from apev_monitor.store import upsert
from apev_monitor.tenants import Tenants
from apev_runtime.db.engine import Database

log = structlog.get_logger("apev.monitor")

DLQ_SNAPSHOT_RETENTION = timedelta(days=2)


class MonitorService:
    def __init__(
        self,
        db: Database,
        rules: RuleSet,
        tenants: Tenants,
        clock: Clock,
        metrics: Metrics,
        notifier: Notifier,
        *,
        sampler: BillingSampler | None,
        dlq: DlqOffsets | None,
        notification_ttl: float,
    ) -> None:
        self.db = db
        self.rules = rules
        self.tenants = tenants
        self.clock = clock
        self.metrics = metrics
        self.notifier = notifier
        self.sampler = sampler
        self.dlq = dlq
        self.alerting = Alerting(rules, tenants, notification_ttl=notification_ttl)
        self._cycle = asyncio.Lock()
        self._sampling = asyncio.Lock()  # the leader's loop and `POST /cost/samples` never sample at once

    # ------------------------------------------------------------------ events
    async def on_run_finished(self, event: CloudEvent[RunFinished], tx: AsyncConnection) -> None:
        run = event.data
        log.info("run_finished_received", event_id=event.id, tenant_id=event.tenantid, run_id=run.run_id)
        c = tables.runs.c
        seen = (
            await tx.execute(select(c.run_id).where(c.run_id == run.run_id, c.repair_attempt == run.repair_attempt))
        ).first()
        agent = run.tags.get("ap_agent_id")
        datasource = run.tags.get("ap_datasource_id") or (run.key if run.kind == "ingest" else None)
        values = {
            "tenant_id": run.tenant_id,
            "job_id": run.job_id,
            "job_name": run.job_name,
            "kind": run.kind,
            "datasource_id": datasource,
            "agent_id": agent,
            "outcome": run.outcome,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "run_page_url": run.run_page_url,
        }
        await upsert(tx, tables.runs, {"run_id": run.run_id, "repair_attempt": run.repair_attempt}, values)
        owner = {"tenant_id": run.tenant_id, "kind": run.kind, "agent_id": agent, "updated_at": event.time}
        await upsert(tx, tables.jobs, {"job_id": run.job_id}, owner)
        if seen is None:
            self.metrics.runs.labels(run.kind, run.outcome).inc()
            self.metrics.job_duration.labels(run.kind).observe((run.end_time - run.start_time).total_seconds())
            retried = run.repair_attempt > 0 or any(t.attempt_number > 0 for t in run.tasks)
            if retried:
                self.metrics.retries.labels(run.kind).inc()

    async def on_serving_latency_sampled(self, event: CloudEvent[ServingLatencySampled], tx: AsyncConnection) -> None:
        s = event.data
        log.info("serving_latency_sampled_received", event_id=event.id, tenant_id=event.tenantid)
        exists = (
            await tx.execute(select(tables.latency.c.event_id).where(tables.latency.c.event_id == event.id))
        ).first()
        if exists is not None:
            return
        await tx.execute(
            tables.latency.insert().values(
                event_id=event.id,
                tenant_id=s.tenant_id,
                endpoint_name=s.endpoint_name,
                replica_id=s.replica_id,
                window_start=s.window_start,
                window_end=s.window_end,
                count=s.count,
                sum_ms=s.sum_ms,
                buckets=s.buckets,
            )
        )
        e = tables.endpoints.c
        known = (await tx.execute(select(e.tenant_id).where(e.endpoint_name == s.endpoint_name))).first()
        if known is None:
            await tx.execute(
                tables.endpoints.insert().values(
                    endpoint_name=s.endpoint_name, tenant_id=s.tenant_id, agent_id=None, updated_at=event.time
                )
            )
        histogram = self.metrics.serving_latency.labels(s.endpoint_name)
        for bound, count in zip(LATENCY_BUCKET_BOUNDS_MS, s.buckets, strict=True):
            for _ in range(min(count, 1000)):  # bounded: a window's buckets at their upper bound
                histogram.observe(bound if bound != float("inf") else 20000.0)

    async def on_cost_sampled(self, event: CloudEvent[CostSampled], tx: AsyncConnection) -> None:
        log.info("cost_sampled_received", event_id=event.id, tenant_id=event.tenantid)
        await store_sample(tx, event.data, event.id, self.clock.now())

    # ------------------------------------------------------------------ the leader's cycle
    async def sample_costs(self, now: datetime | None = None) -> SampleResult | None:
        if self.sampler is None:
            return None
        async with self._sampling:
            return await self.sampler.sample(now or self.clock.now())

    async def on_tenant_offboarded(self, event: CloudEvent[TenantOffboarded], tx: AsyncConnection) -> None:
        """A final sample now, so the leaving tenant's last usage is published (as a new revision of its days)
        rather than waiting for the next cycle."""
        if self.sampler is None:
            log.warning("final_cost_sample_skipped", tenant_id=event.data.tenant_id, reason="no workspace configured")
            return
        result = await self.sampler.sample_in(tx, self.clock.now())
        mine = [x for x in result.published if x.tenant_id == event.data.tenant_id]
        log.info("final_cost_sample", tenant_id=event.data.tenant_id, published=len(mine))

    async def snapshot_dlq(self, now: datetime | None = None) -> dict[str, int]:
        if self.dlq is None:
            return {}
        now = now or self.clock.now()
        offsets = await self.dlq.end_offsets()
        async with self.db.transaction() as tx:
            for topic, end in offsets.items():
                await upsert(tx, tables.dlq_offsets, {"topic": topic, "at": now}, {"end_offset": end})
            await tx.execute(tables.dlq_offsets.delete().where(tables.dlq_offsets.c.at < now - DLQ_SNAPSHOT_RETENTION))
        return offsets

    async def evaluate(self, now: datetime | None = None) -> EvalResult:
        now = now or self.clock.now()
        async with self._cycle, self.db.transaction() as tx:
            result = await self.alerting.evaluate(tx, now)
            counts = (
                await tx.execute(
                    select(tables.alerts.c.rule, tables.alerts.c.state, func.count()).group_by(
                        tables.alerts.c.rule, tables.alerts.c.state
                    )
                )
            ).all()
            await self._freshness_gauges(tx, now)
        for rule in self.rules.rules:
            for state in ("pending", "firing", "resolved", "inactive"):
                self.metrics.alerts.labels(rule.name, state).set(0)
        for rule_name, state, n in counts:
            self.metrics.alerts.labels(rule_name, state).set(n)
        if result.transitions:
            log.info("alerts_changed", transitions=len(result.transitions), notifications=result.notifications)
        return result

    async def deliver(self, now: datetime | None = None) -> int:
        return await self.notifier.deliver(now or self.clock.now())

    async def tick(self, now: datetime | None = None) -> EvalResult:
        """One full cycle at `now` (tests call this after moving the clock)."""
        now = now or self.clock.now()
        await self.snapshot_dlq(now)
        result = await self.evaluate(now)
        await self.deliver(now)
        return result

    async def _freshness_gauges(self, tx: AsyncConnection, now: datetime) -> None:
        c = tables.runs.c
        rows = await tx.execute(
            select(c.tenant_id, c.datasource_id, func.max(c.end_time))
            .where(c.kind == "ingest", c.outcome == "success", c.datasource_id.is_not(None))
            .group_by(c.tenant_id, c.datasource_id)
        )
        for tenant, ds, last in rows:
            self.metrics.freshness.labels(tenant, ds).set((now - aware(last)).total_seconds())

    async def background(self, stop: asyncio.Event, interval: float, step: Any, name: str) -> None:
        """Run `step()` every `interval` seconds until `stop` (the caller checks leadership)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            try:
                await step()
            except Exception:
                log.warning(f"{name}_failed", exc_info=True)
