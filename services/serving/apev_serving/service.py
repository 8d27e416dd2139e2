"""What the serving service decides: agents, their endpoints, rolls, scale-ups, invokes.

    register_agent(tenant, body)        principal agent_<id> granted exactly the listed tables, then
                                        job.requested for agent-deploy (run now) and agent-insights (scheduled)
    deploy_version(agent, source)       job.requested run of agent-deploy with a new model source
    on_run_finished(event, tx)          a successful agent-deploy: roll the agent's endpoint to the new version
                                        if its MLflow run's answer_accuracy holds (else `rejected`, the
                                        endpoint keeps serving the version it serves);
                                        a successful agent-insights: its new rows as insight.created (insights.py)
    apply_endpoint(tenant, spec)        create or update an endpoint (served entities, sizes, scale to zero,
                                        traffic split), wait for READY / UPDATE_FAILED with progress
    on_scale_requested(event, tx)       one workload-size step, with a cooldown, at most to the ceiling
    invoke(principal, agent, input)     per-tenant concurrency limit, timeout, latency recorded

No FastStream here. Databricks calls go through `Gateway` (SDK, worker threads); no database transaction is
open while one is waiting (handlers commit their step first: `outside_calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.service import catalog, serving
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import EndpointScaleRequested, JobRequested, RunFinished, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.events.jobs import JobAction
from apev_contracts.ids import deterministic_id, latency_sample_id
from apev_pipeline import AgentJobInput, build_agent_jobs
from apev_pipeline.agents import SERVING_ALIAS, insights_table_ddl
from apev_runtime import outbox
from apev_runtime.db.engine import Database
from apev_runtime.errors import PermanentError, TransientError
from apev_runtime.tracing import current_traceparent
from apev_serving import tables
from apev_serving.gateway import EndpointState, Gateway
from apev_serving.insights import Insights
from apev_serving.latency import Latency
from apev_serving.settings import WORKLOAD_SIZES, Settings

log = structlog.get_logger("apev.serving")

SOURCE = "/apev/serving"
TOKEN_LIFETIME_SECONDS = 90 * 24 * 3600
_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Refused(Exception):
    """An HTTP request that cannot be served: status and a message naming what was wrong."""

    def __init__(self, status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


@dataclass
class AgentBody:
    name: str
    model_source: str
    tables: list[str]
    agent_id: str | None = None
    chat_endpoint: str | None = None
    schedule: dict[str, Any] | None = None
    workload_size: str | None = None
    scale_to_zero: bool = True


@dataclass
class Gate:
    """A version's MLflow run as serving judges it; `reason` set: not rolled out."""

    mlflow_run_id: str | None
    experiment_id: str | None
    answer_accuracy: float | None
    latency_p95_ms: float | None
    reason: str | None

    def values(self) -> dict[str, Any]:
        return {
            "mlflow_run_id": self.mlflow_run_id,
            "experiment_id": self.experiment_id,
            "answer_accuracy": self.answer_accuracy,
            "latency_p95_ms": self.latency_p95_ms,
            "reason": self.reason,
        }


@dataclass
class _Limiter:
    """In-flight invokes per tenant on this replica."""

    inflight: dict[str, int] = field(default_factory=dict)

    def try_enter(self, tenant: str, limit: int) -> bool:
        if self.inflight.get(tenant, 0) >= limit:
            return False
        self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
        return True

    def leave(self, tenant: str) -> None:
        self.inflight[tenant] -= 1


def normalize_tables(tenant_id: str, given: list[str]) -> list[str]:
    """`monthly_kpis`, `gold.monthly_kpis` or `<tenant catalog>.gold.monthly_kpis` -> `gold.monthly_kpis`;
    anything outside the tenant's catalog or its gold schema is refused."""
    catalog = naming.catalog_name(tenant_id)
    out = []
    for raw in given:
        parts = str(raw).strip().split(".")
        if len(parts) == 3 and parts[0] != catalog:
            raise Refused(403, "forbidden", f"table {raw!r} is outside the tenant's catalog {catalog}")
        if len(parts) == 1:
            parts = ["gold", *parts]
        schema, table = parts[-2], parts[-1]
        if schema != "gold" or not re.fullmatch(r"[a-z][a-z0-9_]{0,127}", table) or table == "agent_insights":
            raise Refused(422, "invalid_request", f"table {raw!r}: agents read tables of the gold schema by name")
        out.append(f"gold.{table}")
    if not out:
        raise Refused(422, "invalid_request", "tables: list at least one gold table the agent may read")
    return sorted(set(out))


