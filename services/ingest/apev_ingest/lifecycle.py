"""The tenant lifecycle as ingest owns it: a data source updated (its job reset, nothing else) or removed (job
deleted through the jobs service, MCP integration deregistered, landing and task files deleted, tables
dropped on request), and a tenant offboarded (gold exported first to another catalog's volume when asked, MCP
integrations, webhook and keys gone, catalog dropped with `force`, secret scope, warehouse grants, principals
and task files removed; its jobs are the jobs service's, which consumes the same event).

Each removal is a list of steps recorded in `ingest_steps` under a scope named by the event
(`rm:<t>:<ds>:<event id>`, `off:<t>:<event id>`), committed before the next outside call, and each outside
call treats "already gone" as done, so a redelivery resumes where it stopped and a replay does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import DatasourceRemoved, DatasourceUpdated, JobAction, JobRequested, TenantOffboarded, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_ingest import export
from apev_ingest import gateway as gw
from apev_ingest import tables as t
from apev_pipeline import ENTITIES, IngestJobInput, build_ingest_job
from apev_pipeline.render import landing_folder
from apev_runtime import outbox
from apev_runtime.errors import PermanentError, TransientError
from apev_runtime.events import follow_up
from apev_runtime.mcp import INTEGRATION_ENTITIES
from apev_runtime.tracing import current_traceparent

if TYPE_CHECKING:
    from apev_ingest.service import IngestService

log = structlog.get_logger("apev.ingest")

SOURCE = "apev/ingest"
JOB_EXISTS = ("job_requested", "first_run_finished")


class Lifecycle:
    def __init__(self, service: IngestService) -> None:
        self.s = service

    async def _row(self, tx: AsyncConnection, tenant: str, ds: str) -> Any:
        key = and_(t.datasources.c.tenant_id == tenant, t.datasources.c.datasource_id == ds)
        return (await tx.execute(select(t.datasources).where(key))).first()

    # ------------------------------------------------------------------ datasource.updated

    async def on_datasource_updated(self, event: CloudEvent[DatasourceUpdated], tx: AsyncConnection) -> None:
        """One `job.requested` with the new spec (no action): the jobs service resets the job, once."""
        data = event.data
        tenant, ds = data.tenant_id, data.datasource_id
        row = await self._row(tx, tenant, ds)
        if row is None:
            raise PermanentError(f"datasource_id: {ds!r} is not a data source of tenant {tenant!r}")
        if row.state not in JOB_EXISTS:
            raise TransientError(f"data source {ds!r} is still being provisioned ({row.state})")
        entities = list(data.entities) if data.entities is not None else list(row.entities)
        unknown = [e for e in entities if e not in INTEGRATION_ENTITIES.get(row.system, ())]
        if unknown:
            raise PermanentError(f"entities: {unknown} are not {row.system} entity types")
        warehouse = (await self.s._step_detail(tx, f"tenant:{tenant}", "warehouse"))["warehouse_id"]
        built = build_ingest_job(
            IngestJobInput(
                tenant_id=tenant,
                datasource_id=ds,
                system=row.system,
                entities=entities,
                schedule=data.schedule,
                freshness_minutes=self.s.tenants.get(tenant).freshness_for(ds),
                warehouse_id=warehouse,
                root=self.s.settings.pipeline_root,
                page_size=self.s.settings.page_size,
            )
        )
        await tx.commit()
        await self.s._upload_changed(tx, built.files)  # new entities need their SQL; unchanged files: no call
        key = and_(t.datasources.c.tenant_id == tenant, t.datasources.c.datasource_id == ds)
        await tx.execute(update(t.datasources).where(key).values(entities=entities))
        out = follow_up(event, built.request(run=False), source=SOURCE, parts=(ds,))
        await outbox.add(tx, out, traceparent=current_traceparent())
        self.s.wake_relay()
        log.info("datasource_updated", tenant_id=tenant, datasource_id=ds, request_id=out.id)

    # ------------------------------------------------------------------ datasource.removed

    async def on_datasource_removed(self, event: CloudEvent[DatasourceRemoved], tx: AsyncConnection) -> None:
        data = event.data
        tenant, ds = data.tenant_id, data.datasource_id
        row = await self._row(tx, tenant, ds)
        if row is None:
            log.info("datasource_already_removed", tenant_id=tenant, datasource_id=ds)
            return
        scope = f"rm:{tenant}:{ds}:{event.id}"
        cat = naming.catalog_name(tenant)
        await self._request_delete(tx, event, scope, tenant, ds)
        if row.integration_id and row.mcp_tenant_code:
            integration, code = str(row.integration_id), str(row.mcp_tenant_code)
            await self.s._step(tx, scope, "mcp_deregistered", lambda: self._deregister(code, [integration]))
        folder = landing_folder(cat, ds, "").rstrip("/")
        await self.s._dbx_step(tx, scope, "landing_deleted", lambda w: {"files": gw.delete_folder(w, folder)})
        await self._delete_task_files(tx, scope, f"{self.s.settings.pipeline_root}/tenants/{tenant}/{ds}")
        if data.drop_tables:
            names = [f"{cat}.{layer}.{e}" for e in row.entities for layer in ("bronze", "silver") if e in ENTITIES]
            await self.s._dbx_step(tx, scope, "tables_dropped", lambda w: {
                "dropped": [n for n in names if gw.drop_table(w, n)]})  # fmt: skip
        await tx.execute(delete(t.pending_runs).where(
            t.pending_runs.c.tenant_id == tenant, t.pending_runs.c.datasource_id == ds))  # fmt: skip
        await tx.execute(delete(t.steps).where(t.steps.c.scope == f"ds:{tenant}:{ds}"))  # a re-created one starts over
        await tx.execute(delete(t.datasources).where(
            t.datasources.c.tenant_id == tenant, t.datasources.c.datasource_id == ds))  # fmt: skip
        await self.s._record_step(tx, scope, "removed", {"drop_tables": data.drop_tables}, 0.0)
        log.info("datasource_removed", tenant_id=tenant, datasource_id=ds, drop_tables=data.drop_tables)

    async def _delete_task_files(self, tx: AsyncConnection, scope: str, folder: str) -> None:
        """The task files rendered for a tenant or a data source (workspace folder), and what this service
        remembers of their upload (so a data source made again uploads them again)."""
        await self.s._dbx_step(tx, scope, "task_files_deleted", lambda w: {
            "deleted": gw.delete_workspace_folder(w, folder)})  # fmt: skip
        await tx.execute(delete(t.files).where(t.files.c.path.like(f"{folder}/%")))

    async def _request_delete(
        self, tx: AsyncConnection, event: CloudEvent[Any], scope: str, tenant: str, ds: str
    ) -> None:
        if await self.s._step_done(tx, scope, "job_delete_requested"):
            return
        payload = JobRequested(
            tenant_id=tenant, kind="ingest", key=ds, action=JobAction(type="delete"), datasource_id=ds
        )
        out = follow_up(event, payload, source=SOURCE, parts=(ds, "delete"))
        await outbox.add(tx, out, traceparent=current_traceparent())
        await self.s._record_step(tx, scope, "job_delete_requested", {"request_id": out.id}, 0.0)
        await tx.commit()
        self.s.wake_relay()

    async def _deregister(self, code: str, integrations: list[str]) -> dict[str, Any]:
        async with self.s.mcp.client() as mcp:
            gone = [i for i in integrations if await mcp.deregister_integration(i, headers={"X-Tenant-ID": code})]
        return {"deregistered": gone, "already_gone": len(integrations) - len(gone)}

    # ------------------------------------------------------------------ tenant.offboarded

    async def on_tenant_offboarded(self, event: CloudEvent[TenantOffboarded], tx: AsyncConnection) -> None:
        data = event.data
        tenant = data.tenant_id
        tscope, scope = f"tenant:{tenant}", f"off:{tenant}:{event.id}"
        cat, secrets = naming.catalog_name(tenant), naming.secret_scope(tenant)
        warehouse = (await tx.execute(select(t.steps.c.detail).where(
            t.steps.c.scope == tscope, t.steps.c.step == "warehouse"))).first()  # fmt: skip
        if data.export_volume is not None:  # first: a refused or failed export leaves everything in place
            settled = await self.s._step_done(tx, scope, "exported") or await self.s._step_done(
                tx, scope, "catalog_dropped"
            )
            await tx.commit()
            volume = data.export_volume
            if not settled and warehouse is not None:  # no warehouse step: the catalog never existed
                await self.s.databricks.call(lambda w: export.check_destination(w, cat, volume))
                wid = str(warehouse.detail["warehouse_id"])
                await self.s._dbx_step(tx, scope, "exported", lambda w: export.export_tables(w, cat, wid, volume))
        rows = list(await tx.execute(select(t.datasources).where(t.datasources.c.tenant_id == tenant)))
        code_step = (await tx.execute(select(t.steps.c.detail).where(
            t.steps.c.scope == tscope, t.steps.c.step == "mcp_tenant"))).first()  # fmt: skip
        hook_step = (await tx.execute(select(t.steps.c.detail).where(
            t.steps.c.scope == tscope, t.steps.c.step == "mcp_webhook"))).first()  # fmt: skip
        await tx.commit()
        if code_step is not None:
            code = str(code_step.detail["code"])
            integrations = [str(r.integration_id) for r in rows if r.integration_id]
            await self.s._step(tx, scope, "mcp_deregistered", lambda: self._deregister(code, integrations))
            if hook_step is not None and hook_step.detail.get("id"):
                hook = str(hook_step.detail["id"])
                await self.s._step(tx, scope, "mcp_webhook_removed", lambda: self._unsubscribe(code, hook))
            await self.s._step(tx, scope, "mcp_keys_revoked", lambda: self._revoke_keys(code))
        await self.s._dbx_step(tx, scope, "catalog_dropped", lambda w: {"dropped": gw.drop_catalog(w, cat)})
        await self.s._dbx_step(tx, scope, "secret_scope_deleted", lambda w: {
            "deleted": gw.delete_secret_scope(w, secrets)})  # fmt: skip
        if warehouse is not None:
            wid = str(warehouse.detail["warehouse_id"])
            await self.s._dbx_step(tx, scope, "warehouse_grants_revoked", lambda w: _revoke_warehouse(w, tenant, wid))
        await self.s._dbx_step(tx, scope, "principals_removed", lambda w: _remove_principals(w, tenant))
        await self._delete_task_files(tx, scope, f"{self.s.settings.pipeline_root}/tenants/{tenant}")
        await tx.execute(delete(t.pending_runs).where(t.pending_runs.c.tenant_id == tenant))
        await tx.execute(delete(t.datasources).where(t.datasources.c.tenant_id == tenant))
        await tx.execute(delete(t.steps).where(or_(
            t.steps.c.scope == tscope, t.steps.c.scope.like(f"ds:{tenant}:%"))))  # fmt: skip
        await self.s._record_step(tx, scope, "offboarded", {"datasources": len(rows)}, 0.0)
        log.info("tenant_offboarded", tenant_id=tenant, datasources=len(rows))

    async def request_offboarding(self, tenant: str, reason: str | None, export_volume: str | None = None) -> str:
        """Offboarding asked for over HTTP: `tenant.offboarded` through the outbox (jobs, monitor and this
        service act on it); its progress is `offboarding(request_id)`. A bad export volume is refused here,
        before anything is sent (PermanentError)."""
        if export_volume is not None:
            cat = naming.catalog_name(tenant)
            await self.s.databricks.call(lambda w: export.check_destination(w, cat, export_volume))
        payload = TenantOffboarded(tenant_id=tenant, reason=reason, export_volume=export_volume)
        event = new_event(payload, tenant_id=tenant, source=SOURCE)
        async with self.s.db.transaction() as tx:
            await outbox.add(tx, event, traceparent=current_traceparent())
        self.s.wake_relay()
        return event.id

    async def offboarding(self, tenant: str, request_id: str) -> dict[str, Any]:
        async with self.s.db.engine.connect() as conn:
            steps = list(await conn.execute(select(t.steps).where(
                t.steps.c.scope == f"off:{tenant}:{request_id}").order_by(t.steps.c.done_at)))  # fmt: skip
        names = [s.step for s in steps]
        return {
            "request_id": request_id,
            "tenant_id": tenant,
            "state": "done" if "offboarded" in names else "in_progress" if names else "requested",
            "steps": [{"step": s.step, "done_at": s.done_at.isoformat(), "detail": s.detail} for s in steps],
        }

    async def _unsubscribe(self, code: str, webhook_id: str) -> dict[str, Any]:
        async with self.s.mcp.client(code) as mcp:
            return {"removed": await mcp.unregister_webhook(webhook_id)}

    async def _revoke_keys(self, code: str) -> dict[str, Any]:
        """Every tenant-scoped key MCP holds for the tenant (the pipeline's and any rotated one)."""
        async with self.s.mcp.client() as mcp:
            keys = await mcp.list_api_keys(code)
            revoked = [k.key_id for k in keys if await mcp.revoke_api_key(code, k.key_id)]
        return {"revoked": revoked}


def _revoke_warehouse(w: Any, tenant: str, warehouse_id: str) -> dict[str, Any]:
    """CAN_USE of the tenant's groups and service principals (by application id) on the warehouse."""
    groups = list(naming.role_groups(tenant).values())
    sps = [ids[1] for p in (naming.pipeline_principal(tenant), naming.reader_principal(tenant))
           if (ids := gw.service_principal_ids(w, p)) is not None]  # fmt: skip
    return {"revoked": gw.revoke_warehouse_access(w, warehouse_id, groups=groups, service_principals=sps)}


def _remove_principals(w: Any, tenant: str) -> dict[str, Any]:
    groups = [g for g in naming.role_groups(tenant).values() if gw.delete_group(w, g)]
    sps = [
        p
        for p in (naming.pipeline_principal(tenant), naming.reader_principal(tenant))
        if gw.delete_service_principal(w, p)
    ]
    return {"groups": groups, "service_principals": sps}
