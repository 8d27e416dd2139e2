"""The monitor's HTTP side (JWT; tenant-scoped): alerts with their states and history, silences (create,
list, expire), cost per tenant and day, cost per agent per 1,000 invocations. Health and metrics are the
runtime's. A token sees its own tenant's alerts; platform alerts (no tenant, e.g. DLQ growth) need `admin`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pydantic
from sqlalchemy import or_, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_monitor import tables
from apev_monitor.alerting import active_silences, silence_matches
from apev_monitor.conditions import agent_cost_table, aware
from apev_monitor.rules import parse_duration
from apev_monitor.service import MonitorService
from apev_runtime.auth import AuthError, JwtVerifier, Principal, auth_error_response

API = "/api/v1/monitor"
READ_ROLES = {"admin", "engineer", "analyst"}
WRITE_ROLES = {"admin", "engineer"}
ADMIN_ROLES = {"admin"}
Endpoint = Callable[[Request], Awaitable[Response]]


class SilenceBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    matchers: dict[str, str] = pydantic.Field(min_length=1)
    """Label -> value, all must match (e.g. `{"rule": "job_failures", "job_id": "42"}`); `tenant_id` is the token's."""
    duration: str | float = "2h"
    comment: str = ""


class _BadRequest(Exception):
    pass


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def routes(service: MonitorService, verifier: JwtVerifier | None) -> list[BaseRoute]:
    db = service.db

    def guarded(roles: set[str]) -> Callable[[Callable[[Request, Principal], Awaitable[Response]]], Endpoint]:
        def decorate(fn: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                try:
                    if verifier is None:
                        raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
                    principal = verifier.verify(request.headers.get("authorization"))
                    principal.require(tenant_id=request.path_params.get("tenant_id"), roles=roles)
                    return await fn(request, principal)
                except AuthError as err:
                    return auth_error_response(err)
                except pydantic.ValidationError as exc:
                    fields = [
                        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                        for e in exc.errors(include_url=False, include_input=False)
                    ]
                    return _error(422, "invalid_request", fields)
                except _BadRequest as exc:
                    return _error(400, "bad_request", str(exc))

            endpoint.__doc__ = fn.__doc__
            return endpoint

        return decorate

    def visible(principal: Principal) -> Any:
        a = tables.alerts.c
        if "admin" in principal.roles:
            return or_(a.tenant_id == principal.tenant_id, a.tenant_id.is_(None))
        return a.tenant_id == principal.tenant_id

    async def silences_now() -> list[dict[str, str]]:
        async with db.engine.connect() as conn:
            return await active_silences(conn, service.clock.now())

    def alert_body(row: Any, silences: list[dict[str, str]], history: list[Any]) -> dict[str, Any]:
        return {
            "fingerprint": row.fingerprint,
            "rule": row.rule,
            "labels": row.labels,
            "state": row.state,
            "silenced": row.state == "firing"
            and any(silence_matches(m, {**row.labels, "rule": row.rule}) for m in silences),
            "value": row.value,
            "summary": row.summary,
            "link": row.link,
            "active_since": _jsonable(row.active_since),
            "fired_at": _jsonable(row.fired_at),
            "resolved_at": _jsonable(row.resolved_at),
            "history": [{"state": h.state, "value": h.value, "at": _jsonable(h.at)} for h in history],
        }

    @guarded(READ_ROLES)
    async def list_alerts(request: Request, principal: Principal) -> Response:
        """Alerts visible to the token, newest change first; `state` and `rule` filter."""
        a, h = tables.alerts.c, tables.alert_history.c
        query = select(tables.alerts).where(visible(principal)).order_by(a.updated_at.desc())
        if state := request.query_params.get("state"):
            query = query.where(a.state == state)
        if rule := request.query_params.get("rule"):
            query = query.where(a.rule == rule)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(query.limit(500))).all()
            history: dict[str, list[Any]] = {}
            if rows:
                fps = [r.fingerprint for r in rows]
                for item in await conn.execute(
                    select(tables.alert_history).where(h.fingerprint.in_(fps)).order_by(h.id)
                ):
                    history.setdefault(item.fingerprint, []).append(item)
        silences = await silences_now()
        return JSONResponse({"alerts": [alert_body(r, silences, history.get(r.fingerprint, [])) for r in rows]})

    @guarded(READ_ROLES)
    async def get_alert(request: Request, principal: Principal) -> Response:
        """One alert with its full history and the notifications of its rule's groups, each with its attempts."""
        fp = request.path_params["fingerprint"]
        a, h, n, t = tables.alerts.c, tables.alert_history.c, tables.notifications.c, tables.attempts.c
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(tables.alerts).where(a.fingerprint == fp, visible(principal)))).first()
            if row is None:
                return _error(404, "not_found", f"alert {fp!r} is unknown or not visible to this token")
            history = (await conn.execute(select(tables.alert_history).where(h.fingerprint == fp).order_by(h.id))).all()
            notes = (await conn.execute(select(tables.notifications).where(n.rule == row.rule).order_by(n.id))).all()
            mine = [x for x in notes if any(i["fingerprint"] == fp for i in x.payload.get("alerts", []))]
            tries = (
                (await conn.execute(select(tables.attempts).where(t.notification_id.in_([x.id for x in mine])))).all()
                if mine
                else []
            )
        body = alert_body(row, await silences_now(), list(history))
        body["notifications"] = [
            {
                "id": x.id,
                "receiver": x.receiver,
                "kind": x.kind,
                "status": x.status,
                "dedup_key": x.dedup_key,
                "attempts": [
                    {"at": _jsonable(y.at), "outcome": y.outcome, "status_code": y.status_code, "error": y.error}
                    for y in tries
                    if y.notification_id == x.id
                ],
            }
            for x in mine
        ]
        return JSONResponse(body)

    @guarded(WRITE_ROLES)
    async def create_silence(request: Request, principal: Principal) -> Response:
        """Silence the token's tenant's alerts whose labels match; `rule` matches the rule name too."""
        try:
            raw = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise _BadRequest(f"body is not JSON: {exc}") from None
        body = SilenceBody.model_validate(raw)
        try:
            seconds = parse_duration(body.duration)
        except ValueError as exc:
            raise _BadRequest(f"duration: {exc}") from None
        if seconds <= 0:
            raise _BadRequest("duration must be positive")
        matchers = dict(body.matchers)
        if matchers.setdefault("tenant_id", principal.tenant_id) != principal.tenant_id:
            raise AuthError(403, f"a silence may only match the token's tenant ({principal.tenant_id!r})")
        now = service.clock.now()
        silence_id = str(uuid.uuid4())
        row = {
            "silence_id": silence_id,
            "tenant_id": principal.tenant_id,
            "matchers": matchers,
            "starts_at": now,
            "ends_at": now + timedelta(seconds=seconds),
            "created_by": principal.subject,
            "comment": body.comment,
            "expired": False,
            "created_at": now,
        }
        async with db.transaction() as tx:
            await tx.execute(tables.silences.insert().values(**row))
        return JSONResponse(_silence(row, now), status_code=201)

    @guarded(READ_ROLES)
    async def list_silences(request: Request, principal: Principal) -> Response:
        """The tenant's silences with their state (active, pending, expired)."""
        s = tables.silences.c
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(tables.silences).where(s.tenant_id == principal.tenant_id).order_by(s.created_at.desc())
                )
            ).all()
        now = service.clock.now()
        return JSONResponse({"silences": [_silence(dict(r._mapping), now) for r in rows]})

    @guarded(WRITE_ROLES)
    async def expire_silence(request: Request, principal: Principal) -> Response:
        """Expire a silence now."""
        s = tables.silences.c
        silence_id = request.path_params["silence_id"]
        async with db.transaction() as tx:
            row = (await tx.execute(select(tables.silences).where(s.silence_id == silence_id))).first()
            if row is None or row.tenant_id != principal.tenant_id:
                return _error(404, "not_found", f"silence {silence_id!r} is unknown or not this tenant's")
            now = service.clock.now()
            await tx.execute(
                update(tables.silences)
                .where(s.silence_id == silence_id)
                .values(expired=True, ends_at=min(aware(row.ends_at), now))
            )
        return JSONResponse({"silence_id": silence_id, "state": "expired"})

    def _range(request: Request) -> tuple[date, date]:
        today = service.clock.now().date()
        try:
            first = date.fromisoformat(request.query_params.get("from") or (today - timedelta(days=6)).isoformat())
            last = date.fromisoformat(request.query_params.get("to") or today.isoformat())
        except ValueError as exc:
            raise _BadRequest(f"`from` and `to` are dates YYYY-MM-DD: {exc}") from None
        if last < first or (last - first).days > 366:
            raise _BadRequest("`to` must be on or after `from`, at most 366 days apart")
        return first, last

    @guarded(READ_ROLES)
    async def tenant_cost(request: Request, principal: Principal) -> Response:
        """Cost per day (and SKU) of the path's tenant, from the latest `cost.sampled` revisions."""
        tenant, (first, last) = request.path_params["tenant_id"], _range(request)
        c = tables.cost_samples.c
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(tables.cost_samples)
                    .where(c.tenant_id == tenant, c.usage_date >= first, c.usage_date <= last)
                    .order_by(c.usage_date, c.sku)
                )
            ).all()
        days: dict[date, dict[str, Any]] = {}
        for r in rows:
            day = days.setdefault(
                r.usage_date,
                {"usage_date": r.usage_date.isoformat(), "dbus": Decimal(0), "dollars": Decimal(0), "skus": []},
            )
            day["dbus"] += Decimal(r.dbus)
            day["dollars"] += Decimal(r.dollars)
            day["skus"].append(
                {
                    "sku": r.sku,
                    "dbus": _money(r.dbus),  # at the contract's precision: SQLite keeps NUMERIC as a float
                    "dollars": _money(r.dollars),
                    "revision": r.revision,
                    "event_id": r.event_id,
                }
            )
        out = [{**d, "dbus": _money(d["dbus"]), "dollars": _money(d["dollars"])} for d in days.values()]
        return JSONResponse({"tenant_id": tenant, "from": first.isoformat(), "to": last.isoformat(), "days": out})

    @guarded(ADMIN_ROLES)
    async def sample_now(request: Request, principal: Principal) -> Response:
        """Run one billing sample now (as the leader's loop does every `MONITOR_SAMPLE_INTERVAL_SECONDS`); the
        answer lists the `cost.sampled` it published for the token's tenant (other tenants' are not shown)."""
        try:
            result = await service.sample_costs()
        except Exception as exc:  # the warehouse or the workspace failed: say so, do not crash the request
            return _error(502, "sample_failed", f"{type(exc).__name__}: {exc}"[:500])
        if result is None:
            return _error(409, "no_workspace", "this monitor has no workspace configured (DATABRICKS_HOST, auth)")
        mine = [s.model_dump(mode="json") for s in result.published if s.tenant_id == principal.tenant_id]
        return JSONResponse({"tenant_id": principal.tenant_id, "published": mine})

    @guarded(READ_ROLES)
    async def agent_cost(request: Request, principal: Principal) -> Response:
        """Per agent of the path's tenant: dollars of its endpoint and insights jobs, invocations, $ per 1,000."""
        tenant, (first, last) = request.path_params["tenant_id"], _range(request)
        async with db.engine.connect() as conn:
            rows = await agent_cost_table(conn, first, last, tenant)
        agents = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
        return JSONResponse({"tenant_id": tenant, "from": first.isoformat(), "to": last.isoformat(), "agents": agents})

    return [
        Route(f"{API}/alerts", list_alerts, methods=["GET"]),
        Route(f"{API}/alerts/{{fingerprint:str}}", get_alert, methods=["GET"]),
        Route(f"{API}/silences", create_silence, methods=["POST"]),
        Route(f"{API}/silences", list_silences, methods=["GET"]),
        Route(f"{API}/silences/{{silence_id:str}}", expire_silence, methods=["DELETE"]),
        Route(f"{API}/tenants/{{tenant_id:str}}/cost", tenant_cost, methods=["GET"]),
        Route(f"{API}/cost/samples", sample_now, methods=["POST"]),
        Route(f"{API}/tenants/{{tenant_id:str}}/agents/cost-per-1k", agent_cost, methods=["GET"]),
    ]


def _money(value: Any) -> str:
    """Cost samples carry 6 decimal places (the contract's money precision)."""
    return str(Decimal(value).quantize(Decimal("0.000001")))


def _silence(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    starts, ends = aware(row["starts_at"]), aware(row["ends_at"])
    state = "expired" if row["expired"] or ends <= now else ("pending" if starts > now else "active")
    return {
        "silence_id": row["silence_id"],
        "matchers": row["matchers"],
        "starts_at": starts.isoformat(),
        "ends_at": ends.isoformat(),
        "created_by": row["created_by"],
        "comment": row["comment"],
        "state": state,
    }