class ServingService:
    def __init__(
        self, db: Database, gateway: Gateway, settings: Settings, latency: Latency, insights: Insights | None = None
    ) -> None:
        self.db = db
        self.gw = gateway
        self.settings = settings
        self.latency = latency
        self.insights = insights
        self._limiter = _Limiter()
        self._agents: dict[str, Row[Any]] = {}
        self._uploaded: dict[str, str] = {}  # path -> sha256 of what this process uploaded
        self._upload_lock = asyncio.Lock()
        self._endpoint_locks: dict[str, asyncio.Lock] = {}

    # ================================================================ agents
    async def register_agent(self, tenant_id: str, body: AgentBody) -> dict[str, Any]:
        agent_id = (
            body.agent_id
            or f"{re.sub(r'[^a-z0-9]+', '-', body.name.lower()).strip('-')[:30] or 'agent'}-{uuid.uuid4().hex[:8]}"
        )
        if not _AGENT_ID.fullmatch(agent_id):
            raise Refused(422, "invalid_request", f"agent_id {agent_id!r} must match {_AGENT_ID.pattern}")
        size = body.workload_size or self.settings.default_workload_size
        if size not in WORKLOAD_SIZES:
            raise Refused(422, "invalid_request", f"workload_size {size!r} is not one of {list(WORKLOAD_SIZES)}")
        agent_tables = normalize_tables(tenant_id, body.tables)
        catalog = naming.catalog_name(tenant_id)
        for t in agent_tables:
            if not await self.gw.table_exists(f"{catalog}.{t}"):
                raise Refused(422, "invalid_request", f"table {catalog}.{t} does not exist")
        principal = naming.agent_principal(agent_id)
        model_name = f"{catalog}.{self.settings.models_schema}.{agent_id.replace('-', '_')}"
        chat = body.chat_endpoint or self.settings.chat_endpoint
        config = {
            "agent_id": agent_id,
            "catalog": catalog,
            "tables": agent_tables,
            "chat_endpoint": chat,
            "warehouse_id": self.settings.warehouse_id or "",
        }
        if naming.KNOWLEDGE_CHUNKS_TABLE in agent_tables:  # documents: the tenant's index, in its own catalog
            config["vector_index"] = naming.knowledge_index(tenant_id)
        now = _now()
        async with self.db.transaction() as tx:
            if (await tx.execute(select(tables.agents.c.agent_id).where(tables.agents.c.agent_id == agent_id))).first():
                raise Refused(409, "conflict", f"agent {agent_id!r} exists")
            await tx.execute(
                tables.agents.insert().values(
                    agent_id=agent_id,
                    tenant_id=tenant_id,
                    name=body.name,
                    model_name=model_name,
                    model_source=body.model_source,
                    tables=agent_tables,
                    config=config,
                    chat_endpoint=chat,
                    endpoint_name=f"agent-{agent_id}",
                    principal=principal,
                    schedule=body.schedule,
                    workload_size=size,
                    scale_to_zero=body.scale_to_zero,
                    state="provisioning",
                    created_at=now,
                    updated_at=now,
                )
            )
        try:
            app_id = await self._provision(tenant_id, agent_id, principal, model_name, agent_tables)
        except Exception as exc:
            await self._set_agent(agent_id, state="failed", error=str(exc)[:2000])
            raise
        jobs = build_agent_jobs(
            AgentJobInput(
                tenant_id=tenant_id,
                agent_id=agent_id,
                model_name=model_name,
                model_source=body.model_source,
                config=config,
                schedule=body.schedule,  # type: ignore[arg-type]
                root=self.settings.task_root,
                accuracy_threshold=self.settings.min_answer_accuracy,
            )
        )
        await self._upload(jobs.files)
        deploy = new_event(jobs.deploy_request(run=True), tenant_id=tenant_id, source=SOURCE,
                           id=deterministic_id("serving.agent-deploy", agent_id, "registered"))  # fmt: skip
        insights = new_event(jobs.insights_request(), tenant_id=tenant_id, source=SOURCE,
                             id=deterministic_id("serving.agent-insights", agent_id, "registered"))  # fmt: skip
        async with self.db.transaction() as tx:
            await outbox.add(tx, deploy, traceparent=current_traceparent())
            await outbox.add(tx, insights, traceparent=current_traceparent())
            await tx.execute(
                update(tables.agents)
                .where(tables.agents.c.agent_id == agent_id)
                .values(
                    principal_id=app_id,
                    state="deploying",
                    deploy_request_id=deploy.id,
                    insights_request_id=insights.id,
                    updated_at=_now(),
                )
            )
        log.info("agent_registered", agent_id=agent_id, tenant_id=tenant_id, tables=agent_tables)
        return {
            "agent_id": agent_id,
            "principal": principal,
            "principal_id": app_id,
            "model_name": model_name,
            "endpoint_name": f"agent-{agent_id}",
            "tables": agent_tables,
            "deploy_request_id": deploy.id,
            "insights_request_id": insights.id,
        }

    async def _provision(
        self, tenant_id: str, agent_id: str, principal: str, model: str, agent_tables: list[str]
    ) -> str:
        """The agent's principal, grants on exactly its tables (USE on their catalog and schema), its registered
        model (owned by it), the insights table it appends to, and its token in the tenant's secret scope."""
        catalog = naming.catalog_name(tenant_id)
        app_id = await self.gw.service_principal(principal)
        await self.gw.grant("catalog", catalog, app_id, ["USE_CATALOG"])
        await self.gw.grant("schema", f"{catalog}.gold", app_id, ["USE_SCHEMA"])
        for t in agent_tables:
            await self.gw.grant("table", f"{catalog}.{t}", app_id, ["SELECT"])
        index = naming.knowledge_index(tenant_id)
        if naming.KNOWLEDGE_CHUNKS_TABLE in agent_tables and await self.gw.vector_index(index) is not None:
            await self.gw.grant("table", index, app_id, ["SELECT"])  # else: granted when retrieval creates it
        await self.gw.sql(insights_table_ddl(catalog), self.settings.warehouse_id)
        await self.gw.grant("table", f"{catalog}.gold.agent_insights", app_id, ["SELECT", "MODIFY"])
        await self.gw.ensure_schema(catalog, self.settings.models_schema)
        await self.gw.grant("schema", f"{catalog}.{self.settings.models_schema}", app_id, ["USE_SCHEMA"])
        await self.gw.ensure_model(model, app_id)
        token = await self.gw.token_for(app_id, TOKEN_LIFETIME_SECONDS)
        await self.gw.put_secret(naming.secret_scope(tenant_id), _token_key(agent_id), token)
        return app_id

    async def _upload(self, files: list[Any]) -> None:
        async with self._upload_lock:
            for f in files:
                if self._uploaded.get(f.path) != f.sha256:
                    await self.gw.upload(f.path, f.content)
                    self._uploaded[f.path] = f.sha256

    async def deploy_version(self, agent: Row[Any], model_source: str) -> str:
        """A new version from `model_source`: a run of the agent's deploy job with that source."""
        request = JobRequested(
            tenant_id=agent.tenant_id,
            kind="agent-deploy",
            key=agent.agent_id,
            action=JobAction(type="run", job_parameters={"model_source": model_source}),
            agent_id=agent.agent_id,
        )
        event = new_event(request, tenant_id=agent.tenant_id, source=SOURCE)
        async with self.db.transaction() as tx:
            await outbox.add(tx, event, traceparent=current_traceparent())
            await tx.execute(
                update(tables.agents)
                .where(tables.agents.c.agent_id == agent.agent_id)
                .values(state="deploying", deploy_request_id=event.id, updated_at=_now())
            )
        return event.id

    def _job_input(self, agent: Row[Any]) -> AgentJobInput:
        return AgentJobInput(
            tenant_id=agent.tenant_id,
            agent_id=agent.agent_id,
            model_name=agent.model_name,
            model_source=agent.model_source,
            config=dict(agent.config),
            schedule=agent.schedule,
            root=self.settings.task_root,
            accuracy_threshold=self.settings.min_answer_accuracy,
        )

    async def agent(self, agent_id: str) -> Row[Any] | None:
        async with self.db.engine.connect() as conn:
            return (await conn.execute(select(tables.agents).where(tables.agents.c.agent_id == agent_id))).first()

    async def agents_of(self, tenant_id: str, limit: int = 100) -> list[Row[Any]]:
        a = tables.agents.c
        async with self.db.engine.connect() as conn:
            query = select(tables.agents).where(a.tenant_id == tenant_id).order_by(a.agent_id).limit(limit)
            return list((await conn.execute(query)).all())

    async def _set_agent(self, agent_id: str, **values: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                update(tables.agents).where(tables.agents.c.agent_id == agent_id).values(**values, updated_at=_now())
            )
        self._agents.pop(agent_id, None)

    async def describe(self, agent: Row[Any]) -> dict[str, Any]:
        """The agent, its versions and endpoint as of one snapshot: the row passed in may be older than the
        versions (a rejection commits the version's and the agent's state together; read apart, a version read
        `rejected` beside an agent still `deploying`)."""
        async with self.db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            agent = (
                await conn.execute(select(tables.agents).where(tables.agents.c.agent_id == agent.agent_id))
            ).first() or agent
            versions = (
                await conn.execute(
                    select(tables.versions)
                    .where(tables.versions.c.agent_id == agent.agent_id)
                    .order_by(tables.versions.c.version)
                )
            ).all()
            endpoint = (
                await conn.execute(select(tables.endpoints).where(tables.endpoints.c.name == agent.endpoint_name))
            ).first()
        live = None
        try:
            live = await self.gw.get_endpoint(agent.endpoint_name)
        except DatabricksError:
            log.warning("endpoint_state_unavailable", endpoint=agent.endpoint_name, exc_info=True)
        return {
            "agent_id": agent.agent_id,
            "tenant_id": agent.tenant_id,
            "name": agent.name,
            "state": agent.state,
            "error": agent.error,
            "principal": agent.principal,
            "tables": agent.tables,
            "model_name": agent.model_name,
            "chat_endpoint": agent.chat_endpoint,
            "versions": [
                {
                    "version": v.version,
                    "state": v.state,
                    "run_id": v.run_id,
                    "mlflow_run_id": v.mlflow_run_id,
                    "experiment_id": v.experiment_id,
                    "mlflow_run_url": self.run_url(v.experiment_id, v.mlflow_run_id),
                    "answer_accuracy": v.answer_accuracy,
                    "latency_p95_ms": v.latency_p95_ms,
                    "reason": v.reason,
                }
                for v in versions
            ],
            "endpoint": {
                "name": agent.endpoint_name,
                "ready": live.ready if live else (endpoint.ready if endpoint else None),
                "config_update": live.config_update if live else (endpoint.config_update if endpoint else None),
                "message": (live.message if live else None) or (endpoint.message if endpoint else None),
                "served_entities": live.served_entities if live else (endpoint.served_entities if endpoint else []),
                "traffic": live.routes if live else (endpoint.routes if endpoint else []),
                "workload_size": endpoint.workload_size if endpoint else agent.workload_size,
                "scale_count": endpoint.scale_count if endpoint else 0,
            },
            "latency": self.latency.summary(agent.endpoint_name),
        }

    # ================================================================ run.finished: roll
    async def on_run_finished(self, event: CloudEvent[RunFinished], tx: AsyncConnection) -> None:
        run = event.data
        log.info("run_finished_received", event_id=event.id, run_id=run.run_id, kind=run.kind, outcome=run.outcome)
        agent_id = run.tags.get("ap_agent_id")
        if run.kind not in ("agent-deploy", "agent-insights") or not agent_id:
            return
        agent = (await tx.execute(select(tables.agents).where(tables.agents.c.agent_id == agent_id))).first()
        if agent is None or agent.tenant_id != run.tenant_id:
            log.warning("run_of_unknown_agent", agent_id=agent_id, run_id=run.run_id, kind=run.kind)
            return
        if run.kind == "agent-insights":
            if run.outcome == "success" and self.insights is not None:
                await self.insights.on_run_finished(event, tx, agent)
            return
        if run.outcome != "success":
            await tx.execute(
                update(tables.agents)
                .where(tables.agents.c.agent_id == agent_id)
                .values(state="deploy_failed", error=f"agent-deploy run {run.run_id}: {run.outcome}", updated_at=_now())
            )
            return
        await tx.commit()  # nothing is held while Databricks answers
        found = await self._version_of(agent, run.run_id)
        version = int(found.version or 0)
        gate = await self._gate(found)
        await self._record_version(tx, agent_id, version, run.run_id, "registered", gate.values())
        if gate.reason is not None:
            await self._reject(tx, agent, version, gate)
            return
        await tx.commit()
        state = await self.roll(agent, version)
        await self._record_version(tx, agent_id, version, run.run_id, "serving" if state.ready == "READY" else "failed")
        if state.config_update == "UPDATE_FAILED":
            raise PermanentError(f"endpoint {agent.endpoint_name} update to version {version} failed: {state.message}")
        await self.gw.set_alias(agent.model_name, SERVING_ALIAS, version)  # what the insights job runs
        await tx.execute(
            update(tables.versions)
            .where(tables.versions.c.agent_id == agent_id, tables.versions.c.version != version)
            .where(tables.versions.c.state == "serving")
            .values(state="retired", updated_at=_now())
        )
        await tx.execute(
            update(tables.agents)
            .where(tables.agents.c.agent_id == agent_id)
            .values(state="serving", error=None, updated_at=_now())
        )
        self._agents.pop(agent_id, None)

    async def _version_of(self, agent: Row[Any], run_id: str) -> catalog.ModelVersionInfo:
        """The version the run registered (its comment names the run), else the newest READY one."""
        found = [v for v in await self.gw.model_versions(agent.model_name) if v.status and v.status.value == "READY"]
        mine = [v for v in found if (v.comment or "") == f"agent-deploy run {run_id}"]
        chosen = mine or found
        if not chosen:
            raise TransientError(f"{agent.model_name} has no READY version yet")
        return max(chosen, key=lambda v: int(v.version or 0))

    async def _gate(self, version: catalog.ModelVersionInfo) -> Gate:
        """The version's MLflow run (its `run_id`) and whether its smoke test reached the accuracy threshold.
        A version registered without a run (by hand, or by an older deploy job) is not judged."""
        if not version.run_id:
            return Gate(None, None, None, None, None)
        try:
            mlflow_run = await self.gw.mlflow_run(version.run_id)
        except PermissionDenied as exc:  # fail closed: a run serving cannot read is not a passed smoke test
            return Gate(version.run_id, None, None, None, f"serving cannot read its MLflow run: {exc}"[:1000])
        if mlflow_run is None or mlflow_run.info is None:
            return Gate(version.run_id, None, None, None, f"its MLflow run {version.run_id} does not exist")
        metrics = {m.key: m.value for m in (mlflow_run.data.metrics if mlflow_run.data else None) or []}
        accuracy, p95 = metrics.get("answer_accuracy"), metrics.get("latency_p95_ms")
        gate = Gate(version.run_id, mlflow_run.info.experiment_id, accuracy, p95, None)
        status = mlflow_run.info.status.value if mlflow_run.info.status else None
        threshold = self.settings.min_answer_accuracy
        if status != "FINISHED":
            gate.reason = f"its MLflow run {version.run_id} is {status}, not FINISHED"
        elif accuracy is not None and accuracy < threshold:
            gate.reason = f"answer_accuracy {accuracy:.3f} is below the threshold {threshold:.3f}"
        return gate

    async def _reject(self, tx: AsyncConnection, agent: Row[Any], version: int, gate: Gate) -> None:
        """Not rolled out: the version is `rejected` with the reason; the endpoint keeps what it serves."""
        await tx.execute(
            update(tables.versions)
            .where(tables.versions.c.agent_id == agent.agent_id, tables.versions.c.version == version)
            .values(state="rejected", reason=gate.reason, updated_at=_now())
        )
        serving_now = (
            await tx.execute(
                select(tables.versions.c.version).where(
                    tables.versions.c.agent_id == agent.agent_id, tables.versions.c.state == "serving"
                )
            )
        ).first()
        error = f"version {version} not rolled out: {gate.reason} (MLflow run {gate.mlflow_run_id})"
        await tx.execute(
            update(tables.agents)
            .where(tables.agents.c.agent_id == agent.agent_id)
            .values(state="serving" if serving_now else "deploy_failed", error=error, updated_at=_now())
        )
        self._agents.pop(agent.agent_id, None)
        log.warning(
            "version_rejected",
            agent_id=agent.agent_id,
            version=version,
            reason=gate.reason,
            mlflow_run_id=gate.mlflow_run_id,
            still_serving=serving_now.version if serving_now else None,
        )

    async def _record_version(
        self,
        tx: AsyncConnection,
        agent_id: str,
        version: int,
        run_id: str,
        state: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        now = _now()
        await self._upsert(
            tx,
            tables.versions,
            {"agent_id": agent_id, "version": version},
            {"run_id": run_id, "state": state, **(extra or {}), "created_at": now, "updated_at": now},
            keep=("created_at",),
        )

    def run_url(self, experiment_id: str | None, mlflow_run_id: str | None) -> str | None:
        host = (self.settings.databricks_host or "").rstrip("/")
        if not (host and experiment_id and mlflow_run_id):
            return None
        return f"{host}/#mlflow/experiments/{experiment_id}/runs/{mlflow_run_id}"

    def agent_entity(self, agent: Row[Any], version: int, size: str | None = None) -> serving.ServedEntityInput:
        """A served entity of the agent's model: its config, the workspace URL and its principal's token."""
        scope = naming.secret_scope(agent.tenant_id)
        return serving.ServedEntityInput(
            name=f"v{version}",
            entity_name=agent.model_name,
            entity_version=str(version),
            workload_size=size or agent.workload_size,
            scale_to_zero_enabled=bool(agent.scale_to_zero),
            environment_vars={
                "DATABRICKS_HOST": self.settings.agent_workspace_url or self.settings.databricks_host or "",
                "DATABRICKS_TOKEN": f"{{{{secrets/{scope}/{_token_key(agent.agent_id)}}}}}",
                "APEV_AGENT_CONFIG": json.dumps(dict(agent.config), sort_keys=True),
                "APEV_AGENT_VERSION": str(version),
            },
        )

    async def roll(self, agent: Row[Any], version: int) -> EndpointState:
        """Serve `version` alone. Databricks (and the local workspace) keep the old config serving until the new
        one is READY and drain the old one's requests, so no invoke fails during the roll."""
        current = await self.gw.get_endpoint(agent.endpoint_name)
        serving_it = current is not None and [e["entity_version"] for e in current.served_entities] == [str(version)]
        if current is not None and serving_it and not current.updating:
            return current
        size = agent.workload_size
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.endpoints).where(tables.endpoints.c.name == agent.endpoint_name))
            ).first()
        if row is not None:
            size = row.workload_size
        entity = self.agent_entity(agent, version, size)
        routes = [serving.Route(served_model_name=f"v{version}", traffic_percentage=100)]
        return await self.apply(agent.tenant_id, agent.endpoint_name, [entity], routes, agent_id=agent.agent_id)

    # ================================================================ endpoints
    def _lock(self, name: str) -> asyncio.Lock:
        return self._endpoint_locks.setdefault(name, asyncio.Lock())

    async def apply(
        self,
        tenant_id: str,
        name: str,
        entities: list[serving.ServedEntityInput],
        routes: list[serving.Route],
        *,
        agent_id: str | None = None,
        progress: Callable[[EndpointState], Awaitable[None]] | None = None,
    ) -> EndpointState:
        """Create or update, then wait for the update to end (READY, or UPDATE_FAILED with the workspace's
        message), recording each state seen."""
        async with self._lock(name):
            await self._claim_endpoint(tenant_id, name, agent_id, entities, routes)
            current = await self.wait(name, quiet=True)
            tags = naming.job_tags(tenant_id, "adhoc", agent_id=agent_id)
            tags.pop("ap_kind")
            if current is None:
                await self.gw.create_endpoint(name, entities, routes, tags)
            else:
                await self.gw.update_endpoint(name, entities, routes)
            state = await self.wait(name, progress=progress)
            assert state is not None
            return state

    async def wait(
        self, name: str, *, quiet: bool = False, progress: Callable[[EndpointState], Awaitable[None]] | None = None
    ) -> EndpointState | None:
        deadline = time.monotonic() + self.settings.endpoint_wait_timeout_seconds
        seen = None
        while True:
            state = await self.gw.get_endpoint(name)
            if state is None:
                return None
            if (state.ready, state.config_update) != seen:
                seen = (state.ready, state.config_update)
                if not quiet:
                    log.info("endpoint_progress", endpoint=name, ready=state.ready, config_update=state.config_update)
                await self._record_state(state)
                if progress is not None:
                    await progress(state)
            if not state.updating:
                if state.config_update == "UPDATE_FAILED" and not quiet:
                    log.warning("endpoint_update_failed", endpoint=name, message=state.message)
                return state
            if time.monotonic() > deadline:
                raise TransientError(
                    f"endpoint {name} still updating after {self.settings.endpoint_wait_timeout_seconds} s"
                )
            await asyncio.sleep(self.settings.endpoint_poll_seconds)

    async def _claim_endpoint(
        self,
        tenant_id: str,
        name: str,
        agent_id: str | None,
        entities: list[serving.ServedEntityInput],
        routes: list[serving.Route],
    ) -> None:
        async with self.db.transaction() as tx:
            row = (await tx.execute(select(tables.endpoints).where(tables.endpoints.c.name == name))).first()
            if row is not None and row.tenant_id != tenant_id:
                raise Refused(403, "forbidden", f"endpoint {name!r} belongs to another tenant")
            values = {
                "served_entities": [e.as_dict() | {"environment_vars": None} for e in entities],
                "routes": [r.as_dict() for r in routes],
                "workload_size": entities[0].workload_size or "Small",
                "updated_at": _now(),
            }
            if row is None:
                await tx.execute(
                    tables.endpoints.insert().values(name=name, tenant_id=tenant_id, agent_id=agent_id, **values)
                )
            else:
                await tx.execute(update(tables.endpoints).where(tables.endpoints.c.name == name).values(**values))

    async def _record_state(self, state: EndpointState) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                update(tables.endpoints)
                .where(tables.endpoints.c.name == state.name)
                .values(
                    ready=state.ready,
                    config_update=state.config_update,
                    message=state.message if state.config_update == "UPDATE_FAILED" else None,
                    updated_at=_now(),
                )
            )

    async def endpoint_row(self, name: str) -> Row[Any] | None:
        async with self.db.engine.connect() as conn:
            return (await conn.execute(select(tables.endpoints).where(tables.endpoints.c.name == name))).first()

    # ================================================================ endpoint.scale.requested
    async def on_scale_requested(self, event: CloudEvent[EndpointScaleRequested], tx: AsyncConnection) -> None:
        req = event.data
        log.info("endpoint_scale_requested_received", event_id=event.id, endpoint=req.endpoint_name, rule=req.rule)
        row = (await tx.execute(select(tables.endpoints).where(tables.endpoints.c.name == req.endpoint_name))).first()
        if row is None:  # not an endpoint of ours (made by hand, or by another system): nothing to scale
            log.warning("scale_skipped_unknown_endpoint", event_id=event.id, endpoint=req.endpoint_name)
            return
        if row.tenant_id != req.tenant_id:
            raise PermanentError(f"endpoint {req.endpoint_name!r} belongs to another tenant than the request's")
        if row.scale_event_id != event.id:  # a redelivery of the request that claimed the step goes on below
            now = _now()
            last = _aware(row.last_scaled_at)
            if last is not None and now - last < timedelta(seconds=self.settings.scale_cooldown_seconds):
                log.info("scale_skipped_cooldown", endpoint=row.name, last_scaled_at=last.isoformat())
                return
            target = _step_up(row.workload_size, self.settings.scale_ceiling)
            if target is None:
                log.info("scale_skipped_ceiling", endpoint=row.name, size=row.workload_size)
                return
            claimed = await tx.execute(
                update(tables.endpoints)
                .where(
                    tables.endpoints.c.name == row.name,
                    tables.endpoints.c.scale_event_id.is_not_distinct_from(row.scale_event_id),
                )
                .values(
                    last_scaled_at=now, scale_event_id=event.id, scale_target=target, scale_count=row.scale_count + 1
                )
            )
            if not claimed.rowcount:
                raise TransientError(f"endpoint {row.name}: another scale request claimed it meanwhile")
            await tx.commit()  # the claim (and the cooldown) is durable before the call
        else:
            target = row.scale_target
        state = await self._resize(row, str(target), req.served_entity_name)
        await tx.execute(
            update(tables.endpoints)
            .where(tables.endpoints.c.name == row.name)
            .values(workload_size=target, updated_at=_now())
        )
        log.info(
            "endpoint_scaled", endpoint=row.name, size=target, ready=state.ready, config_update=state.config_update
        )

    async def _resize(self, row: Row[Any], size: str, only: str | None) -> EndpointState:
        async with self._lock(row.name):
            current = await self.wait(row.name, quiet=True)
            if current is None:
                raise PermanentError(f"endpoint {row.name} does not exist in the workspace")
            stored = {e["name"]: e for e in row.served_entities}
            entities = []
            for e in current.served_entities:
                raised = only is None or e["name"] == only
                entities.append(await self._entity_input(row, e, size if raised else e["workload_size"], stored))
            if all(
                e.workload_size == c["workload_size"] for e, c in zip(entities, current.served_entities, strict=True)
            ):
                return current
            routes = [
                serving.Route(served_model_name=r["served_entity_name"], traffic_percentage=r["traffic_percentage"])
                for r in current.routes
            ]
            await self.gw.update_endpoint(row.name, entities, routes)
            state = await self.wait(row.name)
            assert state is not None
            return state

    async def _entity_input(
        self, row: Row[Any], current: dict[str, Any], size: str, stored: dict[str, Any]
    ) -> serving.ServedEntityInput:
        if row.agent_id:
            agent = await self.agent(row.agent_id)
            if agent is not None and current["entity_name"] == agent.model_name:
                entity = self.agent_entity(agent, int(current["entity_version"]), size)
                entity.name = current["name"]
                return entity
        return serving.ServedEntityInput(
            name=current["name"],
            entity_name=current["entity_name"],
            entity_version=current["entity_version"],
            workload_size=size,
            scale_to_zero_enabled=bool(current["scale_to_zero_enabled"]),
        )

    # ================================================================ invoke
    async def cached_agent(self, agent_id: str) -> Row[Any] | None:
        row = self._agents.get(agent_id)
        if row is None:
            row = await self.agent(agent_id)
            if row is not None:
                self._agents[agent_id] = row
        return row

    def forget_tenant(self, tenant_id: str) -> int:
        """An offboarded tenant's agents leave this replica's cache (their invokes become 404)."""
        gone = [a for a, row in self._agents.items() if row.tenant_id == tenant_id]
        for a in gone:
            self._agents.pop(a, None)
        return len(gone)

    async def invoke(self, agent: Row[Any], record: dict[str, Any]) -> dict[str, Any]:
        tenant = agent.tenant_id
        limit = self.settings.concurrency_for(tenant)
        if not self._limiter.try_enter(tenant, limit):
            self.latency.invokes.labels(agent.endpoint_name, "throttled").inc()
            raise Refused(
                429,
                "too_many_requests",
                f"tenant {tenant} has {limit} invokes in flight on this replica (its limit); retry later",
                {"Retry-After": str(self.settings.retry_after_seconds)},
            )
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with asyncio.timeout(self.settings.invoke_timeout_seconds):
                entity, prediction = await self.gw.query(agent.endpoint_name, record)
            return {"agent_id": agent.agent_id, "served_entity": entity, "output": prediction}
        except TimeoutError:
            outcome = "timeout"
            raise Refused(
                504, "timeout", f"the agent did not answer within {self.settings.invoke_timeout_seconds} s"
            ) from None
        except NotFound:
            outcome = "not_deployed"
            raise Refused(
                409, "not_deployed", f"agent {agent.agent_id} has no endpoint yet (state {agent.state})"
            ) from None
        except DatabricksError as exc:
            outcome = "error"
            raise Refused(502, "model_error", str(exc)[:2000]) from None
        finally:
            self._limiter.leave(tenant)
            ms = (time.perf_counter() - started) * 1000
            if outcome != "not_deployed":
                self.latency.observe(tenant, agent.endpoint_name, ms, outcome)

    # ================================================================ latency samples
    async def publish_latency(self) -> int:
        samples = self.latency.cut()
        if not samples:
            return 0
        async with self.db.transaction() as tx:
            for s in samples:
                event = new_event(
                    s,
                    tenant_id=s.tenant_id,
                    source=SOURCE,
                    id=latency_sample_id(s.endpoint_name, s.replica_id, s.window_start),
                    subject=f"endpoints/{s.endpoint_name}",
                )
                await outbox.add(tx, event)
        return len(samples)

    async def latency_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.latency_window_seconds)
            try:
                await self.publish_latency()
            except Exception:
                log.warning("latency_publish_failed", exc_info=True)

    # ================================================================ rows
    async def _upsert(
        self, tx: AsyncConnection, table: Any, key: dict[str, Any], values: dict[str, Any], keep: tuple[str, ...] = ()
    ) -> None:
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        stmt = dialect.insert(table).values(**key, **values)
        changes = {k: v for k, v in values.items() if k not in keep}
        await tx.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=changes))


def _token_key(agent_id: str) -> str:
    return f"{naming.agent_principal(agent_id)}_token"


def _step_up(size: str, ceiling: str) -> str | None:
    order = list(WORKLOAD_SIZES)
    if size not in order:
        return None
    nxt = order.index(size) + 1
    if nxt >= len(order) or nxt > order.index(ceiling):
        return None
    return order[nxt]
