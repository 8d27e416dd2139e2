"""Where the OpenLineage events go (`JOBS_LINEAGE_TRANSPORT`).

    kafka (default)  `lineage.emitted` through the service's outbox, in the transaction that records the run's
                     start or end: at-least-once, one copy per (OpenLineage run id, eventType) (the event id)
    http             POST to an OpenLineage backend (Marquez, ...): `JOBS_LINEAGE_URL` (+ `/api/v1/lineage`)
    file             one JSON line per event appended to `JOBS_LINEAGE_FILE`
    none             nothing

http and file use openlineage-python's own transports after the event is built, best effort (a failure is logged,
not retried; a crash between the database commit and the send loses that event): use kafka where it must not be
lost, and let a consumer of `lineage.emitted` forward it.
"""

from __future__ import annotations

import asyncio

import structlog
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_jobs.lineage import RunRef, cloud_event
from apev_runtime import outbox
from apev_runtime.tracing import current_traceparent

log = structlog.get_logger("apev.jobs.lineage")


class LineageTransport:
    def __init__(self, kind: str, *, url: str | None = None, file: str | None = None) -> None:
        self.kind = kind
        self._client: OpenLineageClient | None = None
        if kind == "http":
            if not url:
                raise ValueError("JOBS_LINEAGE_TRANSPORT=http needs JOBS_LINEAGE_URL (the OpenLineage backend)")
            self._client = OpenLineageClient(config={"transport": {"type": "http", "url": url}})
        elif kind == "file":
            if not file:
                raise ValueError("JOBS_LINEAGE_TRANSPORT=file needs JOBS_LINEAGE_FILE (a path to append to)")
            self._client = OpenLineageClient(
                config={"transport": {"type": "file", "log_file_path": file, "append": True}}
            )
        elif kind not in ("kafka", "none"):
            raise ValueError(f"JOBS_LINEAGE_TRANSPORT must be kafka, http, file or none, not {kind!r}")

    async def queue(self, tx: AsyncConnection, ref: RunRef, events: list[RunEvent]) -> None:
        """kafka: into the outbox, in the caller's transaction (same event id twice: kept once)."""
        if self.kind == "kafka":
            for ol in events:
                await outbox.add(tx, cloud_event(ref, ol), traceparent=current_traceparent())

    async def send(self, events: list[RunEvent]) -> None:
        """http, file: after the caller's transaction committed (no database lock held during the call)."""
        if self._client is not None and events:
            await asyncio.to_thread(self._send, events)

    def _send(self, events: list[RunEvent]) -> None:
        assert self._client is not None
        for ol in events:
            try:
                self._client.emit(ol)
            except Exception:
                log.warning("lineage_send_failed", transport=self.kind, exc_info=True)
