"""What the ingest service decides: tenant layout and grants, MCP registration and credentials, the ingestion
job, and runs on fresh MCP data. No FastStream here: handlers and the HTTP side call in.

Provisioning is a list of steps, each recorded in `ingest_steps` once done (tenant-wide steps under
`tenant:<t>`, the data source's own under `ds:<t>:<id>`). A recorded step is never called again, so a replayed
or repeated `datasource.created` makes no call at all; a step that failed half-way is retried on redelivery
with get-or-create calls, so nothing is created twice. Each step is committed before the next outside call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from databricks.sdk import WorkspaceClient
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import DatasourceCreated, JobAction, JobRequested, RunFinished, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.ids import caused_event_id
from apev_ingest import gateway as gw
from apev_ingest import tables as t
from apev_ingest.lineage_client import MonitorLineage
from apev_ingest.metrics import Metrics
from apev_ingest.settings import Settings
from apev_ingest.tenants import Tenants
from apev_pipeline import IngestJob, IngestJobInput, build_ingest_job
from apev_pipeline.files import TaskFile
from apev_runtime import outbox
from apev_runtime.databricks import DatabricksClients
from apev_runtime.db.engine import Database
from apev_runtime.errors import PermanentError
from apev_runtime.events import follow_up
from apev_runtime.http import HostBreakers
from apev_runtime.mcp import INTEGRATION_ENTITIES, IntegrationRegistration, McpClient, WebhookEvent
from apev_runtime.tracing import current_traceparent

log = structlog.get_logger("apev.ingest")

SOURCE = "apev/ingest"
STATES = ("accepted", "provisioned", "registered", "job_requested", "first_run_finished")
JOB_EXISTS = ("job_requested", "first_run_finished")
SCHEMAS = {"bronze": "Raw data as MCP sent it", "silver": "Typed, de-duplicated", "gold": "Business aggregates"}
WEBHOOK_EVENTS = ["data.changed", "sync.completed"]


class InvalidDatasource(PermanentError):
    """A `datasource.created` this service cannot act on; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Mcp:
    """How the service reaches MCP: its own URL and admin key, and the URL the workspace reaches. Every client
    shares `breakers`: once the MCP host failed `failure_threshold` calls in a row, calls are refused
    (`McpCircuitOpenError`) and the delivery kit pauses consumption until the cool-down, instead of spending an
    event's retries (and dead-lettering it) against a server that is down."""

    base_url: str
    admin_key: str
    workspace_url: str
    breakers: HostBreakers = field(default_factory=HostBreakers)

    def client(self, tenant: str | None = None) -> McpClient:
        return McpClient(self.base_url, self.admin_key, tenant=tenant, breakers=self.breakers)


