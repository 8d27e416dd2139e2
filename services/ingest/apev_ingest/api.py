"""The ingest service's HTTP side: the seed's Unity Catalog routes and data source status (JWT, tenant-scoped),
and the MCP webhook receiver (HMAC-signed, replay-protected). Health and metrics are the runtime's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import pydantic
import structlog
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.errors.base import DatabricksError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_contracts import naming
from apev_contracts.common import Identifier, Name
from apev_contracts.events.lifecycle import EmployeeId, VolumePath
from apev_ingest import gateway as gw
from apev_ingest import overview
from apev_ingest.service import IngestService
from apev_runtime.auth import AuthError, JwtVerifier, Principal, auth_error_response
from apev_runtime.errors import PermanentError
from apev_runtime.mcp import WebhookVerificationError, WebhookVerifier

log = structlog.get_logger("apev.ingest.api")

API = "/api/v1/databricks"
ADMIN = {"admin"}
WRITE_ROLES = {"admin", "engineer"}
READ_ROLES = {"admin", "engineer", "analyst", "agent"}
MAX_PAGE = 100

Endpoint = Callable[[Request], Awaitable[Response]]


class CatalogBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: Identifier
    comment: str | None = pydantic.Field(None, max_length=1000)


class ErasureBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    employee_id: EmployeeId


class RotationBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    kind: Literal["mcp_api_key", "sp_secret"] = "mcp_api_key"


class OffboardingBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    export_volume: VolumePath | None = None
    reason: Name | None = None


M = TypeVar("M", bound=pydantic.BaseModel)


async def _parsed(request: Request, model: type[M]) -> M | JSONResponse:
    """The body as `model` (an empty body: the model's defaults), or a 422 naming each bad field."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw) if raw.strip() else model()
    except pydantic.ValidationError as exc:
        fields = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                  for e in exc.errors(include_url=False, include_input=False)]  # fmt: skip
        return _error(422, "invalid_request", fields)


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


async def _body(request: Request) -> CatalogBody | JSONResponse:
    try:
        return CatalogBody.model_validate_json(await request.body())
    except pydantic.ValidationError as exc:
        fields = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                  for e in exc.errors(include_url=False, include_input=False)]  # fmt: skip
        return _error(422, "invalid_request", fields)


