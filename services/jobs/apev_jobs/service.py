"""What the jobs service decides. Skeleton: it records what arrives; the logic comes with its issue."""

from __future__ import annotations

import structlog

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent

log = structlog.get_logger("apev.jobs")


class JobsService:
    async def on_job_requested(self, event: CloudEvent[JobRequested]) -> None:
        log.info("job_requested_received", event_id=event.id, tenant_id=event.tenantid)
