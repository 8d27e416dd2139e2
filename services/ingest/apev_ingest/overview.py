"""Read-only views for operators (the console): every tenant ingest knows, and the row counts of a tenant's
bronze/silver/gold tables (Unity Catalog's listing, then `count(*)` on the tenant's warehouse)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import sql
from sqlalchemy import func, select

from apev_contracts import naming
from apev_ingest import tables as t

if TYPE_CHECKING:
    from apev_ingest.service import IngestService

LAYERS = ("bronze", "silver", "gold")
MAX_TABLES = 60
_PLAIN = re.compile(r"^[A-Za-z0-9_]+$")


async def tenants(service: IngestService) -> list[dict[str, Any]]:
    """Each tenant with data sources: how many, by state, and when its data was last fresh."""
    d = t.datasources.c
    query = (
        select(d.tenant_id, d.state, func.count(), func.max(d.last_success_at))
        .group_by(d.tenant_id, d.state)
        .order_by(d.tenant_id)
    )
    async with service.db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out: dict[str, dict[str, Any]] = {}
    for tenant, state, count, fresh in rows:
        entry = out.setdefault(
            tenant, {"tenant_id": tenant, "catalog": naming.catalog_name(tenant), "datasources": 0, "states": {}}
        )
        entry["datasources"] += int(count)
        entry["states"][state] = int(count)
        if fresh is not None:
            iso = fresh.isoformat()
            entry["last_success_at"] = max(entry.get("last_success_at") or iso, iso)
    return list(out.values())


async def table_counts(service: IngestService, tenant: str) -> dict[str, Any]:
    """The tenant's tables per layer with their row counts (None when it could not be counted)."""
    catalog = naming.catalog_name(tenant)
    scope = select(t.steps.c.detail).where(t.steps.c.scope == f"tenant:{tenant}", t.steps.c.step == "warehouse")
    async with service.db.engine.connect() as conn:
        row = (await conn.execute(scope)).first()
    if row is None:
        return {"tenant_id": tenant, "catalog": catalog, "provisioned": False, "tables": []}
    warehouse = str(dict(row.detail)["warehouse_id"])
    found = await service.databricks.call(lambda w: _counts(w, catalog, warehouse))
    return {"tenant_id": tenant, "catalog": catalog, "provisioned": True, "tables": found}


def _counts(w: WorkspaceClient, catalog: str, warehouse: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for layer in LAYERS:
        try:
            listed = sorted(str(i.name) for i in w.tables.list(catalog_name=catalog, schema_name=layer))
        except NotFound:
            continue
        for name in listed:
            if len(out) >= MAX_TABLES:
                return out
            rows: int | None = None
            error = None
            if _PLAIN.fullmatch(name) and _PLAIN.fullmatch(catalog):
                done = w.statement_execution.execute_statement(
                    statement=f"SELECT count(*) FROM {catalog}.{layer}.{name}",  # noqa: S608 - plain names from UC
                    warehouse_id=warehouse,
                    wait_timeout="30s",
                )
                if done.status is not None and done.status.state == sql.StatementState.SUCCEEDED and done.result:
                    data = done.result.data_array or []
                    rows = int(data[0][0] or 0) if data else 0
                else:
                    error = str(done.status.error.message if done.status and done.status.error else "no result")
            else:
                error = "not a plain name: not counted"
            out.append({"layer": layer, "name": name, "rows": rows, "error": error})
    return out
