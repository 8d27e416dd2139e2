"""What the monitor service decides. Skeleton: it records what arrives; the logic comes with its issue."""

from __future__ import annotations

import structlog

from apev_contracts import CostSampled, RunFinished, ServingLatencySampled
from apev_contracts.envelope import CloudEvent

log = structlog.get_logger("apev.monitor")


class MonitorService:
    async def on_run_finished(self, event: CloudEvent[RunFinished]) -> None:
        log.info("run_finished_received", event_id=event.id, tenant_id=event.tenantid)

    async def on_cost_sampled(self, event: CloudEvent[CostSampled]) -> None:
        log.info("cost_sampled_received", event_id=event.id, tenant_id=event.tenantid)

    async def on_serving_latency_sampled(self, event: CloudEvent[ServingLatencySampled]) -> None:
        log.info("serving_latency_sampled_received", event_id=event.id, tenant_id=event.tenantid)
