"""The tenants' document indexes: what serving decides about Vector Search (no FastStream here).

    on_run_finished(event, tx)   a successful ingest run that fetched `documents`: refresh the tenant's index
    refresh(tenant)              the Vector Search endpoint, the Delta Sync index `naming.knowledge_index(t)` over
                                 `gold.knowledge_chunks` (created when missing; its first sync starts by itself,
                                 else a sync is triggered), a bounded wait for the sync, then SELECT on the index
                                 for every agent of the tenant whose registration lists `gold.knowledge_chunks`

Idempotent: get-or-create, a sync of an index that already holds the rows changes nothing, grants are PATCHes.
The index lives in the tenant's catalog, so only principals granted on that catalog can query it; agents query it
with their own token (`tasks/demo_agent.py`), never with this service's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import RunFinished, naming
from apev_contracts.envelope import CloudEvent
from apev_runtime.db.engine import Database
from apev_serving import tables
from apev_serving.gateway import DeltaIndexSpec, Gateway, IndexState
from apev_serving.settings import Settings

log = structlog.get_logger("apev.serving.retrieval")

DOCUMENTS_ENTITY = "documents"
INDEX_COLUMNS = ("chunk_id", "document_id", "chunk_index", "title", "doc_type", "practice_location", "chunk_text",
                 "updated_at")  # fmt: skip


def fetched_documents(run: RunFinished) -> bool:
    entities = str((run.job_parameters or {}).get("entities") or "")
    return DOCUMENTS_ENTITY in [e.strip() for e in entities.split(",")]


class Retrieval:
    def __init__(self, db: Database, gateway: Gateway, settings: Settings) -> None:
        self.db = db
        self.gw = gateway
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}

    async def on_run_finished(self, event: CloudEvent[RunFinished], tx: AsyncConnection) -> None:
        run = event.data
        if run.kind != "ingest" or run.outcome != "success" or not fetched_documents(run):
            return
        await tx.commit()  # nothing is held while Databricks answers
        await self.refresh(run.tenant_id)

    async def refresh(self, tenant_id: str) -> IndexState | None:
        """Make the tenant's index current with its chunks table; None when the tenant has no chunks yet."""
        source = naming.knowledge_chunks_table(tenant_id)
        if not await self.gw.table_exists(source):
            log.info("index_skipped_no_chunks", tenant_id=tenant_id, table=source)
            return None
        name = naming.knowledge_index(tenant_id)
        async with self._locks.setdefault(name, asyncio.Lock()):
            await self.gw.ensure_vector_endpoint(self.settings.vector_search_endpoint)
            spec = DeltaIndexSpec(
                name=name,
                endpoint=self.settings.vector_search_endpoint,
                source_table=source,
                primary_key="chunk_id",
                text_column="chunk_text",
                embedding_endpoint=self.settings.embedding_endpoint,
                columns=INDEX_COLUMNS,
            )
            created = await self.gw.create_delta_index(spec)
            if not created:
                await self.gw.sync_index(name)
            state = await self._wait(name)
            granted = await self.grant_agents(tenant_id, name)
        log.info("index_refreshed", tenant_id=tenant_id, index=name, created=created, rows=state.rows,
                 settled=state.settled, agents=granted)  # fmt: skip
        return state

    async def _wait(self, name: str) -> IndexState:
        deadline = time.monotonic() + self.settings.index_sync_timeout_seconds
        while True:
            state = await self.gw.vector_index(name)
            if state is not None and (state.settled or "FAILED" in state.message):
                if not state.settled:
                    log.warning("index_sync_failed", index=name, message=state.message)
                return state
            if time.monotonic() >= deadline:
                log.warning("index_sync_still_running", index=name, message=state.message if state else None)
                return state or IndexState(name, False, "not found", 0)
            await asyncio.sleep(self.settings.index_poll_seconds)

    async def grant_agents(self, tenant_id: str, index: str) -> list[str]:
        """SELECT on the index for each provisioned agent of the tenant that lists the chunks table."""
        granted = []
        for agent in await self._document_agents(tenant_id):
            await self.gw.grant("table", index, agent["principal_id"], ["SELECT"])
            granted.append(agent["agent_id"])
        return granted

    async def _document_agents(self, tenant_id: str) -> list[dict[str, Any]]:
        query = select(tables.agents.c.agent_id, tables.agents.c.principal_id, tables.agents.c.tables).where(
            tables.agents.c.tenant_id == tenant_id
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {"agent_id": r.agent_id, "principal_id": r.principal_id}
            for r in rows
            if r.principal_id and naming.KNOWLEDGE_CHUNKS_TABLE in (r.tables or [])
        ]
