"""What the writeback service decides. Skeleton: it records what arrives; the logic comes with its issue."""

from __future__ import annotations

import structlog

from apev_contracts import InsightCreated
from apev_contracts.envelope import CloudEvent

log = structlog.get_logger("apev.writeback")


class WritebackService:
    async def on_insight_created(self, event: CloudEvent[InsightCreated]) -> None:
        log.info("insight_created_received", event_id=event.id, tenant_id=event.tenantid)
