"""GDPR erasure of one person (an employee id) in one tenant's catalog: their rows in every bronze, silver and
gold table that names them, and the landing files that contain them. The audit record (`ingest_erasures`)
keeps counts per table and the landing paths deleted, never the id; a follow-up query over the same tables and
files must find nothing, or the request is retried.

Which tables to touch: the catalog scan decides (below). The monitor's lineage graph, when the service has one
(`INGEST_MONITOR_URL`), is asked which tables and landing paths lie downstream of the `employees` entity; the
audit record keeps its answer (`lineage_tables`, and which of them the scan found no person column in), never
refusing or deleting on it alone (it is a superset: aggregates without a person column are downstream too), and
says in `lineage_note` when the graph was not available and the scan alone was used.

Which tables name a person: a column `employee_id` (any case: bronze keeps MCP's upper case), or the pair
`entity_type`/`entity_id` with `entity_type = 'employees'` (the agents' insights). Every statement is a
DELETE with the id as a parameter marker, so a repeat deletes nothing more.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import sql
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import ErasureRequested, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_ingest import gateway as gw
from apev_ingest import tables as t
from apev_runtime import outbox
from apev_runtime.errors import PermanentError, TransientError
from apev_runtime.tracing import current_traceparent

if TYPE_CHECKING:
    from apev_ingest.service import IngestService

log = structlog.get_logger("apev.ingest")

SOURCE = "apev/ingest"
LAYERS = ("bronze", "silver", "gold")
PERSON_ENTITY = "employees"  # the MCP entity a person's data comes from
Target = tuple[str, str]  # (table full name, WHERE clause with the :employee_id marker)


def subject_hash(tenant_id: str, employee_id: str) -> str:
    return hashlib.sha256(json.dumps([tenant_id, employee_id]).encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Erasure:
    def __init__(self, service: IngestService) -> None:
        self.s = service

    async def on_erasure_requested(self, event: CloudEvent[ErasureRequested], tx: AsyncConnection) -> None:
        data = event.data
        tenant, person = data.tenant_id, data.employee_id
        row = (await tx.execute(select(t.erasures).where(t.erasures.c.request_id == event.id))).first()
        if row is not None and row.state == "verified":
            return
        if row is None:
            await tx.execute(insert(t.erasures).values(
                request_id=event.id, tenant_id=tenant, subject_hash=subject_hash(tenant, person),
                requested_by=data.requested_by, state="erasing", counts={}, files_deleted=[], created_at=_now(),
            ))  # fmt: skip
        else:
            await self._set(tx, event.id, state="erasing")
        warehouse = (await tx.execute(select(t.steps.c.detail).where(
            t.steps.c.scope == f"tenant:{tenant}", t.steps.c.step == "warehouse"))).first()  # fmt: skip
        counts: dict[str, int] = dict(row.counts) if row is not None else {}
        files: list[str] = list(row.files_deleted) if row is not None else []
        await tx.commit()
        graph = await self.s.lineage.downstream_tables(tenant, PERSON_ENTITY)
        await self._set(tx, event.id, lineage_tables=graph.tables, lineage_note=graph.note[:500])
        await tx.commit()
        if warehouse is not None:  # else the tenant never had a catalog: nothing to erase
            wid = str(warehouse.detail["warehouse_id"])
            cat = naming.catalog_name(tenant)
            targets = await self.s.databricks.call(lambda w: person_tables(w, cat))
            for name, where in targets:
                n = await self.s.databricks.call(lambda w, n=name, c=where: erase(w, wid, n, c, person))  # type: ignore[misc]
                counts[name] = counts.get(name, 0) + n
                await self._set(tx, event.id, counts=counts)
                await tx.commit()
            found = await self.s.databricks.call(lambda w: landing_files_with(w, cat, person))
            for path in found:
                await self.s.databricks.call(lambda w, p=path: w.files.delete(p))  # type: ignore[misc]
            files += [p for p in found if p not in files]
            await self._set(tx, event.id, files_deleted=files)
            await tx.commit()
            remaining = {n: await self.s.databricks.call(lambda w, n=n, c=c: count(w, wid, n, c, person))  # type: ignore[misc]
                         for n, c in targets}  # fmt: skip
            remaining["landing_files"] = len(await self.s.databricks.call(lambda w: landing_files_with(w, cat, person)))
            if any(remaining.values()):
                await self._set(tx, event.id, remaining=remaining)
                await tx.commit()
                raise TransientError(f"erasure {event.id}: the follow-up check still finds {remaining}")
        else:
            remaining = {}
        await self._set(tx, event.id, state="verified", remaining=remaining, verified_at=_now())
        log.info("erasure_verified", request_id=event.id, tenant_id=tenant, tables=len(counts),
                 rows=sum(counts.values()), files=len(files),
                 lineage_tables=None if graph.tables is None else len(graph.tables))  # fmt: skip

    async def request(self, tenant_id: str, employee_id: str, requested_by: str | None) -> str:
        """An erasure asked for over HTTP: the audit record (state `requested`) and the event (which writeback
        consumes too) in one transaction; the request id is the event id."""
        event = new_event(
            ErasureRequested(tenant_id=tenant_id, employee_id=employee_id, requested_by=requested_by),
            tenant_id=tenant_id,
            source=SOURCE,
        )
        async with self.s.db.transaction() as tx:
            await tx.execute(insert(t.erasures).values(
                request_id=event.id, tenant_id=tenant_id, subject_hash=subject_hash(tenant_id, employee_id),
                requested_by=requested_by, state="requested", counts={}, files_deleted=[], created_at=_now(),
            ))  # fmt: skip
            await outbox.add(tx, event, traceparent=current_traceparent())
        self.s.wake_relay()
        return event.id

    async def _set(self, tx: AsyncConnection, request_id: str, **values: Any) -> None:
        await tx.execute(update(t.erasures).where(t.erasures.c.request_id == request_id).values(**values))

    async def record(self, request_id: str, tenant_id: str) -> dict[str, Any] | None:
        async with self.s.db.engine.connect() as conn:
            row = (await conn.execute(select(t.erasures).where(
                t.erasures.c.request_id == request_id, t.erasures.c.tenant_id == tenant_id))).first()  # fmt: skip
        if row is None:
            return None
        return {
            "request_id": row.request_id,
            "tenant_id": row.tenant_id,
            "state": row.state,
            "requested_by": row.requested_by,
            "counts": dict(row.counts),
            "files_deleted": list(row.files_deleted),
            "remaining": dict(row.remaining) if row.remaining is not None else None,
            "lineage_tables": list(row.lineage_tables) if row.lineage_tables is not None else None,
            # named by the lineage graph, no column naming a person (aggregates): nothing to delete there
            "lineage_without_person": sorted(set(row.lineage_tables) - set(row.counts))
            if row.lineage_tables is not None
            else None,
            "lineage_note": row.lineage_note,
            "created_at": row.created_at.isoformat(),
            "verified_at": row.verified_at.isoformat() if row.verified_at else None,
        }


# ---------------------------------------------------------------------- workspace side (worker threads)


def person_tables(w: WorkspaceClient, catalog: str) -> list[Target]:
    targets: list[Target] = []
    for layer in LAYERS:
        try:
            listed = list(w.tables.list(catalog_name=catalog, schema_name=layer))
        except NotFound:
            continue
        for info in listed:
            columns = {str(c.name).lower(): str(c.name) for c in info.columns or []}
            if "employee_id" in columns:
                targets.append((str(info.full_name), f"{columns['employee_id']} = :employee_id"))
            elif "entity_id" in columns and "entity_type" in columns:
                where = f"{columns['entity_type']} = 'employees' AND {columns['entity_id']} = :employee_id"
                targets.append((str(info.full_name), where))
    return sorted(targets)


def _run(w: WorkspaceClient, warehouse_id: str, statement: str, person: str) -> sql.StatementResponse:
    done = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id=warehouse_id,
        wait_timeout="50s",
        parameters=[sql.StatementParameterListItem(name="employee_id", value=person)],
    )
    state = done.status.state if done.status else None
    if state != sql.StatementState.SUCCEEDED:
        error = done.status.error if done.status else None
        raise PermanentError(f"erasure statement failed ({state}): {error}")
    return done


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){2}$")


def _checked(table: str) -> str:
    """Names come from Unity Catalog's listing of the tenant's catalog; the person's id is always a marker."""
    if not _SAFE_NAME.fullmatch(table):
        raise PermanentError(f"table name {table!r} is not a plain three-part name; refusing to build SQL with it")
    return table


def count(w: WorkspaceClient, warehouse_id: str, table: str, where: str, person: str) -> int:
    statement = f"SELECT count(*) FROM {_checked(table)} WHERE {where}"  # noqa: S608 (checked name, marker)
    done = _run(w, warehouse_id, statement, person)
    rows = (done.result.data_array or []) if done.result else []
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def erase(w: WorkspaceClient, warehouse_id: str, table: str, where: str, person: str) -> int:
    """Rows deleted (counted first: a DELETE's own count is not portable across warehouses)."""
    n = count(w, warehouse_id, table, where, person)
    if n:
        _run(w, warehouse_id, f"DELETE FROM {_checked(table)} WHERE {where}", person)  # noqa: S608 (as above)
    return n


def landing_files_with(w: WorkspaceClient, catalog: str, person: str) -> list[str]:
    """Landing files (NDJSON) with a record whose employee id is `person`."""
    found: list[str] = []
    for path in gw.walk_files(w, f"/Volumes/{catalog}/bronze/landing"):
        body = w.files.download(path).contents
        text = body.read().decode("utf-8", "replace") if body is not None else ""
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and any(k.lower() == "employee_id" and v == person for k, v in record.items()):
                found.append(path)
                break
    return sorted(found)
