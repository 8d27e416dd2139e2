"""The jobs service's HTTP side: the seed's `/api/v1/databricks/...` routes (JWT, tenant-scoped) and the
Databricks webhook receiver (basic auth, as notification destinations send it). Health and metrics are the
runtime's. Errors are JSON naming the field."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, get_args

import pydantic
import structlog
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_contracts import JobRequested
from apev_contracts.envelope import new_event
from apev_contracts.events.jobs import Parameters
from apev_contracts.events.runs import RunOutcome
from apev_jobs import tables
from apev_jobs.service import JobsService
from apev_jobs.settings import Settings
from apev_runtime.auth import AuthError, JwtVerifier, Principal, auth_error_response
from apev_runtime.errors import Failure, classify

log = structlog.get_logger("apev.jobs.api")

API = "/api/v1/databricks"
API_SOURCE = "/apev/jobs/api"
WRITE_ROLES = {"admin", "engineer", "agent"}
READ_ROLES = {"admin", "engineer", "analyst", "agent"}
MAX_PAGE = 100
OUTCOMES = frozenset(get_args(RunOutcome))

Endpoint = Callable[[Request], Awaitable[Response]]


class RunBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    job_parameters: Parameters = pydantic.Field(default_factory=dict)
    only: list[str] | None = None


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _invalid(exc: pydantic.ValidationError) -> JSONResponse:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return _error(422, "invalid_request", fields)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from None


class _BadRequest(Exception):
    pass


def routes(service: JobsService, settings: Settings, verifier: JwtVerifier | None) -> list[BaseRoute]:
    db = service.db

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
                except _BadRequest as exc:
                    return _error(400, "bad_request", str(exc))

            endpoint.__doc__ = fn.__doc__
            return endpoint

        return decorate

    def tenant_check(principal: Principal, tenant_id: str, what: str) -> None:
        if tenant_id != principal.tenant_id:
            raise AuthError(403, f"{what} belongs to another tenant than the token's ({principal.tenant_id!r})")

    async def accept(principal: Principal, data: JobRequested) -> Response:
        event = new_event(data, tenant_id=principal.tenant_id, source=API_SOURCE)
        async with db.transaction() as tx:
            await service.accept(tx, event)
        return JSONResponse({"request_id": event.id, "status_url": f"{API}/requests/{event.id}"}, status_code=202)

    @guarded(WRITE_ROLES)
    async def post_job(request: Request, principal: Principal) -> Response:
        """Create or reset a job and/or act on it: a `job.requested` payload; answers 202 with the request id."""
        body = await _json(request)
        if not isinstance(body, dict):
            raise _BadRequest("body must be a JSON object (a job.requested payload)")
        if body.setdefault("tenant_id", principal.tenant_id) != principal.tenant_id:
            tenant_check(principal, str(body["tenant_id"]), "tenant_id")
        return await accept(principal, JobRequested.model_validate(body))

    @guarded(WRITE_ROLES)
    async def post_run(request: Request, principal: Principal) -> Response:
        """Run a job this service wrote, with `{"job_parameters": {...}}`; answers 202 with the request id."""
        job = await _job(request.path_params["job_id"])
        if job is None:
            return _error(404, "not_found", f"job {request.path_params['job_id']} is not a job of this service")
        tenant_check(principal, job.tenant_id, "job_id")
        body = RunBody.model_validate(await _json(request))
        data = JobRequested(
            tenant_id=job.tenant_id,
            kind=job.kind,
            key=job.key,
            action={"type": "run", "job_parameters": body.job_parameters, "only": body.only},
        )
        return await accept(principal, data)

    @guarded(READ_ROLES)
    async def get_request(request: Request, principal: Principal) -> Response:
        """Request -> job id, run id, state. A redelivered request keeps its run; a new request has its own."""
        request_id = request.path_params["request_id"]
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.requests).where(tables.requests.c.request_id == request_id))
            ).first()
            run = None
            if row is not None and row.run_id is not None:
                run = (await conn.execute(select(tables.runs).where(tables.runs.c.run_id == row.run_id))).first()
        if row is None:
            return _error(404, "not_found", f"request {request_id!r} is unknown (not yet consumed, or never sent)")
        tenant_check(principal, row.tenant_id, "request")
        return JSONResponse(
            {
                "request_id": row.request_id,
                "state": row.state,
                "action": row.action,
                "job_name": row.job_name,
                "job_id": row.job_id,
                "job_written": row.job_written,
                "run_id": row.run_id,
                "idempotency_token": row.idempotency_token,
                "run_state": _run_state(run),
                "error": row.error,
                "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(),
            }
        )

    @guarded(READ_ROLES)
    async def get_run(request: Request, principal: Principal) -> Response:
        """One run as this service tracks it, with each finished attempt (original, repairs)."""
        run_id = request.path_params["run_id"]
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(tables.runs).where(tables.runs.c.run_id == run_id))).first()
            attempts = (
                await conn.execute(
                    select(tables.finished)
                    .where(tables.finished.c.run_id == run_id)
                    .order_by(tables.finished.c.repair_attempt)
                )
            ).all()
        if row is None:
            return _error(404, "not_found", f"run {run_id!r} is not a run of this service")
        tenant_check(principal, row.tenant_id, "run")
        return JSONResponse(_run_body(row, attempts, full=True))

    @guarded(READ_ROLES)
    async def list_runs(request: Request, principal: Principal) -> Response:
        """A job's runs, newest first, `limit` (1-100, default 25) per page, `page_token` for the next."""
        job = await _job(request.path_params["job_id"])
        if job is None:
            return _error(404, "not_found", f"job {request.path_params['job_id']} is not a job of this service")
        tenant_check(principal, job.tenant_id, "job_id")
        limit = _int_param(request, "limit", 25, 1, MAX_PAGE)
        offset = _page_offset(request.query_params.get("page_token"))
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(tables.runs)
                    .where(tables.runs.c.job_id == job.job_id)
                    .order_by(tables.runs.c.created_at.desc(), tables.runs.c.run_id.desc())
                    .offset(offset)
                    .limit(limit + 1)
                )
            ).all()
            total = (await conn.execute(select(func.count()).where(tables.runs.c.job_id == job.job_id))).scalar_one()
        body: dict[str, Any] = {"runs": [_run_body(r, []) for r in rows[:limit]], "total": total}
        if len(rows) > limit:
            body["next_page_token"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return JSONResponse(body)

    @guarded(READ_ROLES)
    async def recent_runs(request: Request, principal: Principal) -> Response:
        """The token's tenant's runs, newest first, each with its finished attempts (tasks, state message, run
        page: the `run.finished` data); `kind`, `result` (success, failure, ... the outcome of the latest
        attempt; `active` for runs not finished), `limit` (1-100, default 25), `page_token`."""
        r = tables.runs.c
        limit = _int_param(request, "limit", 25, 1, MAX_PAGE)
        offset = _page_offset(request.query_params.get("page_token"))
        query = select(tables.runs).where(r.tenant_id == principal.tenant_id)
        if kind := request.query_params.get("kind"):
            query = query.where(r.kind == kind)
        result = request.query_params.get("result")
        if result == "active":
            query = query.where(r.active.is_(True))
        elif result:
            if result not in OUTCOMES:
                raise _BadRequest(f"query parameter 'result' must be 'active' or one of {sorted(OUTCOMES)}")
            latest = (
                select(tables.finished.c.outcome)
                .where(tables.finished.c.run_id == r.run_id)
                .order_by(tables.finished.c.repair_attempt.desc())
                .limit(1)
                .scalar_subquery()
            )
            query = query.where(r.active.is_(False), latest == result)
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(query.order_by(r.created_at.desc(), r.run_id.desc()).offset(offset).limit(limit + 1))
            ).all()
            ids = [x.run_id for x in rows[:limit]]
            attempts = (
                (
                    await conn.execute(
                        select(tables.finished)
                        .where(tables.finished.c.run_id.in_(ids))
                        .order_by(tables.finished.c.repair_attempt)
                    )
                ).all()
                if ids
                else []
            )
        by_run: dict[str, list[Any]] = {}
        for a in attempts:
            by_run.setdefault(a.run_id, []).append(a)
        body: dict[str, Any] = {"runs": [_run_body(x, by_run.get(x.run_id, []), full=True) for x in rows[:limit]]}
        if len(rows) > limit:
            body["next_page_token"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return JSONResponse(body)

    async def webhook(request: Request) -> Response:
        """Databricks job notifications (basic auth of the notification destination)."""
        if not _basic_auth_ok(request.headers.get("authorization"), settings):
            log.warning("webhook_refused", client=request.client.host if request.client else None)
            return JSONResponse(
                {"error": "unauthenticated", "detail": "basic auth of the notification destination required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="apev-jobs"'},
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "bad_request", "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "bad_request", "body must be a Databricks notification object")
        try:
            result = await service.on_notification(body)
        except Exception as exc:
            if classify(exc) is Failure.PERMANENT:
                log.warning("webhook_unusable", error=str(exc))
                return _error(422, "unprocessable", str(exc))
            log.warning("webhook_failed_transient", error=repr(exc))
            return _error(503, "unavailable", "could not read the run yet; send again")  # the sender retries
        return JSONResponse({"result": result})

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    async def _job(job_id: str) -> Any:
        async with db.engine.connect() as conn:
            return (await conn.execute(select(tables.jobs).where(tables.jobs.c.job_id == job_id))).first()

    return [
        Route(f"{API}/jobs", post_job, methods=["POST"]),
        Route(f"{API}/jobs/{{job_id:str}}/run", post_run, methods=["POST"]),
        Route(f"{API}/jobs/{{job_id:str}}/runs", list_runs, methods=["GET"]),
        Route(f"{API}/requests/{{request_id:str}}", get_request, methods=["GET"]),
        Route(f"{API}/runs", recent_runs, methods=["GET"]),
        Route(f"{API}/runs/{{run_id:str}}", get_run, methods=["GET"]),
        Route("/webhooks/databricks", webhook, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _basic_auth_ok(header: str | None, settings: Settings) -> bool:
    if settings.webhook_password is None or not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = settings.webhook_password.get_secret_value()
    return hmac.compare_digest(user.encode(), settings.webhook_username.encode()) & hmac.compare_digest(
        password.encode(), expected.encode()
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _BadRequest(f"query parameter {name!r} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error):
        raise _BadRequest("query parameter 'page_token' is not a token this API returned") from None


def _run_state(run: Any) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"active": run.active, "life_cycle_state": run.life_cycle_state, "result_state": run.result_state}


def _attempt(a: Any, full: bool) -> dict[str, Any]:
    out = {
        "repair_attempt": a.repair_attempt,
        "outcome": a.outcome,
        "end_time": a.end_time.isoformat(),
        "event_id": a.event_id,
        "seen_by": a.via,
    }
    if full:
        data = a.payload or {}  # attempts finished before jobs_0002 have no payload kept
        state = data.get("state") or {}
        out |= {
            "state_message": state.get("state_message"),
            "start_time": data.get("start_time"),
            "run_page_url": data.get("run_page_url"),
            "tasks": data.get("tasks", []),
            "run_finished": data or None,
        }
    return out


def _run_body(row: Any, attempts: Sequence[Any], *, full: bool = False) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "kind": row.kind,
        "key": row.key,
        "request_id": row.request_id,
        "job_parameters": row.job_parameters,
        "active": row.active,
        "repairs": row.repairs,
        "latest_repair_id": row.latest_repair_id,
        "life_cycle_state": row.life_cycle_state,
        "result_state": row.result_state,
        "timed_out": row.timed_out,
        "created_at": row.created_at.isoformat(),
        "attempts": [_attempt(a, full) for a in attempts],
    }


def openapi_document() -> dict[str, Any]:
    ref = "#/components/schemas/{model}"
    job_requested = JobRequested.model_json_schema(ref_template=ref)
    run_body = RunBody.model_json_schema(ref_template=ref)
    schemas: dict[str, Any] = {**job_requested.pop("$defs", {}), **run_body.pop("$defs", {})}
    schemas["JobRequested"] = job_requested
    schemas["RunBody"] = run_body
    error = {"description": "error", "content": {"application/json": {"schema": {"$ref": ref.format(model="Error")}}}}
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "detail": {}},
        "required": ["error", "detail"],
    }
    accepted = {"202": {"description": "accepted: {request_id, status_url}"}, "401": error, "403": error, "422": error}
    read = {"200": {"description": "found"}, "401": error, "403": error, "404": error}

    def body(model: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": ref.format(model=model)}}}}

    def param(name: str, where: str = "path") -> dict[str, Any]:
        return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "AgentProvision jobs service", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{API}/jobs": {
                "post": {
                    "summary": "Create/reset a job, run, cancel or repair",
                    "requestBody": body("JobRequested"),
                    "responses": accepted,
                }
            },
            f"{API}/jobs/{{job_id}}/run": {
                "post": {
                    "summary": "Run a job",
                    "parameters": [param("job_id")],
                    "requestBody": body("RunBody"),
                    "responses": accepted,
                }
            },
            f"{API}/jobs/{{job_id}}/runs": {
                "get": {
                    "summary": "A job's runs, newest first",
                    "parameters": [param("job_id"), param("limit", "query"), param("page_token", "query")],
                    "responses": read,
                }
            },
            f"{API}/requests/{{request_id}}": {
                "get": {"summary": "Request -> job, run, state", "parameters": [param("request_id")], "responses": read}
            },
            f"{API}/runs": {
                "get": {
                    "summary": "The tenant's recent runs with their attempts' tasks and errors, newest first",
                    "parameters": [param(n, "query") for n in ("kind", "result", "limit", "page_token")],
                    "responses": read,
                }
            },
            f"{API}/runs/{{run_id}}": {
                "get": {
                    "summary": "One run and its finished attempts",
                    "parameters": [param("run_id")],
                    "responses": read,
                }
            },
            "/webhooks/databricks": {
                "post": {
                    "summary": "Databricks job notifications",
                    "security": [{"basic": []}],
                    "responses": {"200": {"description": "handled"}, "401": error},
                }
            },
        },
    }
