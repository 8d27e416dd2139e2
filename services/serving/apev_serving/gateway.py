"""Every Databricks call the serving service makes, through `DatabricksClients` (SDK only, worker threads).

Principals, grants, schemas, registered models, MLflow runs, secrets and workspace files for agents; serving endpoints
(create, update, get, query) for endpoints and invokes. Never the SDK's `*_and_wait` waiters (they sleep
seconds between polls): `ServingService` polls `get_endpoint` itself.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service import catalog, ml, serving, vectorsearch
from databricks.sdk.service import sql as dbsql
from databricks.sdk.service.workspace import ImportFormat
from prometheus_client import CollectorRegistry, Counter

from apev_runtime.databricks import DatabricksClients
from apev_runtime.errors import PermanentError, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class EndpointState:
    name: str
    ready: str | None
    config_update: str | None
    served_entities: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    message: str | None  # a failed entity's deployment message

    @property
    def updating(self) -> bool:
        return self.config_update == "IN_PROGRESS"


def _value(enum: Any) -> str | None:
    return None if enum is None else str(getattr(enum, "value", enum))


def endpoint_state(detail: serving.ServingEndpointDetailed) -> EndpointState:
    entities, message = [], None
    pending = detail.pending_config
    shown = detail.config
    for entity in (shown.served_entities if shown else None) or []:
        entities.append(
            {
                "name": entity.name,
                "entity_name": entity.entity_name,
                "entity_version": entity.entity_version,
                "workload_size": entity.workload_size,
                "scale_to_zero_enabled": bool(entity.scale_to_zero_enabled),
                "deployment": _value(entity.state.deployment) if entity.state else None,
            }
        )
    for entity in [
        *((pending.served_entities if pending else None) or []),
        *((shown.served_entities if shown else None) or []),
    ]:
        deployed = entity.state
        if deployed is not None and _value(deployed.deployment) == "DEPLOYMENT_FAILED":
            message = deployed.deployment_state_message or message
    routes = [
        {"served_entity_name": r.served_entity_name or r.served_model_name, "traffic_percentage": r.traffic_percentage}
        for r in ((shown.traffic_config.routes or []) if shown and shown.traffic_config else [])
    ]
    state = detail.state
    return EndpointState(
        name=str(detail.name),
        ready=_value(state.ready) if state else None,
        config_update=_value(state.config_update) if state else None,
        served_entities=entities,
        routes=routes,
        message=message,
    )


@dataclass(frozen=True)
class IndexState:
    name: str
    ready: bool
    message: str
    rows: int

    @property
    def settled(self) -> bool:
        """Ready, and the status message names no pending update or failure."""
        return self.ready and not any(s in self.message for s in ("TRIGGERED_UPDATE", "PROVISIONING", "FAILED"))


@dataclass(frozen=True)
class DeltaIndexSpec:
    name: str
    endpoint: str
    source_table: str
    primary_key: str
    text_column: str
    embedding_endpoint: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class StatementRequest:
    statement: str
    warehouse_id: str
    catalog: str
    schema: str
    parameters: list[tuple[str, str | None, str | None]]  # name, value, type
    row_limit: int
    byte_limit: int
    timeout_seconds: float


@dataclass(frozen=True)
class StatementResult:
    statement_id: str
    state: str  # SUCCEEDED, FAILED, CANCELED, CLOSED
    error: str | None
    columns: list[dict[str, Any]]
    rows: list[list[str | None]]
    truncated: bool


class StatementTimeout(Exception):
    """The statement did not end within its timeout; it was cancelled."""


def _run_statement(w: WorkspaceClient, req: StatementRequest) -> StatementResult:
    deadline = time.monotonic() + req.timeout_seconds
    wait = int(req.timeout_seconds)
    done = w.statement_execution.execute_statement(
        statement=req.statement,
        warehouse_id=req.warehouse_id,
        catalog=req.catalog,
        schema=req.schema,
        parameters=[dbsql.StatementParameterListItem(name=n, value=v, type=t) for n, v, t in req.parameters],
        row_limit=req.row_limit,
        byte_limit=req.byte_limit,
        disposition=dbsql.Disposition.INLINE,
        format=dbsql.Format.JSON_ARRAY,
        wait_timeout=f"{min(wait, 50)}s" if wait >= 5 else "0s",
        on_wait_timeout=dbsql.ExecuteStatementRequestOnWaitTimeout.CONTINUE,
    )
    sid = str(done.statement_id)
    while done.status and done.status.state in (dbsql.StatementState.PENDING, dbsql.StatementState.RUNNING):
        if time.monotonic() > deadline:
            with contextlib.suppress(Exception):
                w.statement_execution.cancel_execution(sid)
            raise StatementTimeout(sid)
        time.sleep(0.02)
        done = w.statement_execution.get_statement(sid)
    state = done.status.state.value if done.status and done.status.state else "UNKNOWN"
    if state != "SUCCEEDED":
        error = done.status.error.message if done.status and done.status.error else None
        return StatementResult(sid, state, error, [], [], False)
    manifest = done.manifest
    columns = [c.as_dict() for c in (manifest.schema.columns or [])] if manifest and manifest.schema else []
    rows: list[list[str | None]] = []
    chunk = done.result
    while chunk is not None:
        rows += [list(r) for r in chunk.data_array or []]
        nxt = chunk.next_chunk_index
        chunk = w.statement_execution.get_statement_result_chunk_n(sid, nxt) if nxt is not None else None
    return StatementResult(sid, state, None, columns, rows, bool(manifest and manifest.truncated))


class Gateway:
    def __init__(self, clients: DatabricksClients, registry: CollectorRegistry) -> None:
        self.clients = clients
        self.calls = Counter(
            "apev_serving_databricks_calls_total",
            "Databricks SDK calls by endpoint and status (after the SDK's own retries)",
            ["endpoint", "status"],
            registry=registry,
        )

    async def _call(self, endpoint: str, fn: Callable[[WorkspaceClient], T], *, token: str | None = None) -> T:
        try:
            result = await self.clients.call(fn, token=token)
        except BaseException as exc:
            self.calls.labels(endpoint, type(exc).__name__).inc()
            raise
        self.calls.labels(endpoint, "ok").inc()
        return result

    # ---------------------------------------------------------------- principals and grants
    async def service_principal(self, display_name: str) -> str:
        """Application id of the service principal with this display name, created when missing."""

        def get_or_create(w: WorkspaceClient) -> str:
            for sp in w.service_principals.list(filter=f'displayName eq "{display_name}"'):
                if sp.display_name == display_name and sp.application_id:
                    return sp.application_id
            return str(w.service_principals.create(display_name=display_name).application_id)

        return await self._call("scim/ServicePrincipals", get_or_create)

    async def principal_id(self, display_name: str) -> str | None:
        """Application id of an existing service principal (None when there is none by that name)."""

        def find(w: WorkspaceClient) -> str | None:
            for sp in w.service_principals.list(filter=f'displayName eq "{display_name}"'):
                if sp.display_name == display_name and sp.application_id:
                    return sp.application_id
            return None

        return await self._call("scim/ServicePrincipals", find)

    async def token_for(self, application_id: str, lifetime_seconds: int) -> str:
        made = await self._call(
            "token-management/on-behalf-of",
            lambda w: w.token_management.create_obo_token(
                application_id=application_id, lifetime_seconds=lifetime_seconds, comment="apev serving agent"
            ),
        )
        return str(made.token_value)

    async def grant(self, kind: str, full_name: str, principal: str, privileges: list[str]) -> None:
        change = catalog.PermissionsChange(principal=principal, add=[catalog.Privilege(p) for p in privileges])
        await self._call("unity-catalog/permissions", lambda w: w.grants.update(kind, full_name, changes=[change]))

    async def table_exists(self, full_name: str) -> bool:
        def exists(w: WorkspaceClient) -> bool:
            try:
                w.tables.get(full_name)
            except NotFound:
                return False
            return True

        return await self._call("unity-catalog/tables/get", exists)

    # ---------------------------------------------------------------- vector search (the tenants' document indexes)
    async def ensure_vector_endpoint(self, name: str) -> None:
        def make(w: WorkspaceClient) -> None:
            try:
                w.vector_search_endpoints.get_endpoint(name)
            except NotFound:
                with contextlib.suppress(ResourceAlreadyExists):
                    w.vector_search_endpoints.create_endpoint(
                        name=name, endpoint_type=vectorsearch.EndpointType.STANDARD
                    )

        await self._call("vector-search/endpoints", make)

    async def vector_index(self, name: str) -> IndexState | None:
        def get(w: WorkspaceClient) -> IndexState | None:
            try:
                index = w.vector_search_indexes.get_index(name)
            except NotFound:
                return None
            status = index.status or vectorsearch.VectorIndexStatus()
            return IndexState(name, bool(status.ready), status.message or "", int(status.indexed_row_count or 0))

        return await self._call("vector-search/indexes/get", get)

    async def create_delta_index(self, spec: DeltaIndexSpec) -> bool:
        """Create the Delta Sync index (its first sync starts by itself); False when it exists already."""
        sync = vectorsearch.DeltaSyncVectorIndexSpecRequest(
            source_table=spec.source_table,
            pipeline_type=vectorsearch.PipelineType.TRIGGERED,
            columns_to_sync=list(spec.columns),
            embedding_source_columns=[
                vectorsearch.EmbeddingSourceColumn(
                    name=spec.text_column, embedding_model_endpoint_name=spec.embedding_endpoint
                )
            ],
        )

        def make(w: WorkspaceClient) -> bool:
            try:
                w.vector_search_indexes.create_index(
                    name=spec.name,
                    endpoint_name=spec.endpoint,
                    primary_key=spec.primary_key,
                    index_type=vectorsearch.VectorIndexType.DELTA_SYNC,
                    delta_sync_index_spec=sync,
                )
            except ResourceAlreadyExists:
                return False
            return True

        return await self._call("vector-search/indexes/create", make)

    async def sync_index(self, name: str) -> None:
        await self._call("vector-search/indexes/sync", lambda w: w.vector_search_indexes.sync_index(name))

    async def ensure_schema(self, catalog_name: str, schema: str) -> None:
        def make(w: WorkspaceClient) -> None:
            with contextlib.suppress(ResourceAlreadyExists):
                w.schemas.create(name=schema, catalog_name=catalog_name)

        await self._call("unity-catalog/schemas", make)

    async def ensure_model(self, full_name: str, owner: str) -> None:
        """The agent's registered model, owned by its principal (which registers versions in its deploy job)."""

        def make(w: WorkspaceClient) -> None:
            cat, schema, name = full_name.split(".")
            try:
                w.registered_models.get(full_name)
            except NotFound:
                w.registered_models.create(catalog_name=cat, schema_name=schema, name=name)
            w.registered_models.update(full_name, owner=owner)

        await self._call("unity-catalog/models", make)

    async def model_versions(self, full_name: str) -> list[catalog.ModelVersionInfo]:
        return await self._call("unity-catalog/models/versions", lambda w: list(w.model_versions.list(full_name)))

    async def set_alias(self, full_name: str, alias: str, version: int) -> None:
        await self._call(
            "unity-catalog/models/aliases",
            lambda w: w.registered_models.set_alias(full_name, alias, version),
        )

    async def mlflow_run(self, run_id: str) -> ml.Run | None:
        """The MLflow run (tracking API, `w.experiments`); None when there is no such run."""

        def get(w: WorkspaceClient) -> ml.Run | None:
            try:
                return w.experiments.get_run(run_id).run
            except NotFound:
                return None

        return await self._call("mlflow/runs/get", get)

    async def put_secret(self, scope: str, key: str, value: str) -> None:
        def put(w: WorkspaceClient) -> None:
            with contextlib.suppress(ResourceAlreadyExists):
                w.secrets.create_scope(scope=scope)
            w.secrets.put_secret(scope=scope, key=key, string_value=value)

        await self._call("secrets/put", put)

    async def upload(self, path: str, content: str) -> None:
        def put(w: WorkspaceClient) -> None:
            w.workspace.mkdirs(path.rsplit("/", 1)[0])
            w.workspace.import_(
                path=path,
                content=base64.b64encode(content.encode()).decode(),
                format=ImportFormat.AUTO,
                overwrite=True,
            )

        await self._call("workspace/import", put)

    async def sql(self, statement: str, warehouse_id: str | None) -> list[list[str | None]]:
        """A statement as the service (DDL for the insights table); FAILED statements raise."""

        def run(w: WorkspaceClient) -> list[list[str | None]]:
            wh = warehouse_id or str(next(iter(w.warehouses.list())).id)
            done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")
            while done.status and done.status.state in (dbsql.StatementState.PENDING, dbsql.StatementState.RUNNING):
                time.sleep(0.05)
                done = w.statement_execution.get_statement(str(done.statement_id))
            if done.status is None or done.status.state != dbsql.StatementState.SUCCEEDED:
                error = done.status.error.message if done.status and done.status.error else "no status"
                raise PermanentError(f"statement failed: {error}")
            rows: list[list[str | None]] = [list(r) for r in done.result.data_array or []] if done.result else []
            return rows

        return await self._call("sql/statements", run)

    async def warehouse(self, configured: str | None) -> str:
        """`DATABRICKS_WAREHOUSE_ID`, or else the first running warehouse (§8), else the first one."""
        if configured:
            return configured

        def first(w: WorkspaceClient) -> str:
            found = list(w.warehouses.list())
            if not found:
                raise PermanentError("the workspace has no SQL warehouse (set DATABRICKS_WAREHOUSE_ID)")
            running = [x for x in found if x.state and x.state.value == "RUNNING"]
            return str((running or found)[0].id)

        return await self._call("sql/warehouses", first)

    async def statement(self, token: str, request: StatementRequest) -> StatementResult:
        """One statement as the principal of `token`, parameters bound as `:name` markers; polls until it ends or
        `request.timeout_seconds` pass (then cancels it and raises `StatementTimeout`), then reads every chunk."""
        return await self._call("sql/statements", lambda w: _run_statement(w, request), token=token)

    # ---------------------------------------------------------------- serving endpoints
    async def get_endpoint(self, name: str) -> EndpointState | None:
        def get(w: WorkspaceClient) -> EndpointState | None:
            try:
                return endpoint_state(w.serving_endpoints.get(name))
            except NotFound:
                return None

        return await self._call("serving-endpoints/get", get)

    async def create_endpoint(
        self, name: str, entities: list[serving.ServedEntityInput], routes: list[serving.Route], tags: dict[str, str]
    ) -> None:
        config = serving.EndpointCoreConfigInput(
            name=name, served_entities=entities, traffic_config=serving.TrafficConfig(routes=routes)
        )
        await self._call(
            "serving-endpoints/create",
            lambda w: w.serving_endpoints.create(
                name=name, config=config, tags=[serving.EndpointTag(key=k, value=v) for k, v in tags.items()]
            ),
        )

    async def update_endpoint(
        self, name: str, entities: list[serving.ServedEntityInput], routes: list[serving.Route]
    ) -> None:
        def update(w: WorkspaceClient) -> None:
            from databricks.sdk.errors import ResourceConflict

            try:
                w.serving_endpoints.update_config(
                    name, served_entities=entities, traffic_config=serving.TrafficConfig(routes=routes)
                )
            except ResourceConflict as exc:  # an update is in progress: retry once it is done
                raise TransientError(str(exc)) from None

        await self._call("serving-endpoints/config", update)

    async def query(self, name: str, record: dict[str, Any]) -> tuple[str | None, Any]:
        """One invocation with one dataframe record; (served entity, its prediction)."""
        answer = await self._call(
            "serving-endpoints/invocations", lambda w: w.serving_endpoints.query(name, dataframe_records=[record])
        )
        predictions = answer.predictions or [None]
        return answer.served_model_name, predictions[0]
