"""Every Databricks call the jobs service makes, through `DatabricksClients` (SDK only, bounded worker threads).

One method per endpoint, so calls are counted by endpoint and status, and one circuit breaker for the host:
after `failure_threshold` consecutive transient failures (the SDK has already retried 429/503 honouring
`Retry-After`) calls raise `CircuitOpenError`, which pauses consumption instead of dead-lettering.
Never the SDK's `run_now().result()` waiter: completion is pushed (webhooks) and reconciled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.service import jobs as dbx
from databricks.sdk.service import settings as dbs

from apev_jobs.metrics import Metrics
from apev_runtime.databricks import DatabricksClients
from apev_runtime.errors import Failure, classify
from apev_runtime.http import Breaker

T = TypeVar("T")

RUNS_LIST_PAGE = 25  # the Jobs API's largest runs/list page


class Gateway:
    def __init__(
        self, clients: DatabricksClients, metrics: Metrics, *, failure_threshold: int = 5, cool_down: float = 30.0
    ) -> None:
        self.clients = clients
        self.metrics = metrics
        self.breaker = Breaker(clients.host, failure_threshold=failure_threshold, cool_down=cool_down)

    async def _call(self, endpoint: str, fn: Callable[[WorkspaceClient], T]) -> T:
        probe = self.breaker.before_call()
        try:
            result = await self.clients.call(fn)
        except BaseException as exc:
            status = type(exc).__name__
            self.metrics.databricks_calls.labels(endpoint, status).inc()
            if isinstance(exc, Exception) and classify(exc) is Failure.TRANSIENT:
                self.breaker.record_failure()
            elif probe or isinstance(exc, DatabricksError):
                self.breaker.record_success()  # the host answered; the request was wrong
            raise
        self.metrics.databricks_calls.labels(endpoint, "ok").inc()
        self.breaker.record_success()
        return result

    # ---------------------------------------------------------------- jobs
    async def find_jobs(self, name: str) -> list[dbx.BaseJob]:
        """Jobs with exactly this name (case-insensitive filter on the server)."""
        return await self._call("jobs/list", lambda w: list(w.jobs.list(name=name, limit=100)))

    async def create_job(self, settings: dbx.JobSettings) -> str:
        fields = {f.name: v for f in dataclasses.fields(settings) if (v := getattr(settings, f.name)) is not None}
        created = await self._call("jobs/create", lambda w: w.jobs.create(**fields))
        return str(created.job_id)

    async def reset_job(self, job_id: str, settings: dbx.JobSettings) -> None:
        await self._call("jobs/reset", lambda w: w.jobs.reset(job_id=int(job_id), new_settings=settings))

    async def delete_job(self, job_id: str) -> bool:
        """False when the job was already gone (a resumed delete)."""
        try:
            await self._call("jobs/delete", lambda w: w.jobs.delete(int(job_id)))
        except NotFound:
            return False
        return True

    async def tenant_jobs(self, tenant_id: str) -> list[dbx.BaseJob]:
        """Every job tagged `ap_tenant_id=<tenant>` (the tag every job this service writes carries)."""
        return await self._call(
            "jobs/list",
            lambda w: [j for j in w.jobs.list(limit=100) if ((j.settings and j.settings.tags) or {}).get(
                "ap_tenant_id") == tenant_id],
        )  # fmt: skip

    async def active_runs_of(self, job_id: str) -> list[dbx.BaseRun]:
        return await self._call(
            "jobs/runs/list",
            lambda w: list(w.jobs.list_runs(job_id=int(job_id), active_only=True, limit=RUNS_LIST_PAGE)),
        )

    # ---------------------------------------------------------------- runs
    async def run_now(self, job_id: str, job_parameters: dict[str, str], token: str, only: list[str] | None) -> str:
        """Start a run; the idempotency token makes a repeat (after a crash or a lost response) return the same
        run. Only the response is read: no waiter."""
        wait = await self._call(
            "jobs/run-now",
            lambda w: w.jobs.run_now(
                job_id=int(job_id), job_parameters=job_parameters or None, idempotency_token=token, only=only
            ),
        )
        response: dbx.RunNowResponse = wait.response
        return str(response.run_id)

    async def get_run(self, run_id: str) -> dbx.Run:
        """The run with all pages of tasks (the SDK follows `next_page_token` beyond 100 tasks)."""
        return await self._call("jobs/runs/get", lambda w: w.jobs.get_run(int(run_id), include_history=True))

    async def active_runs(self) -> list[dbx.BaseRun]:
        """Workspace-wide QUEUED/PENDING/RUNNING/TERMINATING runs, 25 per page."""
        return await self._call(
            "jobs/runs/list", lambda w: list(w.jobs.list_runs(active_only=True, limit=RUNS_LIST_PAGE))
        )

    async def cancel_run(self, run_id: str) -> None:
        await self._call("jobs/runs/cancel", lambda w: w.jobs.cancel_run(int(run_id)))

    async def repair_run(
        self, run_id: str, *, rerun_tasks: list[str] | None, rerun_all_failed: bool, latest_repair_id: str | None
    ) -> str:
        wait = await self._call(
            "jobs/runs/repair",
            lambda w: w.jobs.repair_run(
                int(run_id),
                rerun_tasks=rerun_tasks,
                rerun_all_failed_tasks=rerun_all_failed or None,
                latest_repair_id=int(latest_repair_id) if latest_repair_id else None,
            ),
        )
        response: dbx.RepairRunResponse = wait.response
        return str(response.repair_id)

    # ---------------------------------------------------------------- notification destination
    async def find_destinations(self, display_name: str) -> list[str]:
        found = await self._call("notification-destinations/list", lambda w: list(w.notification_destinations.list()))
        return [str(d.id) for d in found if d.display_name == display_name and d.id]

    async def create_destination(self, display_name: str, config: dbs.Config) -> str:
        made = await self._call(
            "notification-destinations/create",
            lambda w: w.notification_destinations.create(display_name=display_name, config=config),
        )
        return str(made.id)

    async def update_destination(self, destination_id: str, display_name: str, config: dbs.Config) -> None:
        await self._call(
            "notification-destinations/update",
            lambda w: w.notification_destinations.update(destination_id, display_name=display_name, config=config),
        )

    # ---------------------------------------------------------------- principals and warehouses
    async def service_principal(self, display_name: str) -> str:
        """Application id of the service principal with this display name, created when missing."""

        def get_or_create(w: WorkspaceClient) -> str:
            for sp in w.service_principals.list(filter=f'displayName eq "{display_name}"'):
                if sp.display_name == display_name and sp.application_id:
                    return sp.application_id
            made = w.service_principals.create(display_name=display_name)
            return str(made.application_id)

        return await self._call("scim/ServicePrincipals", get_or_create)

    async def first_running_warehouse(self) -> str | None:
        def first(w: WorkspaceClient) -> str | None:
            listed = list(w.warehouses.list())
            running = [wh for wh in listed if wh.state is not None and wh.state.value == "RUNNING"]
            chosen = (running or listed)[:1]
            return chosen[0].id if chosen else None

        return await self._call("sql/warehouses/list", first)

    # ---------------------------------------------------------------- lineage facets
    async def table_columns(self, catalog: str, schema: str) -> dict[str, list[tuple[str, str]]]:
        """Unity Catalog's columns of every table of one schema (for OpenLineage schema facets)."""

        def columns(w: WorkspaceClient) -> dict[str, list[tuple[str, str]]]:
            out: dict[str, list[tuple[str, str]]] = {}
            for t in w.tables.list(catalog_name=catalog, schema_name=schema):
                cols = sorted(t.columns or [], key=lambda c: c.position or 0)
                out[f"{catalog}.{schema}.{t.name}"] = [
                    (str(c.name), str(c.type_text or c.type_name or "")) for c in cols
                ]
            return out

        return await self._call("unity-catalog/tables", columns)

    async def row_counts(self, warehouse_id: str, tables: list[str]) -> dict[str, int]:
        """`count(*)` of each table in one statement (Statement Execution API); tables come from the pipeline's
        own lineage (three-part names it renders), never from a request."""
        if not tables:
            return {}
        # Three-part names the pipeline renders (tenant catalog, known schemas and tables), never a request's text.
        statement = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)  # noqa: S608

        def count(w: WorkspaceClient) -> dict[str, int]:
            done = w.statement_execution.execute_statement(
                statement=statement, warehouse_id=warehouse_id, wait_timeout="30s"
            )
            if done.status is None or done.status.state is None or done.status.state.value != "SUCCEEDED":
                return {}
            rows = done.result.data_array if done.result and done.result.data_array else []
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._call("sql/statements", count)
