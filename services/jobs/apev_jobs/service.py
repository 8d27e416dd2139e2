"""What the jobs service decides: jobs by stable name, runs by request, completion once per attempt.

    on_job_requested(event, tx)   create/reset the job, then run / cancel / repair (request -> job -> run kept)
    on_notification(body)         a Databricks webhook: runs/get, run.finished once per (run, repair attempt)
    reconcile()                   one pass of the reconciler: runs/list active_only, runs/get only for the missing

No FastStream here. Databricks calls go through `Gateway` (SDK, worker threads); every step that precedes a
call is made durable first (`_durable`), so no database write lock is held during a call, and each step is
idempotent on redelivery: the idempotency token for run-now, the stable name for jobs, the repair history
for repairs, the unique (run, repair attempt) key for `run.finished`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from databricks.sdk.errors import NotFound
from databricks.sdk.service import jobs as dbx
from databricks.sdk.service import settings as dbs
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import JobRequested, RunFinished, TenantOffboarded
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.errors import ContractError
from apev_contracts.ids import deterministic_id, run_finished_id
from apev_contracts.naming import parse_job_name, pipeline_principal
from apev_jobs import completion, lineage, spec, tables
from apev_jobs.gateway import Gateway
from apev_jobs.lineage_transport import LineageTransport
from apev_jobs.metrics import Metrics
from apev_jobs.settings import Settings
from apev_runtime import outbox
from apev_runtime.db.engine import Database
from apev_runtime.errors import PermanentError
from apev_runtime.tracing import current_traceparent

log = structlog.get_logger("apev.jobs")

SOURCE = "/apev/jobs"


def idempotency_token(request_id: str) -> str:
    """The run-now token of one request (36 characters, within Databricks' 64): a redelivered request gets its
    own run back, whatever state it ended in; a new request is a new token, hence a new run."""
    return deterministic_id("jobs.run-now", request_id)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


WEBHOOK_RECORDING_RETRIES = (0.2, 0.5, 1.0, 2.0, 4.0)
"""Waits between a webhook's completion attempts while the run's request is still being recorded (~8 s)."""


class _BeingRecorded(Exception):
    """The run belongs to a request whose run-now answer is being stored right now (control flow inside the
    service, never raised out of it)."""


class JobsService:
    def __init__(
        self, db: Database, gateway: Gateway, settings: Settings, metrics: Metrics, *, early_commit: bool = False
    ) -> None:
        self.db = db
        self.gw = gateway
        self.settings = settings
        self.metrics = metrics
        self.early_commit = early_commit
        """True when the delivery kit handles this subscriber with `outside_calls`: the handler may commit."""
        self._destination_id: str | None = None
        self._destination_lock = asyncio.Lock()
        self._principals: dict[str, str] = {}
        self._warehouse: str | None = settings.warehouse_id
        self._missing_once: set[str] = set()
        self._reconcile_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.lineage = lineage.LineageBuilder(gateway.clients.host)
        self.lineage_transport = LineageTransport(
            settings.lineage_transport, url=settings.lineage_url, file=settings.lineage_file
        )

    async def _durable(self, tx: AsyncConnection) -> None:
        """Make the steps so far durable before an outside call (only where the kit allows the handler to commit;
        otherwise everything commits with the inbox row at the end)."""
        if self.early_commit:
            await tx.commit()

    # ================================================================ job.requested
    async def on_job_requested(self, event: CloudEvent[JobRequested], tx: AsyncConnection) -> None:
        req = event.data
        row = await self._request(tx, event.id)
        if row is not None and row.state in ("done", "failed"):
            log.info("request_already_handled", request_id=event.id, run_id=row.run_id, state=row.state)
            return
        if row is None:
            await self._insert_request(tx, event.id, req, state="received")
        await self._durable(tx)
        if req.action is not None and req.action.type == "delete":
            await self._delete(tx, event)
            return
        try:
            job_id, written = await self._ensure_job(tx, req)
            await self._set_request(tx, event.id, job_id=job_id, job_written=written)
            action = req.action
            if action is None:
                await self._set_request(tx, event.id, state="done")
            elif action.type == "run":
                await self._run(tx, event, job_id)
            elif action.type == "cancel":
                await self._cancel(tx, event, job_id)
            else:
                await self._repair(tx, event, job_id)
        except (PermanentError, ContractError) as exc:
            # Its own transaction, which waits for the handler's to roll back (never awaited here: that would
            # wait on our own locks).
            task = asyncio.create_task(self._fail_request(event.id, req, exc))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise

    async def _fail_request(self, request_id: str, req: JobRequested, exc: Exception) -> None:
        """Record why a request was refused (its own transaction: the handler's rolls back before the DLQ)."""
        async with self.db.transaction() as tx:
            if await self._request(tx, request_id) is None:
                await self._insert_request(tx, request_id, req, state="failed")
            await self._set_request(tx, request_id, state="failed", error=str(exc)[:2000])

    # ---------------------------------------------------------------- the job
    async def _ensure_job(self, tx: AsyncConnection, req: JobRequested) -> tuple[str, str]:
        """The job id for the stable name: created or reset when the request carries a spec whose hash changed,
        looked up otherwise. Never one job per event."""
        name = req.job_name
        local = (await tx.execute(select(tables.jobs).where(tables.jobs.c.job_name == name))).first()
        if req.job is None:
            if local is not None:
                return str(local.job_id), "unchanged"
            found = await self._find_job(req)
            if found is None:
                raise PermanentError(f"job {name!r} does not exist: send a job.requested with a `job` spec first")
            await self._save_job(tx, req, str(found.job_id), None)
            return str(found.job_id), "unchanged"
        digest = spec.spec_hash(req)
        if local is not None and local.spec_hash == digest:
            return str(local.job_id), "unchanged"
        found = await self._find_job(req)
        settings = spec.job_settings(
            req,
            destination_id=await self.destination(),
            run_as=await self._run_as(req),
            warehouse_id=await self._warehouse_for(req),
            existing=found.settings if found is not None else None,
        )
        if found is None:
            job_id, written = await self.gw.create_job(settings), "created"
        else:
            job_id, written = str(found.job_id), "reset"
            await self.gw.reset_job(job_id, settings)
        await self._save_job(tx, req, job_id, digest)
        await self._durable(tx)
        log.info("job_written", job_name=name, job_id=job_id, written=written)
        return job_id, written

    async def _find_job(self, req: JobRequested) -> dbx.BaseJob | None:
        """By stable name, with the tenant tag as a second key; the oldest if several (none is ever made twice
        by this service, but a person may have copied one)."""
        candidates = await self._find_jobs(req.tenant_id, req.job_name)
        return min(candidates, key=lambda j: j.job_id or 0) if candidates else None

    async def _save_job(self, tx: AsyncConnection, req: JobRequested, job_id: str, digest: str | None) -> None:
        values = {
            "tenant_id": req.tenant_id,
            "kind": req.kind,
            "key": req.key,
            "job_id": job_id,
            "tags": spec.tags_for(req),
            "timeout_seconds": req.job.timeout_seconds if req.job is not None else 0,
            "updated_at": _now(),
        }
        if digest is not None:
            values["spec_hash"] = digest
        await self._upsert(tx, tables.jobs, {"job_name": req.job_name}, values)

    async def _run_as(self, req: JobRequested) -> dbx.JobRunAs | None:
        assert req.job is not None
        name = req.job.run_as
        if name is None:
            if not self.settings.run_as_tenant_principal:
                return None
            name = pipeline_principal(req.tenant_id)
        if "@" in name:
            return dbx.JobRunAs(user_name=name)
        try:
            uuid.UUID(name)
            return dbx.JobRunAs(service_principal_name=name)
        except ValueError:
            pass
        if name not in self._principals:
            self._principals[name] = await self.gw.service_principal(name)
        return dbx.JobRunAs(service_principal_name=self._principals[name])

    async def _warehouse_for(self, req: JobRequested) -> str | None:
        if req.job is None or not spec.needs_warehouse(req.job):
            return None
        if self._warehouse is None:
            self._warehouse = await self.gw.first_running_warehouse()
        return self._warehouse

    # ---------------------------------------------------------------- the notification destination
    async def destination(self) -> str | None:
        """The service's destination id: found by display name or created, updated when its URL or
        credentials change (kept with a hash: Databricks never returns them). None without a public URL."""
        url = self.settings.webhook_url()
        if url is None:
            return None
        if self._destination_id is not None:
            return self._destination_id
        async with self._destination_lock:
            if self._destination_id is None:
                self._destination_id = await self._ensure_destination(url)
        return self._destination_id

    async def _ensure_destination(self, url: str) -> str:
        password = self.settings.webhook_password.get_secret_value() if self.settings.webhook_password else None
        name = self.settings.destination_name
        digest = deterministic_id("destination", url, self.settings.webhook_username, password or "")
        async with self.db.transaction() as tx:
            row = (
                await tx.execute(select(tables.destination).where(tables.destination.c.display_name == name))
            ).first()
        if row is not None and row.config_hash == digest:
            return str(row.destination_id)
        config = dbs.Config(
            generic_webhook=dbs.GenericWebhookConfig(
                url=url, username=self.settings.webhook_username, password=password
            )
        )
        found = await self.gw.find_destinations(name)
        if found:
            destination_id = sorted(found)[0]
            await self.gw.update_destination(destination_id, name, config)
        else:
            destination_id = await self.gw.create_destination(name, config)
        async with self.db.transaction() as tx:
            await self._upsert(
                tx,
                tables.destination,
                {"display_name": name},
                {"destination_id": destination_id, "config_hash": digest, "updated_at": _now()},
            )
        log.info("notification_destination_ready", destination_id=destination_id, updated=bool(found))
        return destination_id

    # ---------------------------------------------------------------- actions
    async def _run(self, tx: AsyncConnection, event: CloudEvent[JobRequested], job_id: str) -> None:
        req, action = event.data, event.data.action
        assert action is not None
        token = idempotency_token(event.id)
        await self._set_request(tx, event.id, state="recorded", idempotency_token=token)
        await self._durable(tx)  # the request and its token are recorded before the call
        try:
            run_id = await self.gw.run_now(job_id, dict(action.job_parameters), token, action.only)
        except NotFound:
            if req.job is None:
                raise
            # The job was deleted behind our back: forget it, write it again, run (same token: one run).
            await tx.execute(tables.jobs.delete().where(tables.jobs.c.job_name == req.job_name))
            job_id, _ = await self._ensure_job(tx, req)
            run_id = await self.gw.run_now(job_id, dict(action.job_parameters), token, action.only)
        timeout = req.job.timeout_seconds if req.job is not None else await self._job_timeout(tx, req.job_name)
        new = await self._track(tx, event, job_id, run_id, timeout)
        await self._set_request(tx, event.id, state="done", job_id=job_id, run_id=run_id)
        if new:
            self.metrics.runs_started.labels(req.kind).inc()
        log.info("run_started", request_id=event.id, job_id=job_id, run_id=run_id, new=new)

    async def _job_timeout(self, tx: AsyncConnection, job_name: str) -> int:
        row = (
            await tx.execute(select(tables.jobs.c.timeout_seconds).where(tables.jobs.c.job_name == job_name))
        ).first()
        return int(row.timeout_seconds) if row is not None else 0

    async def _track(
        self, tx: AsyncConnection, event: CloudEvent[JobRequested], job_id: str, run_id: str, timeout: int
    ) -> bool:
        req = event.data
        if (await tx.execute(select(tables.runs.c.run_id).where(tables.runs.c.run_id == run_id))).first():
            return False
        created = _now()
        deadline = created + timedelta(seconds=timeout + self.settings.timeout_grace_seconds) if timeout > 0 else None
        await tx.execute(
            tables.runs.insert().values(
                run_id=run_id,
                tenant_id=req.tenant_id,
                job_id=job_id,
                job_name=req.job_name,
                kind=req.kind,
                key=req.key,
                request_id=event.id,
                correlation_id=event.correlationid,
                tags=spec.tags_for(req) if req.job is not None else await self._job_tags(tx, req.job_name),
                job_parameters=dict(req.action.job_parameters) if req.action else {},
                active=True,
                repairs=0,
                deadline=deadline,
                created_at=created,
                updated_at=created,
            )
        )
        ref = lineage.RunRef(req.tenant_id, req.job_name, req.kind, run_id, 0, event.correlationid)
        params = {p.name: p.default for p in req.job.parameters} if req.job is not None else {}
        params.update(req.action.job_parameters if req.action else {})
        try:
            started = self.lineage.started(ref, params, created)
            await self.lineage_transport.queue(tx, ref, started)
        except (ValueError, outbox.EventTooLarge):
            log.warning("lineage_start_not_emitted", run_id=run_id, exc_info=True)  # never fails the request
            return True
        self._send_later(started)
        return True

    def _send_later(self, events: list[Any]) -> None:
        """http/file transports: sent in the background (best effort, see lineage_transport)."""
        if self.lineage_transport.kind in ("http", "file") and events:
            task = asyncio.create_task(self.lineage_transport.send(events))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _job_tags(self, tx: AsyncConnection, job_name: str) -> dict[str, str]:
        row = (await tx.execute(select(tables.jobs.c.tags).where(tables.jobs.c.job_name == job_name))).first()
        return dict(row.tags) if row is not None else {}

    async def _owned_run(self, tx: AsyncConnection, req: JobRequested, job_id: str, run_id: str) -> Row[Any]:
        row = (await tx.execute(select(tables.runs).where(tables.runs.c.run_id == run_id))).first()
        if row is None or row.tenant_id != req.tenant_id or row.job_id != job_id:
            raise PermanentError(f"action.run_id: run {run_id} is not a run of job {req.job_name!r} started here")
        return row

    async def _cancel(self, tx: AsyncConnection, event: CloudEvent[JobRequested], job_id: str) -> None:
        action = event.data.action
        assert action is not None and action.run_id is not None
        await self._owned_run(tx, event.data, job_id, action.run_id)
        await self._set_request(tx, event.id, state="recorded", run_id=action.run_id)
        await self._durable(tx)
        await self.gw.cancel_run(action.run_id)  # cancelling a finished run changes nothing: idempotent
        await self._set_request(tx, event.id, state="done")
        log.info("run_cancel_requested", request_id=event.id, run_id=action.run_id)

    async def _delete(self, tx: AsyncConnection, event: CloudEvent[JobRequested]) -> None:
        """Cancel the job's active runs, then delete it (so no scheduled run is left); a job already gone is done."""
        req = event.data
        local = (await tx.execute(select(tables.jobs).where(tables.jobs.c.job_name == req.job_name))).first()
        job_ids = {str(local.job_id)} if local is not None else set()
        job_ids |= {str(j.job_id) for j in await self._find_jobs(req.tenant_id, req.job_name)}
        for job_id in sorted(job_ids):
            await self._remove_job(job_id)
        await tx.execute(tables.jobs.delete().where(tables.jobs.c.job_name == req.job_name))
        await self._set_request(tx, event.id, state="done", job_id=min(job_ids, default=None), job_written="deleted")
        log.info("job_deleted", request_id=event.id, job_name=req.job_name, job_ids=sorted(job_ids))

    async def _find_jobs(self, tenant_id: str, job_name: str) -> list[dbx.BaseJob]:
        return [
            j
            for j in await self.gw.find_jobs(job_name)
            if j.settings is not None
            and j.settings.name == job_name
            and (j.settings.tags or {}).get("ap_tenant_id") == tenant_id
        ]

    async def _remove_job(self, job_id: str) -> None:
        for run in await self.gw.active_runs_of(job_id):
            await self.gw.cancel_run(str(run.run_id))
        await self.gw.delete_job(job_id)

    # ================================================================ tenant.offboarded
    async def on_tenant_offboarded(self, event: CloudEvent[TenantOffboarded], tx: AsyncConnection) -> None:
        """Every job of the tenant (found by its tag, and in this service's table): active runs cancelled, job
        deleted. Each step is a Databricks call that is safe to repeat, so a redelivery resumes."""
        tenant = event.data.tenant_id
        local = {str(r.job_id) for r in await tx.execute(select(tables.jobs.c.job_id).where(
            tables.jobs.c.tenant_id == tenant))}  # fmt: skip
        await self._durable(tx)
        remote = {str(j.job_id) for j in await self.gw.tenant_jobs(tenant)}
        for job_id in sorted(local | remote):
            await self._remove_job(job_id)
        await tx.execute(tables.jobs.delete().where(tables.jobs.c.tenant_id == tenant))
        log.info("tenant_jobs_deleted", tenant_id=tenant, jobs=len(local | remote))

    async def _repair(self, tx: AsyncConnection, event: CloudEvent[JobRequested], job_id: str) -> None:
        action = event.data.action
        assert action is not None and action.run_id is not None
        run = await self._owned_run(tx, event.data, job_id, action.run_id)
        request = await self._request(tx, event.id)
        assert request is not None
        before = request.repairs_before if request.repairs_before is not None else int(run.repairs)
        retried = request.state == "recorded"  # a previous attempt may have repaired before it died
        await self._set_request(tx, event.id, state="recorded", run_id=action.run_id, repairs_before=before)
        await self._durable(tx)
        repair_id = await self._repair_once(
            action.run_id,
            before,
            retried=retried,
            rerun_tasks=list(action.rerun_tasks) if action.rerun_tasks else None,
            rerun_all_failed=action.rerun_all_failed_tasks,
            latest_repair_id=action.latest_repair_id or run.latest_repair_id,
        )
        await tx.execute(
            update(tables.runs)
            .where(tables.runs.c.run_id == action.run_id)
            .values(repairs=before + 1, latest_repair_id=repair_id, active=True, updated_at=_now())
        )
        await self._set_request(tx, event.id, state="done")
        log.info("run_repaired", request_id=event.id, run_id=action.run_id, repair_id=repair_id, attempt=before + 1)

    async def _repair_once(
        self,
        run_id: str,
        before: int,
        *,
        retried: bool,
        rerun_tasks: list[str] | None,
        rerun_all_failed: bool,
        latest_repair_id: str | None,
    ) -> str:
        """Repair has no idempotency token: on a retry, the run's repair history says whether it happened."""
        if retried:
            run = await self.gw.get_run(run_id)
            repairs = [i for i in run.repair_history or [] if i.type is not None and i.type.value == "REPAIR"]
            if len(repairs) > before:
                return str(repairs[before].id)
        return await self.gw.repair_run(
            run_id, rerun_tasks=rerun_tasks, rerun_all_failed=rerun_all_failed, latest_repair_id=latest_repair_id
        )

    # ================================================================ completion
    async def on_notification(self, body: Mapping[str, Any]) -> str:
        """A Databricks webhook (thin body). Job-level success/failure: publish the run's completion."""
        event_type = str(body.get("event_type") or "")
        run = body.get("run") or {}
        if body.get("task") is not None or not isinstance(run, Mapping) or run.get("run_id") is None:
            return "ignored"
        run_id = str(run["run_id"])
        if event_type not in ("jobs.on_success", "jobs.on_failure"):
            return "ignored"  # on_start: nothing to fetch; completion is what counts
        # Answer at once (Databricks' sender waits for us, one event after another) and fetch the run in the
        # background; the mark tells the reconciler a webhook is being handled. A completion lost with this
        # process is the reconciler's once the mark is older than `notified_grace`.
        async with self.db.transaction() as tx:
            marked = await tx.execute(
                update(tables.runs)
                .where(tables.runs.c.run_id == run_id, tables.runs.c.active.is_(True))
                .values(notified_at=_now())
            )
            if not marked.rowcount:
                known = (await tx.execute(select(tables.runs.c.run_id).where(tables.runs.c.run_id == run_id))).first()
                if known is not None:
                    return "already_published"
        task = asyncio.create_task(self._complete_quietly(run_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return "accepted"

    async def _complete_quietly(self, run_id: str) -> None:
        try:
            # A run that ended before its run-now answer was stored (a short run on a busy service) is retried
            # for a few seconds here rather than left to the reconciler (two intervals later).
            for delay in WEBHOOK_RECORDING_RETRIES:
                if await self.complete(run_id, via="webhook") != "recording":
                    return
                await asyncio.sleep(delay)
            log.info("webhook_run_still_recording", run_id=run_id)  # the reconciler follows up
        except Exception:
            log.warning("webhook_completion_failed", run_id=run_id, exc_info=True)  # the reconciler follows up

    def notified_grace(self) -> timedelta:
        return timedelta(seconds=max(10.0, 3 * self.settings.reconcile_interval_seconds))

    async def complete(self, run_id: str, *, via: str) -> str:
        """Fetch the run; if it is terminal, queue `run.finished` once per (run, repair attempt)."""
        async with self.db.transaction() as tx:
            row = (await tx.execute(select(tables.runs).where(tables.runs.c.run_id == run_id))).first()
        if row is not None and not row.active:
            return "already_published"
        run = await self.gw.get_run(run_id)
        if not completion.is_terminal(run):
            return "not_terminal"
        try:
            tracked = await self._tracked(row, run)
        except _BeingRecorded:
            return "recording"
        if tracked is None:
            return "not_ours"
        attempt = completion.repair_attempt(run)
        payload = completion.run_finished(run, tracked, attempt)
        event_id = run_finished_id(run_id, attempt)
        event = new_event(
            payload,
            tenant_id=tracked.tenant_id,
            source=SOURCE,
            id=event_id,
            correlation_id=(row.correlation_id if row is not None else None) or event_id,
            subject=f"runs/{run_id}",
        )
        ref = lineage.RunRef(tracked.tenant_id, tracked.job_name, tracked.kind, run_id, attempt,
                             row.correlation_id if row is not None else None)  # fmt: skip
        ol_events = await self._lineage_finished(ref, payload, started_here=row is None or row.request_id is None)
        queued_at = _now()
        async with self.db.transaction() as tx:
            if row is None:
                await self._track_untracked(tx, run, tracked)
            first = await self._claim_finished(tx, run_id, attempt, event_id, payload, via)
            if first:
                await outbox.add(tx, event, traceparent=current_traceparent())
                await self.lineage_transport.queue(tx, ref, ol_events)
            await tx.execute(
                update(tables.runs)
                .where(tables.runs.c.run_id == run_id, tables.runs.c.repairs <= attempt)
                .values(
                    active=False,
                    life_cycle_state=payload.state.life_cycle_state,
                    result_state=payload.state.result_state,
                    updated_at=queued_at,
                )
            )
        if not first:
            return "already_published"
        self._send_later(ol_events)
        self.metrics.runs_finished.labels(tracked.kind, payload.outcome, via).inc()
        self.metrics.completion_lag.observe(max(0.0, (queued_at - payload.end_time).total_seconds()))
        log.info("run_finished_queued", run_id=run_id, attempt=attempt, outcome=payload.outcome, via=via)
        await self._maybe_auto_repair(run_id, tracked, attempt, payload.outcome)
        return "published"

    async def _lineage_finished(self, ref: lineage.RunRef, payload: Any, *, started_here: bool) -> list[Any]:
        """The run's OpenLineage events, with Unity Catalog's columns and the outputs' row counts where it has
        them. Lineage never holds up `run.finished`: a failed lookup only leaves a facet out."""
        if self.lineage_transport.kind == "none":
            return []
        catalog = lineage.Catalog()
        schemas, outputs = self.lineage.tables_of(ref, payload.job_parameters)
        try:
            for cat, schema in sorted(schemas):
                catalog.columns.update(await self.gw.table_columns(cat, schema))
            if payload.outcome == "success" and self.settings.lineage_row_counts and outputs:
                known = [t for t in outputs if t in catalog.columns]
                warehouse = self._warehouse or await self.gw.first_running_warehouse()
                if warehouse and known:
                    catalog.row_counts = await self.gw.row_counts(warehouse, known)
        except Exception:
            log.warning("lineage_facets_unavailable", run_id=ref.run_id, exc_info=True)
        try:
            events = self.lineage.finished(ref, payload, catalog)
        except ValueError:
            log.warning("lineage_end_not_emitted", run_id=ref.run_id, exc_info=True)
            return []
        if started_here or ref.attempt > 0:
            # No START was queued when the run was tracked (a schedule, a person, a repair): one now, first.
            events.insert(0, self.lineage.started(ref, payload.job_parameters, payload.start_time)[0])
        return events

    async def _tracked(self, row: Row[Any] | None, run: dbx.Run) -> completion.Tracked | None:
        if row is not None:
            async with self.db.transaction() as tx:
                timeout = await self._job_timeout(tx, row.job_name)
            return completion.Tracked(
                tenant_id=row.tenant_id,
                job_id=row.job_id,
                job_name=row.job_name,
                kind=row.kind,
                key=row.key,
                request_id=row.request_id,
                tags=dict(row.tags),
                timed_out=bool(row.timed_out),
                timeout_seconds=timeout,
            )
        # Not started by a request (a schedule, a person): ours if its job is one this service wrote.
        async with self.db.transaction() as tx:
            job = (await tx.execute(select(tables.jobs).where(tables.jobs.c.job_id == str(run.job_id)))).first()
            if job is None:
                return None
            pending = (
                await tx.execute(
                    select(tables.requests.c.request_id).where(
                        tables.requests.c.job_id == str(run.job_id),
                        tables.requests.c.state == "recorded",
                        tables.requests.c.action == "run",
                    )
                )
            ).first()
        if pending is not None and _value(run.trigger) == "ONE_TIME":
            raise _BeingRecorded  # a request is recording this run right now (its run-now answer not yet stored)
        tenant, kind, key = parse_job_name(job.job_name)
        return completion.Tracked(tenant, job.job_id, job.job_name, kind, key, None, dict(job.tags))

    async def _track_untracked(self, tx: AsyncConnection, run: dbx.Run, tracked: completion.Tracked) -> None:
        now = _now()
        await self._upsert(
            tx,
            tables.runs,
            {"run_id": str(run.run_id)},
            {
                "tenant_id": tracked.tenant_id,
                "job_id": tracked.job_id,
                "job_name": tracked.job_name,
                "kind": tracked.kind,
                "key": tracked.key,
                "tags": tracked.tags,
                "job_parameters": completion.job_parameters(run),
                "active": True,
                "repairs": 0,
                "created_at": now,
                "updated_at": now,
            },
        )

    async def _claim_finished(
        self, tx: AsyncConnection, run_id: str, attempt: int, event_id: str, payload: RunFinished, via: str
    ) -> bool:
        """The unique (run, repair attempt) key: exactly one caller, across replicas, gets True."""
        values = {
            "run_id": run_id,
            "repair_attempt": attempt,
            "event_id": event_id,
            "outcome": payload.outcome,
            "via": via,
            "end_time": payload.end_time,
            "queued_at": _now(),
            "payload": payload.model_dump(mode="json", exclude={"tenant_id", "tags", "job_parameters"}),
        }
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        stmt = dialect.insert(tables.finished).values(**values).on_conflict_do_nothing()
        result = await tx.execute(stmt)
        return bool(result.rowcount)

    async def _maybe_auto_repair(self, run_id: str, tracked: completion.Tracked, attempt: int, outcome: str) -> None:
        """One automatic repair of the failed tasks, for the kinds configured (off by default)."""
        if outcome != "failure" or attempt != 0 or tracked.kind not in self.settings.auto_repair_kinds:
            return
        async with self.db.transaction() as tx:
            claimed = await tx.execute(
                update(tables.runs)
                .where(tables.runs.c.run_id == run_id, tables.runs.c.auto_repaired.is_(False))
                .values(auto_repaired=True)
            )
        if not claimed.rowcount:
            return
        repair_id = await self._repair_once(
            run_id, 0, retried=True, rerun_tasks=None, rerun_all_failed=True, latest_repair_id=None
        )
        async with self.db.transaction() as tx:
            await tx.execute(
                update(tables.runs)
                .where(tables.runs.c.run_id == run_id)
                .values(repairs=1, latest_repair_id=repair_id, active=True, updated_at=_now())
            )
        log.info("run_auto_repaired", run_id=run_id, repair_id=repair_id)

    # ================================================================ the reconciler
    async def reconcile(self) -> dict[str, int]:
        """One pass: the workspace's active runs (25 a page), then `runs/get` only for tracked runs that were
        missing from the active set twice in a row (a webhook gets one interval to arrive first), and
        cancellation of runs past the service's deadline."""
        async with self._reconcile_lock:
            active = {str(r.run_id) for r in await self.gw.active_runs()}
            async with self.db.transaction() as tx:
                tracked = (await tx.execute(select(tables.runs).where(tables.runs.c.active.is_(True)))).all()
            counts = {"active": len(active), "tracked": len(tracked), "recovered": 0, "timed_out": 0}
            now = _now()
            still_missing: set[str] = set()
            for row in tracked:
                if row.run_id in active:
                    deadline = _aware(row.deadline)
                    if deadline is not None and now > deadline and not row.timed_out:
                        await self._time_out(row.run_id)
                        counts["timed_out"] += 1
                    continue
                notified = _aware(row.notified_at)
                if notified is not None and now - notified < self.notified_grace():
                    continue  # its webhook is being handled
                if row.run_id not in self._missing_once:
                    still_missing.add(row.run_id)
                    continue
                if await self.complete(row.run_id, via="reconciler") == "published":
                    counts["recovered"] += 1
                    self.metrics.reconciler_recovered.inc()
            self._missing_once = still_missing
            return counts

    async def _time_out(self, run_id: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(update(tables.runs).where(tables.runs.c.run_id == run_id).values(timed_out=True))
        await self.gw.cancel_run(run_id)
        log.warning("run_timed_out_cancelled", run_id=run_id)
        await self.complete(run_id, via="timeout")

    # ================================================================ requests, rows
    async def _request(self, tx: AsyncConnection, request_id: str) -> Row[Any] | None:
        return (await tx.execute(select(tables.requests).where(tables.requests.c.request_id == request_id))).first()

    async def _insert_request(self, tx: AsyncConnection, request_id: str, req: JobRequested, *, state: str) -> None:
        now = _now()
        await tx.execute(
            tables.requests.insert().values(
                request_id=request_id,
                tenant_id=req.tenant_id,
                job_name=req.job_name,
                action=req.action.type if req.action else None,
                state=state,
                created_at=now,
                updated_at=now,
            )
        )

    async def _set_request(self, tx: AsyncConnection, request_id: str, **values: Any) -> None:
        await tx.execute(
            update(tables.requests)
            .where(tables.requests.c.request_id == request_id)
            .values(**values, updated_at=_now())
        )

    async def _upsert(self, tx: AsyncConnection, table: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        stmt = dialect.insert(table).values(**key, **values)
        await tx.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=values))

    async def accept(self, tx: AsyncConnection, event: CloudEvent[JobRequested]) -> None:
        """The HTTP API's request: known at once (state `accepted`), published through the outbox."""
        await self._insert_request(tx, event.id, event.data, state="accepted")
        await outbox.add(tx, event, traceparent=current_traceparent())

    async def drain(self) -> None:
        """Wait for background completions (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _value(enum: Any) -> str | None:
    return None if enum is None else str(getattr(enum, "value", enum))
