"""The serving service's HTTP side (JWT, tenant-scoped): agents, serving endpoints, invoke, tenant SQL. Health and
metrics are the runtime's. Errors are JSON naming the field; another tenant's agent or endpoint is 403."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import structlog
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.service import serving
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_contracts import naming
from apev_contracts.common import Schedule
from apev_runtime.auth import AuthError, JwtVerifier, Principal, auth_error_response
from apev_serving.gateway import EndpointState
from apev_serving.service import AgentBody, Refused, ServingService
from apev_serving.settings import WORKLOAD_SIZES
from apev_serving.sql import Parameter, QueryRequest, SqlQueries
from apev_serving.sqlguard import Refusal

log = structlog.get_logger("apev.serving.api")

WRITE_ROLES = {"admin", "engineer"}
READ_ROLES = {"admin", "engineer", "analyst", "agent"}
INVOKE_ROLES = {"admin", "engineer", "analyst", "agent"}

Endpoint = Callable[[Request], Awaitable[Response]]


class AgentRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    tenant_id: str | None = None
    agent_id: str | None = None
    name: str = pydantic.Field(min_length=1, max_length=200)
    model_source: str = pydantic.Field(pattern=r"^/[^\s\x00]+$", max_length=1024)
    """Workspace (or /Volumes) path of the model's Python file exposing predict(inputs) -> dict."""
    tables: list[str] = pydantic.Field(min_length=1, max_length=100)
    insights_schedule: Schedule | None = None
    chat_endpoint: str | None = pydantic.Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    workload_size: str | None = None
    scale_to_zero: bool = True


class VersionRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    model_source: str = pydantic.Field(pattern=r"^/[^\s\x00]+$", max_length=1024)


class InvokeRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    class Input(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        query: str = pydantic.Field(min_length=1, max_length=4000)
        context: dict[str, Any] = pydantic.Field(default_factory=dict)

    input: Input


class EntityRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str | None = pydantic.Field(None, pattern=r"^[A-Za-z0-9_-]{1,63}$")
    entity_name: str | None = None
    """A registered model of the tenant's catalog; omitted with `agent_id`: the agent's model."""
    entity_version: str = pydantic.Field(pattern=r"^[0-9]+$")
    workload_size: str = "Small"
    scale_to_zero_enabled: bool = False


class RouteRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    served_entity_name: str
    traffic_percentage: int = pydantic.Field(ge=0, le=100)


class EndpointRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str | None = pydantic.Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    agent_id: str | None = None
    served_entities: list[EntityRequest] = pydantic.Field(min_length=1, max_length=15)
    traffic: list[RouteRequest] | None = None


class SqlParameterRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(min_length=1, max_length=64)
    value: str | int | float | bool | None = None
    type: str | None = pydantic.Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?$")
    """A Databricks type the value is cast to (STRING when omitted): INT, BIGINT, DECIMAL(18,2), DATE, ..."""


class SqlQueryRequest(pydantic.BaseModel):
    """The seed's request shape (`catalog`, `schema`, `statement`) plus `parameters`, paging and a timeout."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)
    catalog: str | None = None
    schema_name: str = pydantic.Field("gold", alias="schema", max_length=255)
    statement: str | None = None
    parameters: list[SqlParameterRequest] | dict[str, str | int | float | bool | None] = pydantic.Field(
        default_factory=list
    )
    cursor: str | None = pydantic.Field(None, max_length=2000)
    """`next_cursor` of an earlier answer: the next page of that result (the other fields are ignored)."""
    page_rows: int | None = pydantic.Field(None, ge=1)
    timeout_seconds: float | None = pydantic.Field(None, gt=0)

    def bound(self) -> tuple[Parameter, ...]:
        items = (
            [SqlParameterRequest(name=k, value=v) for k, v in self.parameters.items()]
            if isinstance(self.parameters, dict)
            else self.parameters
        )
        return tuple(Parameter(p.name, _text(p.value), p.type.upper() if p.type else None) for p in items)


def _text(value: str | int | float | bool | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _invalid(exc: pydantic.ValidationError) -> JSONResponse:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return _error(422, "invalid_request", fields)


def _state_body(state: EndpointState) -> dict[str, Any]:
    return {
        "name": state.name,
        "ready": state.ready,
        "config_update": state.config_update,
        "message": state.message,
        "served_entities": state.served_entities,
        "traffic": state.routes,
    }


def routes(service: ServingService, sql: SqlQueries, verifier: JwtVerifier | None) -> list[BaseRoute]:
    def guarded(roles: set[str]) -> Callable[[Callable[[Request, Principal], Awaitable[Response]]], Endpoint]:
        def decorate(fn: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                try:
                    if verifier is None:
                        raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
                    principal = verifier.verify(request.headers.get("authorization"))
                    principal.require(roles=roles)
                    return await fn(request, principal)
                except AuthError as err:
                    return auth_error_response(err)
                except pydantic.ValidationError as exc:
                    return _invalid(exc)
                except Refused as exc:
                    return _error(exc.status, exc.error, exc.detail, exc.headers)
                except Refusal as exc:
                    return JSONResponse(
                        {"error": exc.error, "detail": exc.detail, "reference": exc.reference}, status_code=exc.status
                    )
                except DatabricksError as exc:
                    log.warning("databricks_refused", error=str(exc))
                    return _error(502, "databricks_error", f"{type(exc).__name__}: {exc}")

            endpoint.__doc__ = fn.__doc__
            return endpoint

        return decorate

    async def body_of(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise Refused(400, "bad_request", f"body is not JSON: {exc}") from None

    async def own_agent(principal: Principal, agent_id: str) -> Any:
        agent = await service.cached_agent(agent_id)
        if agent is None:
            raise Refused(404, "not_found", f"agent {agent_id!r} is unknown")
        if agent.tenant_id != principal.tenant_id:
            raise AuthError(
                403, f"agent {agent_id!r} belongs to another tenant than the token's ({principal.tenant_id!r})"
            )
        return agent

    @guarded(WRITE_ROLES)
    async def post_agent(request: Request, principal: Principal) -> Response:
        """Register an agent: its principal and grants, then its deploy and insights jobs (202)."""
        body = AgentRequest.model_validate(await body_of(request))
        if body.tenant_id is not None and body.tenant_id != principal.tenant_id:
            raise AuthError(403, f"tenant_id {body.tenant_id!r} is not the token's tenant")
        created = await service.register_agent(
            principal.tenant_id,
            AgentBody(
                name=body.name,
                model_source=body.model_source,
                tables=body.tables,
                agent_id=body.agent_id,
                chat_endpoint=body.chat_endpoint,
                schedule=body.insights_schedule.model_dump(mode="json") if body.insights_schedule else None,
                workload_size=body.workload_size,
                scale_to_zero=body.scale_to_zero,
            ),
        )
        return JSONResponse({**created, "status_url": f"/api/v1/agents/{created['agent_id']}"}, status_code=202)

    @guarded(READ_ROLES)
    async def get_agent(request: Request, principal: Principal) -> Response:
        """Versions, endpoint state, traffic split and recent latency of one agent."""
        agent = await own_agent(principal, request.path_params["agent_id"])
        return JSONResponse(await service.describe(await service.agent(agent.agent_id) or agent))

    @guarded(READ_ROLES)
    async def list_agents(request: Request, principal: Principal) -> Response:
        """The token's tenant's agents, each as `GET /api/v1/agents/{id}` describes it."""
        rows = await service.agents_of(principal.tenant_id)
        return JSONResponse({"agents": [await service.describe(r) for r in rows]})

    @guarded(WRITE_ROLES)
    async def post_version(request: Request, principal: Principal) -> Response:
        """Deploy a new version of an agent from a model source file (its deploy job runs; the roll follows)."""
        agent = await own_agent(principal, request.path_params["agent_id"])
        body = VersionRequest.model_validate(await body_of(request))
        request_id = await service.deploy_version(agent, body.model_source)
        return JSONResponse({"agent_id": agent.agent_id, "deploy_request_id": request_id}, status_code=202)

    @guarded(INVOKE_ROLES)
    async def invoke(request: Request, principal: Principal) -> Response:
        """`{"input": {"query": ..., "context": {...}}}` -> the agent's answer (429 over the tenant's limit)."""
        agent = await own_agent(principal, request.path_params["agent_id"])
        body = InvokeRequest.model_validate(await body_of(request))
        return JSONResponse(await service.invoke(agent, body.input.model_dump()))

    @guarded(WRITE_ROLES)
    async def post_endpoint(request: Request, principal: Principal) -> Response:
        """Create or update a serving endpoint (served entities, sizes, scale to zero, A/B traffic split); answers
        once the update ended: READY (200, with the states seen) or UPDATE_FAILED (502, the workspace's message)."""
        body = EndpointRequest.model_validate(await body_of(request))
        tenant = principal.tenant_id
        agent = await own_agent(principal, body.agent_id) if body.agent_id else None
        name = body.name or (agent.endpoint_name if agent is not None else None)
        if name is None:
            raise Refused(422, "invalid_request", "name: required unless agent_id names the agent whose endpoint it is")
        catalog = naming.catalog_name(tenant)
        entities = []
        for e in body.served_entities:
            if e.workload_size not in WORKLOAD_SIZES:
                raise Refused(
                    422, "invalid_request", f"workload_size {e.workload_size!r} not in {list(WORKLOAD_SIZES)}"
                )
            if agent is not None and e.entity_name in (None, agent.model_name):
                entity = service.agent_entity(agent, int(e.entity_version), e.workload_size)
                entity.scale_to_zero_enabled = e.scale_to_zero_enabled
                entity.name = e.name or entity.name
            else:
                if not e.entity_name or not e.entity_name.startswith(catalog + "."):
                    raise AuthError(
                        403, f"served entity {e.entity_name!r} is not a model of the tenant's catalog {catalog}"
                    )
                entity = serving.ServedEntityInput(
                    name=e.name,
                    entity_name=e.entity_name,
                    entity_version=e.entity_version,
                    workload_size=e.workload_size,
                    scale_to_zero_enabled=e.scale_to_zero_enabled,
                )
            entities.append(entity)
        names = [x.name or f"{str(x.entity_name).rsplit('.', 1)[-1]}-{x.entity_version}" for x in entities]
        for x, n in zip(entities, names, strict=True):
            x.name = n
        routes_in = body.traffic or [RouteRequest(served_entity_name=names[0], traffic_percentage=100)]
        route_list = [
            serving.Route(served_model_name=r.served_entity_name, traffic_percentage=r.traffic_percentage)
            for r in routes_in
        ]
        progress: list[dict[str, Any]] = []

        async def seen(state: EndpointState) -> None:
            progress.append({"ready": state.ready, "config_update": state.config_update})

        state = await service.apply(tenant, name, entities, route_list, agent_id=body.agent_id, progress=seen)
        out = {**_state_body(state), "progress": progress}
        if state.config_update == "UPDATE_FAILED":
            return JSONResponse({"error": "update_failed", "detail": state.message, "endpoint": out}, status_code=502)
        return JSONResponse(out)

    @guarded(READ_ROLES)
    async def get_endpoint(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        row = await service.endpoint_row(name)
        if row is None:
            raise Refused(404, "not_found", f"endpoint {name!r} is not one this service manages")
        if row.tenant_id != principal.tenant_id:
            raise AuthError(403, f"endpoint {name!r} belongs to another tenant than the token's")
        state = await service.gw.get_endpoint(name)
        body = _state_body(state) if state else {"name": name, "ready": row.ready, "config_update": row.config_update}
        scaled = row.last_scaled_at.isoformat() if row.last_scaled_at else None
        extra = {"workload_size": row.workload_size, "scale_count": row.scale_count, "last_scaled_at": scaled}
        return JSONResponse({**body, **extra})

    @guarded(READ_ROLES)
    async def sql_query(request: Request, principal: Principal) -> Response:
        """Tenant SQL: refused (403, naming the reference) when it reaches outside the tenant's catalog or is not a
        read; otherwise run as the tenant's reader principal with bound parameters; a page and a cursor."""
        body = SqlQueryRequest.model_validate(await body_of(request))
        if body.cursor is not None:
            return JSONResponse(await sql.page(principal.tenant_id, body.cursor, body.page_rows))
        if not body.statement or not body.statement.strip():
            raise Refused(422, "invalid_request", "statement: required (or a cursor)")
        query = QueryRequest(
            statement=body.statement,
            catalog=body.catalog,
            schema=body.schema_name,
            parameters=body.bound(),
            page_rows=body.page_rows,
            timeout_seconds=body.timeout_seconds,
        )
        return JSONResponse(await sql.query(principal.tenant_id, query))

    return [
        Route("/api/v1/databricks/sql/query", sql_query, methods=["POST"]),
        Route("/api/v1/agents", post_agent, methods=["POST"]),
        Route("/api/v1/agents", list_agents, methods=["GET"]),
        Route("/api/v1/agents/{agent_id:str}", get_agent, methods=["GET"]),
        Route("/api/v1/agents/{agent_id:str}/versions", post_version, methods=["POST"]),
        Route("/api/v1/agents/{agent_id:str}/invoke", invoke, methods=["POST"]),
        Route("/api/v1/databricks/serving-endpoints", post_endpoint, methods=["POST"]),
        Route("/api/v1/databricks/serving-endpoints/{name:str}", get_endpoint, methods=["GET"]),
    ]