class IngestService:
    def __init__(
        self,
        db: Database,
        databricks: DatabricksClients,
        mcp: Mcp,
        settings: Settings,
        tenants: Tenants,
        metrics: Metrics,
        *,
        wake_relay: Callable[[], None] = lambda: None,
        lineage: MonitorLineage | None = None,
    ) -> None:
        self.db, self.databricks, self.mcp, self.settings = db, databricks, mcp, settings
        self.lineage = lineage or MonitorLineage(None, None)  # the monitor's lineage graph (optional)
        self.tenants, self.metrics, self.wake_relay = tenants, metrics, wake_relay
        from apev_ingest.erasure import Erasure  # these call back into this service's steps
        from apev_ingest.lifecycle import Lifecycle
        from apev_ingest.rotation import Rotation

        self.lifecycle = Lifecycle(self)
        self.erasure = Erasure(self)
        self.rotation = Rotation(self)

    # ------------------------------------------------------------------ datasource.created

    async def on_datasource_created(self, event: CloudEvent[DatasourceCreated], tx: AsyncConnection) -> None:
        data = event.data
        tenant = naming.validate_tenant_id(data.tenant_id)
        if tenant != event.tenantid:
            raise InvalidDatasource("tenant_id", f"{tenant!r} differs from the event's tenantid {event.tenantid!r}")
        known = INTEGRATION_ENTITIES.get(data.system)
        if known is None:
            raise InvalidDatasource("system", f"{data.system!r} is not an MCP integration type; expected one of "
                                    f"{sorted(INTEGRATION_ENTITIES)}")  # fmt: skip
        unknown = [e for e in data.entities if e not in known]
        if unknown:
            raise InvalidDatasource("entities", f"{unknown} are not {data.system} entity types ({list(known)})")
        await self._record_datasource(tx, event)
        await tx.commit()
        tscope, dscope = f"tenant:{tenant}", f"ds:{tenant}:{data.datasource_id}"
        await self._provision_tenant(tx, tenant, data)
        await self._set_state(tx, tenant, data.datasource_id, "provisioned")
        code = (await self._step_detail(tx, tscope, "mcp_tenant"))["code"]

        async def register() -> dict[str, Any]:
            async with self.mcp.client() as mcp:
                reg = await mcp.register_integration(
                    IntegrationRegistration(integration_type=data.system, datasource_id=data.datasource_id),
                    headers={"X-Tenant-ID": code},
                )
            return {"integration_id": reg.integration_id, "status": reg.status}

        reg = await self._step(tx, dscope, "mcp_registration", register)
        await self._set_state(
            tx, tenant, data.datasource_id, "registered", integration_id=reg["integration_id"], mcp_tenant_code=code
        )
        warehouse = (await self._step_detail(tx, tscope, "warehouse"))["warehouse_id"]
        built = self._build(tenant, data, warehouse)
        await self._step(tx, dscope, "files", lambda: self._upload_changed(tx, built.files))
        await self._request_first_run(tx, event, built)

    def _build(self, tenant: str, data: DatasourceCreated, warehouse_id: str) -> IngestJob:
        try:
            return build_ingest_job(
                IngestJobInput(
                    tenant_id=tenant,
                    datasource_id=data.datasource_id,
                    system=data.system,
                    entities=list(data.entities),
                    schedule=data.schedule,
                    freshness_minutes=self.tenants.get(tenant).freshness_for(data.datasource_id),
                    warehouse_id=warehouse_id,
                    root=self.settings.pipeline_root,
                    page_size=self.settings.page_size,
                )
            )
        except ValueError as exc:
            raise InvalidDatasource("datasource_id", str(exc)) from exc

    async def _record_datasource(self, tx: AsyncConnection, event: CloudEvent[DatasourceCreated]) -> None:
        data = event.data
        key = and_(t.datasources.c.tenant_id == data.tenant_id, t.datasources.c.datasource_id == data.datasource_id)
        row = (await tx.execute(select(t.datasources.c.system).where(key))).first()
        if row is not None:
            if row.system != data.system:
                raise InvalidDatasource("system", f"data source {data.datasource_id!r} exists with system "
                                        f"{row.system!r}, not {data.system!r}")  # fmt: skip
            return
        now = _now()
        await tx.execute(
            insert(t.datasources).values(
                tenant_id=data.tenant_id,
                datasource_id=data.datasource_id,
                name=data.name,
                system=data.system,
                entities=list(data.entities),
                state="accepted",
                job_name=naming.job_name(data.tenant_id, "ingest", data.datasource_id),
                event_id=event.id,
                created_at=now,
                updated_at=now,
            )
        )
        self.metrics.transitions.labels("accepted").inc()

    async def _provision_tenant(self, tx: AsyncConnection, tenant: str, data: DatasourceCreated) -> None:
        scope = f"tenant:{tenant}"
        cat = naming.catalog_name(tenant)
        await self._dbx_step(tx, scope, "catalog", lambda w: {
            "created": gw.ensure_catalog(w, cat, f"AgentProvision tenant {tenant}")})  # fmt: skip
        await self._dbx_step(tx, scope, "schemas", lambda w: {
            s: gw.ensure_schema(w, cat, s, c) for s, c in SCHEMAS.items()})  # fmt: skip
        await self._dbx_step(tx, scope, "volume", lambda w: {"created": gw.ensure_volume(w, cat, "bronze", "landing")})
        principals = await self._dbx_step(tx, scope, "principals", lambda w: _principals(w, tenant))
        await self._dbx_step(tx, scope, "grants", lambda w: _grants(w, tenant, principals))
        await self._dbx_step(tx, scope, "warehouse", lambda w: _warehouse(w, self.settings.warehouse_id, principals))
        wanted = self.tenants.get(tenant).mcp_tenant_code or data.mcp_tenant_code
        code = (await self._step(tx, scope, "mcp_tenant", lambda: self._match_code(wanted)))["code"]
        await self._step(tx, scope, "secret_scope", lambda: self._store_mcp_key(tenant, code, principals["pipeline"]))
        await self._dbx_step(tx, scope, "sp_secret", lambda w: _store_sp_secret(w, tenant))
        secret = self.settings.mcp_webhook_secret
        if self.settings.public_url and secret is not None:

            async def subscribe() -> dict[str, Any]:
                url = self.settings.public_url.rstrip("/") + "/webhooks/mcp"  # type: ignore[union-attr]
                async with self.mcp.client(code) as mcp:
                    hook = await mcp.register_webhook(url, secret.get_secret_value(), WEBHOOK_EVENTS)
                return {"url": url, "id": str(hook.get("id") or hook.get("webhook_id") or "")}

            await self._step(tx, scope, "mcp_webhook", subscribe)

    async def _match_code(self, wanted: str) -> dict[str, Any]:
        """The MCP tenant code as MCP spells it (exact, else case-insensitive)."""
        async with self.mcp.client() as mcp:
            codes = [x.tenant_code for x in await mcp.list_tenants(limit=1000)]
        match = wanted if wanted in codes else next((c for c in codes if c.lower() == wanted.lower()), None)
        if match is None:
            raise InvalidDatasource("mcp_tenant_code", f"{wanted!r} is not a tenant on the MCP server")
        return {"code": match}

    async def _store_mcp_key(self, tenant: str, code: str, pipeline: str) -> dict[str, Any]:
        """A tenant-scoped key in the tenant's scope (minted only when the scope has none), with the MCP URL
        the workspace reaches; READ for the pipeline principal only."""
        scope = naming.secret_scope(tenant)
        created = await self.databricks.call(lambda w: gw.ensure_secret_scope(w, scope))
        keys = await self.databricks.call(lambda w: gw.secret_keys(w, scope))
        minted = "mcp_api_key" not in keys
        if minted:
            async with self.mcp.client() as mcp:
                key = await mcp.create_api_key(code)
            await self.databricks.call(lambda w: gw.put_secret(w, scope, "mcp_api_key", key.api_key))
        url = self.mcp.workspace_url
        await self.databricks.call(lambda w: gw.put_secret(w, scope, "mcp_base_url", url))
        await self.databricks.call(lambda w: gw.set_read_acl(w, scope, pipeline))
        return {"scope": scope, "created": created, "key_minted": minted}

    async def _upload_changed(self, tx: AsyncConnection, files: Sequence[TaskFile]) -> dict[str, Any]:
        known = {
            r.path: r.sha256
            for r in await tx.execute(select(t.files).where(t.files.c.path.in_([f.path for f in files])))
        }
        await tx.commit()
        changed = [f for f in files if known.get(f.path) != f.sha256]
        for f in changed:
            await self.databricks.call(lambda w, f=f: gw.upload_file(w, f.path, f.content))  # type: ignore[misc]
            await tx.execute(delete(t.files).where(t.files.c.path == f.path))
            await tx.execute(insert(t.files).values(path=f.path, sha256=f.sha256, uploaded_at=_now()))
            await tx.commit()
        return {"uploaded": [f.path for f in changed], "unchanged": len(files) - len(changed)}

    async def _request_first_run(
        self, tx: AsyncConnection, event: CloudEvent[DatasourceCreated], built: IngestJob
    ) -> None:
        data = event.data
        scope = f"ds:{data.tenant_id}:{data.datasource_id}"
        if await self._step_done(tx, scope, "job_requested"):
            return
        out = follow_up(event, built.request(run=True), source=SOURCE, parts=(data.datasource_id,))
        await outbox.add(tx, out, traceparent=current_traceparent())
        await self._put_pending(tx, data.tenant_id, data.datasource_id, out.id, "first_sync")
        await self._record_step(tx, scope, "job_requested", {"request_id": out.id, "job_name": built.name}, 0.0)
        await self._set_state(tx, data.tenant_id, data.datasource_id, "job_requested", commit=False)
        self.wake_relay()

    # ------------------------------------------------------------------ steps

    async def _step_done(self, tx: AsyncConnection, scope: str, step: str) -> bool:
        query = select(t.steps.c.step).where(t.steps.c.scope == scope, t.steps.c.step == step)
        return (await tx.execute(query)).first() is not None

    async def _step_detail(self, tx: AsyncConnection, scope: str, step: str) -> dict[str, Any]:
        query = select(t.steps.c.detail).where(t.steps.c.scope == scope, t.steps.c.step == step)
        row = (await tx.execute(query)).first()
        if row is None:
            raise RuntimeError(f"step {step} of {scope} is not done")
        return dict(row.detail)

    async def _record_step(
        self, tx: AsyncConnection, scope: str, step: str, detail: dict[str, Any], seconds: float
    ) -> None:
        values = {"scope": scope, "step": step, "detail": detail, "duration_seconds": seconds, "done_at": _now()}
        await tx.execute(insert(t.steps).values(**values))

    async def _step(
        self, tx: AsyncConnection, scope: str, step: str, fn: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run `fn` unless `step` of `scope` is recorded; record it and commit."""
        query = select(t.steps.c.detail).where(t.steps.c.scope == scope, t.steps.c.step == step)
        row = (await tx.execute(query)).first()
        await tx.commit()  # no transaction stays open across the outside call
        if row is not None:
            return dict(row.detail)
        started = time.monotonic()
        detail = await fn()
        seconds = time.monotonic() - started
        await self._record_step(tx, scope, step, detail, seconds)
        await tx.commit()
        self.metrics.step_seconds.labels(step).observe(seconds)
        log.info("provisioning_step_done", scope=scope, step=step, seconds=round(seconds, 3))
        return detail

    async def _dbx_step(
        self, tx: AsyncConnection, scope: str, step: str, fn: Callable[[WorkspaceClient], dict[str, Any]]
    ) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            return await self.databricks.call(fn)

        return await self._step(tx, scope, step, call)

    async def _set_state(
        self, tx: AsyncConnection, tenant: str, ds: str, state: str, *, commit: bool = True, **values: Any
    ) -> None:
        key = and_(t.datasources.c.tenant_id == tenant, t.datasources.c.datasource_id == ds)
        row = (await tx.execute(select(t.datasources.c.state).where(key))).first()
        if row is not None and STATES.index(state) > STATES.index(row.state):
            await tx.execute(update(t.datasources).where(key).values(state=state, updated_at=_now(), **values))
            self.metrics.transitions.labels(state).inc()
        elif values:
            await tx.execute(update(t.datasources).where(key).values(**values))
        if commit:
            await tx.commit()

    # ------------------------------------------------------------------ pending runs

    async def _pending(self, tx: AsyncConnection, tenant: str, ds: str) -> Any:
        key = and_(t.pending_runs.c.tenant_id == tenant, t.pending_runs.c.datasource_id == ds)
        row = (await tx.execute(select(t.pending_runs).where(key).with_for_update())).first()
        if row is None:
            return None
        max_age = timedelta(seconds=self.settings.pending_run_max_age_seconds)
        if _now() - _aware(row.requested_at) > max_age:
            await tx.execute(delete(t.pending_runs).where(key))  # its run.finished never came
            return None
        return row

    async def _put_pending(self, tx: AsyncConnection, tenant: str, ds: str, request_id: str, cause: str) -> None:
        key = and_(t.pending_runs.c.tenant_id == tenant, t.pending_runs.c.datasource_id == ds)
        await tx.execute(delete(t.pending_runs).where(key))
        await tx.execute(
            insert(t.pending_runs).values(
                tenant_id=tenant, datasource_id=ds, request_id=request_id, requested_at=_now(), cause=cause
            )
        )

    async def _request_run(
        self, tx: AsyncConnection, tenant: str, ds: str, *, cause_id: str, cause: str, correlation_id: str
    ) -> str:
        payload = JobRequested(tenant_id=tenant, kind="ingest", key=ds, action=JobAction(type="run"), datasource_id=ds)
        event = new_event(
            payload,
            tenant_id=tenant,
            source=SOURCE,
            correlation_id=correlation_id,
            id=caused_event_id("job.requested", cause_id, tenant, ds),
        )
        await outbox.add(tx, event, traceparent=current_traceparent())
        await self._put_pending(tx, tenant, ds, event.id, cause)
        return event.id

    # ------------------------------------------------------------------ run.finished

    async def on_run_finished(self, event: CloudEvent[RunFinished], tx: AsyncConnection) -> None:
        run = event.data
        if run.kind != "ingest":
            return
        ds = run.tags.get("ap_datasource_id") or run.key
        key = and_(t.datasources.c.tenant_id == run.tenant_id, t.datasources.c.datasource_id == ds)
        row = (await tx.execute(select(t.datasources).where(key))).first()
        if row is None:
            return
        last_end = _aware(row.last_run_end) if row.last_run_end else None
        values: dict[str, Any] = {}
        if last_end is None or run.end_time >= last_end:
            values |= {
                "last_run_id": run.run_id,
                "last_run_outcome": run.outcome,
                "last_run_page_url": run.run_page_url,
                "last_run_end": run.end_time,
            }
        if run.outcome == "success":
            last_ok = _aware(row.last_success_at) if row.last_success_at else None
            if last_ok is None or run.start_time > last_ok:
                values["last_success_at"] = run.start_time  # gold holds what MCP had when the fetch began
        if values:
            await tx.execute(update(t.datasources).where(key).values(updated_at=_now(), **values))
        await self._set_state(tx, run.tenant_id, ds, "first_run_finished", commit=False)
        pending = await self._pending(tx, run.tenant_id, ds)
        if pending is None:
            return
        covered = pending.request_id == run.request_id or run.start_time >= _aware(pending.requested_at)
        if not covered:
            return
        pkey = and_(t.pending_runs.c.tenant_id == run.tenant_id, t.pending_runs.c.datasource_id == ds)
        await tx.execute(delete(t.pending_runs).where(pkey))
        if pending.dirty:
            # a change came while this run was pending: it may have been fetched already, or not
            await self._request_run(
                tx, run.tenant_id, ds, cause_id=event.id, cause="changed_while_pending",
                correlation_id=event.correlationid,
            )  # fmt: skip
            self.wake_relay()

    # ------------------------------------------------------------------ MCP webhooks

    async def on_mcp_webhook(self, hook: WebhookEvent) -> str:
        """A verified MCP webhook; returns its outcome (requested, coalesced, recorded, duplicate, ignored)."""
        async with self.db.transaction() as tx:
            try:
                async with tx.begin_nested():
                    await tx.execute(
                        insert(t.webhooks).values(
                            delivery_id=hook.id,
                            type=hook.type,
                            tenant_code=hook.tenant_code,
                            outcome="received",
                            body=hook.model_dump(mode="json"),
                            received_at=_now(),
                        )
                    )
            except IntegrityError:
                return "duplicate"  # a genuine retry of a delivery already handled
            targets = await self._targets(tx, hook)
            if hook.type == "sync.completed":
                outcome = "recorded"
                for row in targets:
                    key = and_(
                        t.datasources.c.tenant_id == row.tenant_id, t.datasources.c.datasource_id == row.datasource_id
                    )
                    await tx.execute(update(t.datasources).where(key).values(last_sync_completed_at=hook.created_at))
            elif hook.type == "data.changed":
                outcome = await self._changed(tx, hook, targets)
            else:
                outcome = "ignored"
            await tx.execute(update(t.webhooks).where(t.webhooks.c.delivery_id == hook.id).values(outcome=outcome))
        if outcome == "requested":
            self.wake_relay()
        return outcome

    async def _targets(self, tx: AsyncConnection, hook: WebhookEvent) -> list[Any]:
        """The data sources a webhook is about: the MCP tenant's, narrowed by entity or integration type."""
        rows = list(await tx.execute(select(t.datasources).where(t.datasources.c.mcp_tenant_code == hook.tenant_code)))
        changed = hook.data.get("changed")
        if isinstance(changed, dict):
            entities = {e for e, n in changed.items() if n}
            return [r for r in rows if entities & set(r.entities)]
        if isinstance(hook.data.get("entity_type"), str):
            return [r for r in rows if hook.data["entity_type"] in r.entities]
        if isinstance(hook.data.get("integration_type"), str):
            return [r for r in rows if r.system == hook.data["integration_type"]]
        return rows

    async def _changed(self, tx: AsyncConnection, hook: WebhookEvent, targets: list[Any]) -> str:
        requested = coalesced = 0
        for row in targets:
            if row.state not in JOB_EXISTS:
                continue  # the first sync is still on its way and will fetch everything
            pending = await self._pending(tx, row.tenant_id, row.datasource_id)
            if pending is not None:
                key = and_(
                    t.pending_runs.c.tenant_id == row.tenant_id, t.pending_runs.c.datasource_id == row.datasource_id
                )
                await tx.execute(update(t.pending_runs).where(key).values(dirty=True))
                coalesced += 1
                continue
            await self._request_run(
                tx, row.tenant_id, row.datasource_id, cause_id=f"mcp:{hook.id}", cause="data_changed",
                correlation_id=hook.id,
            )  # fmt: skip
            requested += 1
        return "requested" if requested else "coalesced" if coalesced else "no_datasource"

    # ------------------------------------------------------------------ reads (HTTP)

    async def datasource(self, tenant: str, ds: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            key = and_(t.datasources.c.tenant_id == tenant, t.datasources.c.datasource_id == ds)
            row = (await conn.execute(select(t.datasources).where(key))).first()
            if row is None:
                return None
            scopes = [f"tenant:{tenant}", f"ds:{tenant}:{ds}"]
            steps = list(
                await conn.execute(select(t.steps).where(t.steps.c.scope.in_(scopes)).order_by(t.steps.c.done_at))
            )
            pending = (await conn.execute(select(t.pending_runs).where(
                t.pending_runs.c.tenant_id == tenant, t.pending_runs.c.datasource_id == ds))).first()  # fmt: skip
        return self._describe(row, steps, pending)

    async def datasources(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        async with self.db.engine.connect() as conn:
            query = select(t.datasources).where(t.datasources.c.tenant_id == tenant)
            if cursor:
                query = query.where(t.datasources.c.datasource_id > cursor)
            rows = list(await conn.execute(query.order_by(t.datasources.c.datasource_id).limit(limit + 1)))
        page = [self._describe(r, [], None) for r in rows[:limit]]
        return page, (rows[limit - 1].datasource_id if len(rows) > limit else None)

    def _describe(self, row: Any, steps: list[Any], pending: Any) -> dict[str, Any]:
        budget = self.tenants.get(row.tenant_id).freshness_for(row.datasource_id)
        fresh_at = _aware(row.last_success_at) if row.last_success_at else None
        age = (_now() - fresh_at).total_seconds() if fresh_at else None
        return {
            "tenant_id": row.tenant_id,
            "datasource_id": row.datasource_id,
            "name": row.name,
            "system": row.system,
            "entities": list(row.entities),
            "state": row.state,
            "catalog": naming.catalog_name(row.tenant_id),
            "job_name": row.job_name,
            "mcp_integration_id": row.integration_id,
            "steps": [
                {
                    "step": s.step,
                    "scope": s.scope.split(":")[0],
                    "done_at": s.done_at.isoformat(),
                    "seconds": round(s.duration_seconds, 3),
                }
                for s in steps
            ],
            "freshness": {
                "as_of": fresh_at.isoformat() if fresh_at else None,
                "age_seconds": round(age, 1) if age is not None else None,
                "budget_minutes": budget,
                "within_budget": age is not None and age <= budget * 60,
            },
            "last_run": None
            if row.last_run_id is None
            else {
                "run_id": row.last_run_id,
                "outcome": row.last_run_outcome,
                "end_time": _aware(row.last_run_end).isoformat() if row.last_run_end else None,
                "run_page_url": row.last_run_page_url,
            },
            "pending_run": None
            if pending is None
            else {
                "request_id": pending.request_id,
                "requested_at": _aware(pending.requested_at).isoformat(),
                "cause": pending.cause,
            },
            "last_sync_completed_at": row.last_sync_completed_at.isoformat() if row.last_sync_completed_at else None,
        }

    async def refresh_gauges(self) -> None:
        async with self.db.engine.connect() as conn:
            by_state = select(t.datasources.c.state, func.count()).group_by(t.datasources.c.state)
            counts: dict[str, int] = {str(r[0]): int(r[1]) for r in await conn.execute(by_state)}
            fresh = list(await conn.execute(select(t.datasources.c.tenant_id, t.datasources.c.datasource_id,
                                                   t.datasources.c.last_success_at)))  # fmt: skip
        for state in STATES:
            self.metrics.by_state.labels(state).set(counts.get(state, 0))
        now = _now()
        for r in fresh:
            if r.last_success_at is not None:
                age = (now - _aware(r.last_success_at)).total_seconds()
                self.metrics.freshness.labels(r.tenant_id, r.datasource_id).set(age)


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- the tenant's principals and grants


def _principals(w: WorkspaceClient, tenant: str) -> dict[str, Any]:
    groups = naming.role_groups(tenant)  # admin, engineer, analyst -> tenant_<t>_admins, ...
    for name in groups.values():
        gw.ensure_group(w, name)
    return {
        "groups": groups,
        "pipeline": gw.ensure_service_principal(w, naming.pipeline_principal(tenant)),
        "reader": gw.ensure_service_principal(w, naming.reader_principal(tenant)),
    }


def grants_for(tenant: str, principals: dict[str, Any]) -> list[gw.Grant]:
    """Admins: all; engineers: write bronze (no read: raw PII), read and write silver, read gold; analysts and
    the reader (serving's SQL for analysts): read gold; the pipeline: what deploy/databricks/README.md lists."""
    cat = naming.catalog_name(tenant)
    g = principals["groups"]
    pipeline, reader = principals["pipeline"], principals["reader"]
    return [
        ("catalog", cat, g["admin"], ["ALL_PRIVILEGES", "MANAGE"]),
        (
            "catalog",
            cat,
            pipeline,
            ["USE_CATALOG", "USE_SCHEMA", "SELECT", "MODIFY", "CREATE_TABLE", "CREATE_FUNCTION"],
        ),
        ("volume", f"{cat}.bronze.landing", pipeline, ["READ_VOLUME", "WRITE_VOLUME"]),
        ("catalog", cat, g["engineer"], ["USE_CATALOG"]),
        ("schema", f"{cat}.bronze", g["engineer"], ["USE_SCHEMA", "MODIFY"]),
        ("schema", f"{cat}.silver", g["engineer"], ["USE_SCHEMA", "SELECT", "MODIFY"]),
        ("schema", f"{cat}.gold", g["engineer"], ["USE_SCHEMA", "SELECT"]),
        ("catalog", cat, g["analyst"], ["USE_CATALOG"]),
        ("schema", f"{cat}.gold", g["analyst"], ["USE_SCHEMA", "SELECT"]),
        ("catalog", cat, reader, ["USE_CATALOG"]),
        ("schema", f"{cat}.gold", reader, ["USE_SCHEMA", "SELECT"]),
    ]


def _store_sp_secret(w: WorkspaceClient, tenant: str) -> dict[str, Any]:
    """An OAuth secret of the pipeline principal in the tenant's scope (`databricks_client_id`,
    `databricks_client_secret`: OAuth M2M as that principal), minted only when the scope has none; rotated by
    the credentials loop like the MCP key."""
    from apev_ingest.rotation import CLIENT_ID_KEY, CLIENT_SECRET_KEY

    scope = naming.secret_scope(tenant)
    if CLIENT_SECRET_KEY in gw.secret_keys(w, scope):
        return {"minted": False}
    ids = gw.service_principal_ids(w, naming.pipeline_principal(tenant))
    if ids is None:
        raise PermanentError(f"the pipeline principal of tenant {tenant!r} does not exist")
    secret_id, value = gw.create_sp_secret(w, ids[0])
    gw.put_secret(w, scope, CLIENT_ID_KEY, ids[1])
    gw.put_secret(w, scope, CLIENT_SECRET_KEY, value)
    return {"minted": True, "secret_id": secret_id}


def _grants(w: WorkspaceClient, tenant: str, principals: dict[str, Any]) -> dict[str, Any]:
    grants = grants_for(tenant, principals)
    gw.apply_grants(w, grants)
    return {"grants": len(grants)}


def _warehouse(w: WorkspaceClient, configured: str | None, principals: dict[str, Any]) -> dict[str, Any]:
    """CAN_USE for the principals that run SQL: the pipeline and reader principals and the three groups."""
    wid = configured or gw.default_warehouse(w)
    groups = sorted(principals["groups"].values())
    gw.grant_can_use(w, wid, groups=groups, service_principals=[principals["pipeline"], principals["reader"]])
    return {"warehouse_id": wid}
