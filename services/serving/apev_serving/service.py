"""What the serving service decides. Skeleton: it records what arrives; the logic comes with its issue."""

from __future__ import annotations

import structlog

from apev_contracts import EndpointScaleRequested, RunFinished
from apev_contracts.envelope import CloudEvent

log = structlog.get_logger("apev.serving")


class ServingService:
    async def on_run_finished(self, event: CloudEvent[RunFinished]) -> None:
        log.info("run_finished_received", event_id=event.id, tenant_id=event.tenantid)

    async def on_endpoint_scale_requested(self, event: CloudEvent[EndpointScaleRequested]) -> None:
        log.info("endpoint_scale_requested_received", event_id=event.id, tenant_id=event.tenantid)
