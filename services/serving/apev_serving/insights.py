"""Insights from runs: on `run.finished` of a successful agent-insights job, one `insight.created` per new row
of the tenant's `gold.agent_insights`, through the outbox, exactly once.

    on_run_finished(event, tx, agent)   read the agent's rows at or after its watermark (as the tenant's reader
                                        principal), skip those already published, publish the others, move the
                                        watermark: all in the handler's final transaction

Exactly once: the inbox drops a redelivered `run.finished`; a row read twice (rows at the watermark are read
again, a second run.finished for the same run, a run that found nothing new) is in `serving_insights` already;
the event id is `ids.insight_id(tenant, agent, row insight id)`, so even a copy would be one event to consumers.
A row that does not fit the contract is recorded `invalid` with the reason, logged, and not retried.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pydantic
import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import InsightCreated, RunFinished, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.ids import insight_id as insight_event_id
from apev_runtime import outbox
from apev_runtime.db.engine import Database
from apev_runtime.errors import TransientError
from apev_runtime.tracing import current_traceparent
from apev_serving import tables
from apev_serving.gateway import Gateway, StatementRequest, StatementTimeout
from apev_serving.settings import Settings
from apev_serving.sql import SqlQueries
from apev_serving.sqlguard import Refusal

log = structlog.get_logger("apev.serving.insights")

SOURCE = "/apev/serving"
COLUMNS = ("insight_id", "agent_id", "run_id", "kind", "target_system", "entity_type", "entity_id", "changes",
           "reason", "confidence", "created_at")  # fmt: skip
PAGE = 1000


def _select(catalog: str, since: bool) -> str:
    where = "agent_id = :agent_id" + (" AND created_at >= CAST(:since AS TIMESTAMP)" if since else "")
    return (
        f"SELECT {', '.join(COLUMNS)} FROM {catalog}.gold.agent_insights WHERE {where} "  # noqa: S608 (names are ours)
        f"ORDER BY created_at, insight_id LIMIT {PAGE}"
    )


def insight_of(tenant_id: str, row: dict[str, Any]) -> InsightCreated:
    """The contract's fields from one row (`changes` is JSON text; the table has no expected version)."""
    return InsightCreated(
        tenant_id=tenant_id,
        insight_id=row["insight_id"],
        agent_id=row["agent_id"],
        target_system=row["target_system"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        changes=json.loads(row["changes"] or "{}"),
        reason=row["reason"] or "",
        confidence=float(row["confidence"]),
        expected_version=None,
    )


class Insights:
    def __init__(self, db: Database, gateway: Gateway, settings: Settings, sql: SqlQueries) -> None:
        self.db, self.gw, self.settings, self.sql = db, gateway, settings, sql

    async def on_run_finished(self, event: CloudEvent[RunFinished], tx: AsyncConnection, agent: Row[Any]) -> int:
        """Publish the agent's new insights; returns how many `insight.created` were queued."""
        run = event.data
        mark = (
            await tx.execute(
                select(tables.insight_watermarks.c.created_at).where(
                    tables.insight_watermarks.c.agent_id == agent.agent_id
                )
            )
        ).scalar_one_or_none()
        await tx.commit()  # nothing is held while the warehouse answers
        rows = await self._read(agent.tenant_id, agent.agent_id, mark)
        if not rows:
            log.info("insights_none_new", agent_id=agent.agent_id, run_id=run.run_id)
            return 0
        ids = [r["insight_id"] for r in rows]
        seen = set(
            (
                await tx.execute(
                    select(tables.insights.c.insight_id).where(
                        tables.insights.c.tenant_id == agent.tenant_id, tables.insights.c.insight_id.in_(ids)
                    )
                )
            ).scalars()
        )
        queued = 0
        now = datetime.now(UTC)
        for row in rows:
            if row["insight_id"] in seen:
                continue
            seen.add(row["insight_id"])
            event_id = insight_event_id(agent.tenant_id, agent.agent_id, row["insight_id"])
            state, error = "published", None
            try:
                data = insight_of(agent.tenant_id, row)
                if data.agent_id != agent.agent_id:
                    raise ValueError(f"agent_id {data.agent_id!r} is not the run's agent {agent.agent_id!r}")
            except (pydantic.ValidationError, ValueError, TypeError) as exc:
                state, error = "invalid", str(exc)[:2000]
                log.warning("insight_row_invalid", agent_id=agent.agent_id, insight_id=row["insight_id"], error=error)
            else:
                out = new_event(
                    data,
                    tenant_id=agent.tenant_id,
                    source=SOURCE,
                    id=event_id,
                    correlation_id=event.correlationid,
                    subject=f"agents/{agent.agent_id}/insights/{row['insight_id']}",
                )
                await outbox.add(tx, out, traceparent=current_traceparent())
                queued += 1
            await tx.execute(
                tables.insights.insert().values(
                    tenant_id=agent.tenant_id, insight_id=row["insight_id"], agent_id=agent.agent_id,
                    event_id=event_id, run_id=row["run_id"], state=state, error=error,
                    row_created_at=row["created_at"], recorded_at=now,
                )
            )  # fmt: skip
        newest = max((str(r["created_at"]) for r in rows if r["created_at"] is not None), default=mark or "")
        await self._upsert_mark(tx, agent, newest, run.run_id, now)
        log.info("insights_published", agent_id=agent.agent_id, run_id=run.run_id, read=len(rows), queued=queued)
        return queued

    async def _read(self, tenant_id: str, agent_id: str, since: str | None) -> list[dict[str, Any]]:
        """Every row of the agent at or after `since`, oldest first, in pages of PAGE rows."""
        catalog = naming.catalog_name(tenant_id)
        out: list[dict[str, Any]] = []
        while True:
            params: list[tuple[str, str | None, str | None]] = [("agent_id", agent_id, "STRING")]
            if since is not None:
                params.append(("since", since, "TIMESTAMP"))
            request = StatementRequest(
                statement=_select(catalog, since is not None),
                warehouse_id=await self.gw.warehouse(self.settings.warehouse_id),
                catalog=catalog,
                schema="gold",
                parameters=params,
                row_limit=PAGE,
                byte_limit=self.settings.sql_max_bytes,
                timeout_seconds=self.settings.sql_timeout_seconds,
            )
            try:
                result = await self.gw.statement(await self.sql.reader_token(tenant_id), request)
            except Refusal as exc:  # no reader principal yet: ingest makes it; retried, then dead-lettered
                raise TransientError(exc.detail) from None
            except StatementTimeout:
                raise TransientError(f"reading {catalog}.gold.agent_insights timed out") from None
            if result.state != "SUCCEEDED":
                raise TransientError(f"reading {catalog}.gold.agent_insights: {result.state} {result.error}")
            names = [c["name"] for c in result.columns]
            page = [dict(zip(names, r, strict=True)) for r in result.rows]
            out += page
            if len(page) < PAGE or page[-1]["created_at"] == since:
                return out
            since = page[-1]["created_at"]

    async def _upsert_mark(
        self, tx: AsyncConnection, agent: Row[Any], created_at: str, run_id: str, now: datetime
    ) -> None:
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        values = {"tenant_id": agent.tenant_id, "created_at": created_at, "run_id": run_id, "updated_at": now}
        stmt = dialect.insert(tables.insight_watermarks).values(agent_id=agent.agent_id, **values)
        await tx.execute(stmt.on_conflict_do_update(index_elements=["agent_id"], set_=values))