def routes(service: IngestService, jwt: JwtVerifier | None, webhook: WebhookVerifier | None) -> list[BaseRoute]:
    def guard(roles: set[str]) -> Callable[[Callable[[Request, Principal], Awaitable[Response]]], Endpoint]:
        def decorate(fn: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                try:
                    if jwt is None:
                        raise AuthError(401, "this service has no JWT key configured: every API call is refused")
                    principal = jwt.verify(request.headers.get("authorization"))
                    principal.require(roles=roles)
                except AuthError as err:
                    return auth_error_response(err)
                return await fn(request, principal)

            return endpoint

        return decorate

    def own_catalog(principal: Principal, name: str) -> JSONResponse | None:
        own = naming.catalog_name(principal.tenant_id)
        if name != own:
            return _error(403, "forbidden", f"tenant {principal.tenant_id!r} may use only its catalog {own!r}")
        return None

    async def databricks(call: Callable[[Any], bool]) -> bool | JSONResponse:
        try:
            return await service.databricks.call(call)
        except DatabricksError as exc:
            status = 403 if isinstance(exc, PermissionDenied) else 404 if isinstance(exc, NotFound) else 502
            return _error(status, "databricks_error", str(exc)[:500])

    @guard(ADMIN)
    async def create_catalog(request: Request, principal: Principal) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        if refused := own_catalog(principal, body.name):
            return refused
        comment = body.comment or f"AgentProvision tenant {principal.tenant_id}"
        created = await databricks(lambda w: gw.ensure_catalog(w, body.name, comment))
        if isinstance(created, JSONResponse):
            return created
        return JSONResponse({"name": body.name, "created": created}, status_code=201 if created else 200)

    @guard(WRITE_ROLES)
    async def create_schema(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        if refused := own_catalog(principal, name):
            return refused
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        created = await databricks(lambda w: gw.ensure_schema(w, name, body.name, body.comment))
        if isinstance(created, JSONResponse):
            return created
        full = f"{name}.{body.name}"
        return JSONResponse({"full_name": full, "created": created}, status_code=201 if created else 200)

    @guard(READ_ROLES)
    async def get_datasource(request: Request, principal: Principal) -> Response:
        found = await service.datasource(principal.tenant_id, request.path_params["id"])
        if found is None:  # another tenant's data source is not found either
            return _error(404, "not_found", f"no data source {request.path_params['id']!r} for this tenant")
        return JSONResponse(found)

    @guard(READ_ROLES)
    async def list_datasources(request: Request, principal: Principal) -> Response:
        tenant = request.query_params.get("tenant", principal.tenant_id)
        try:
            principal.require(tenant_id=naming.normalize_tenant_id(tenant))
            limit = int(request.query_params.get("limit", "20"))
        except AuthError as err:
            return auth_error_response(err)
        except ValueError:
            return _error(422, "invalid_request", [{"field": "limit", "message": "must be an integer"}])
        if not 1 <= limit <= MAX_PAGE:
            return _error(422, "invalid_request", [{"field": "limit", "message": f"must be 1..{MAX_PAGE}"}])
        page, cursor = await service.datasources(
            principal.tenant_id, limit=limit, cursor=request.query_params.get("cursor")
        )
        return JSONResponse({"datasources": page, "next_cursor": cursor})

    @guard(ADMIN)
    async def request_erasure(request: Request, principal: Principal) -> Response:
        try:
            body = ErasureBody.model_validate_json(await request.body())
        except pydantic.ValidationError as exc:
            fields = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                      for e in exc.errors(include_url=False, include_input=False)]  # fmt: skip
            return _error(422, "invalid_request", fields)
        request_id = await service.erasure.request(principal.tenant_id, body.employee_id, principal.subject)
        url = f"/api/v1/erasures/{request_id}"
        return JSONResponse({"request_id": request_id, "state": "requested", "progress": url}, status_code=202)

    @guard(ADMIN)
    async def get_erasure(request: Request, principal: Principal) -> Response:
        found = await service.erasure.record(request.path_params["id"], principal.tenant_id)
        if found is None:  # another tenant's request is not found either
            return _error(404, "not_found", f"no erasure request {request.path_params['id']!r} for this tenant")
        return JSONResponse(found)

    @guard(ADMIN)
    async def request_rotation(request: Request, principal: Principal) -> Response:
        body = await _parsed(request, RotationBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            request_id = await service.rotation.request(principal.tenant_id, body.kind)
        except PermanentError as exc:
            return _error(409, "conflict", str(exc))
        found = await service.rotation.rotation(request_id, principal.tenant_id)
        url = f"/api/v1/credentials/rotations/{request_id}"
        return JSONResponse({**(found or {}), "progress": url}, status_code=202)

    @guard(ADMIN)
    async def get_rotation(request: Request, principal: Principal) -> Response:
        found = await service.rotation.rotation(request.path_params["id"], principal.tenant_id)
        if found is None:
            return _error(404, "not_found", f"no rotation {request.path_params['id']!r} for this tenant")
        return JSONResponse(found)

    @guard(ADMIN)
    async def list_credentials(request: Request, principal: Principal) -> Response:
        return JSONResponse({"credentials": await service.rotation.credentials(principal.tenant_id)})

    @guard(ADMIN)
    async def request_offboarding(request: Request, principal: Principal) -> Response:
        if refused := own_tenant(principal, request.path_params["tenant"]):
            return refused
        body = await _parsed(request, OffboardingBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            request_id = await service.lifecycle.request_offboarding(
                principal.tenant_id, body.reason or f"requested by {principal.subject}", body.export_volume
            )
        except PermanentError as exc:
            return _error(422, "invalid_request", [{"field": "export_volume", "message": str(exc)}])
        url = f"/api/v1/tenants/{principal.tenant_id}/offboarding/{request_id}"
        return JSONResponse({"request_id": request_id, "state": "requested", "progress": url}, status_code=202)

    @guard(ADMIN)
    async def get_offboarding(request: Request, principal: Principal) -> Response:
        if refused := own_tenant(principal, request.path_params["tenant"]):
            return refused
        return JSONResponse(await service.lifecycle.offboarding(principal.tenant_id, request.path_params["id"]))

    @guard(ADMIN)
    async def list_tenants(request: Request, principal: Principal) -> Response:
        """Every tenant with data sources (a platform view: admin only)."""
        return JSONResponse({"tenants": await overview.tenants(service)})

    @guard(READ_ROLES)
    async def tenant_tables(request: Request, principal: Principal) -> Response:
        """The path's tenant's bronze/silver/gold tables and their row counts."""
        if refused := own_tenant(principal, request.path_params["tenant"]):
            return refused
        try:
            return JSONResponse(await overview.table_counts(service, principal.tenant_id))
        except DatabricksError as exc:
            return _error(502, "databricks_error", str(exc)[:500])

    def own_tenant(principal: Principal, tenant: str) -> Response | None:
        try:
            principal.require(tenant_id=naming.normalize_tenant_id(tenant))
        except (AuthError, ValueError) as err:
            return auth_error_response(err) if isinstance(err, AuthError) else _error(404, "not_found", str(err))
        return None

    async def mcp_webhook(request: Request) -> Response:
        body = await request.body()
        if webhook is None:
            service.metrics.webhooks.labels("?", "refused").inc()
            return _error(401, "unauthenticated", "no MCP webhook secret is configured")
        try:
            hook = webhook.verify(dict(request.headers), body)
        except WebhookVerificationError as exc:
            service.metrics.webhooks.labels("?", exc.reason).inc()
            log.warning("mcp_webhook_refused", reason=exc.reason)
            return _error(401, "unauthenticated", f"{exc.reason}: {exc}")
        outcome = await service.on_mcp_webhook(hook)
        service.metrics.webhooks.labels(hook.type, outcome).inc()
        return JSONResponse({"id": hook.id, "outcome": outcome})

    return [
        Route(f"{API}/catalogs", create_catalog, methods=["POST"]),
        Route(f"{API}/catalogs/{{name}}/schemas", create_schema, methods=["POST"]),
        Route("/api/v1/datasources/{id}", get_datasource, methods=["GET"]),
        Route("/api/v1/datasources", list_datasources, methods=["GET"]),
        Route("/api/v1/erasures", request_erasure, methods=["POST"]),
        Route("/api/v1/erasures/{id}", get_erasure, methods=["GET"]),
        Route("/api/v1/credentials", list_credentials, methods=["GET"]),
        Route("/api/v1/credentials/rotations", request_rotation, methods=["POST"]),
        Route("/api/v1/credentials/rotations/{id}", get_rotation, methods=["GET"]),
        Route("/api/v1/tenants", list_tenants, methods=["GET"]),
        Route("/api/v1/tenants/{tenant}/tables", tenant_tables, methods=["GET"]),
        Route("/api/v1/tenants/{tenant}/offboarding", request_offboarding, methods=["POST"]),
        Route("/api/v1/tenants/{tenant}/offboarding/{id}", get_offboarding, methods=["GET"]),
        Route("/webhooks/mcp", mcp_webhook, methods=["POST"]),
    ]
