"""What the ingest service decides. Skeleton: it records what arrives; the logic comes with its issue."""

from __future__ import annotations

import structlog

from apev_contracts import DatasourceCreated, RunFinished
from apev_contracts.envelope import CloudEvent

log = structlog.get_logger("apev.ingest")


class IngestService:
    async def on_datasource_created(self, event: CloudEvent[DatasourceCreated]) -> None:
        log.info("datasource_created_received", event_id=event.id, tenant_id=event.tenantid)

    async def on_run_finished(self, event: CloudEvent[RunFinished]) -> None:
        log.info("run_finished_received", event_id=event.id, tenant_id=event.tenantid)
