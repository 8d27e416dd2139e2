"""The lineage side of the monitor's HTTP API (JWT; tenant-scoped: a token reads only its own tenant's graph).

GET /api/v1/lineage?node=<dataset name or entity>&tenant=<tenant>&direction=both|upstream|downstream
    -> {"nodes": [{"id", "kind": "dataset"|"run"|"job", "name", "namespace"}], "edges": [{"from", "to"}]}
GET /api/v1/lineage/downstream-tables?node=<dataset or entity, e.g. employees>&tenant=<tenant>
    -> {"tables": [...], "volumes": [...]}: what an erasure of a person's entity has to touch
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_monitor.lineage import LineageStore
from apev_runtime.auth import AuthError, JwtVerifier, auth_error_response

API = "/api/v1/lineage"
READ_ROLES = {"admin", "engineer", "analyst"}
DIRECTIONS = ("both", "upstream", "downstream")


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def routes(store: LineageStore, verifier: JwtVerifier | None) -> list[BaseRoute]:
    def _args(request: Request) -> tuple[str, str] | Response:
        try:
            if verifier is None:
                raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
            principal = verifier.verify(request.headers.get("authorization"))
            tenant = request.query_params.get("tenant") or principal.tenant_id
            principal.require(tenant_id=tenant, roles=READ_ROLES)
        except AuthError as err:
            return auth_error_response(err)
        node = request.query_params.get("node", "").strip()
        if not node or len(node) > 1000:
            return _error(400, "bad_request", "query parameter `node` (a dataset name or entity) is required")
        return tenant, node

    async def graph(request: Request) -> Response:
        args = _args(request)
        if isinstance(args, Response):
            return args
        direction = request.query_params.get("direction", "both")
        if direction not in DIRECTIONS:
            return _error(400, "bad_request", f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        found = await store.graph(*args, direction)  # type: ignore[arg-type]
        if found is None:
            return _error(404, "not_found", f"no lineage node {args[1]!r} for tenant {args[0]!r}")
        return JSONResponse(found)

    async def downstream(request: Request) -> Response:
        args = _args(request)
        if isinstance(args, Response):
            return args
        found = await store.downstream_tables(*args)
        if found is None:
            return _error(404, "not_found", f"no lineage node {args[1]!r} for tenant {args[0]!r}")
        return JSONResponse(found)

    return [
        Route(API, graph, methods=["GET"]),
        Route(f"{API}/downstream-tables", downstream, methods=["GET"]),
    ]
