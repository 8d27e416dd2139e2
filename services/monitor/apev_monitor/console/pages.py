"""The operator console under `/console/`: server-rendered pages (Jinja2), one per concern, that read the other
services through their HTTP APIs (`clients.py`) and the monitor's own data through its own API, in process.

Every page renders its changing part as a fragment (`?fragment=1`) that the page's few lines of script fetch
again every `MONITOR_CONSOLE_POLL_SECONDS`. A service that is down is shown as down in its section; the rest of
the page renders. Actions are plain forms (POST, with a form token bound to the session) answered by a redirect
back to the page with a one-line notice.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from apev_contracts.topics import TOPICS, dlq_topic
from apev_monitor.console import charts, lineage_view
from apev_monitor.console.clients import Answer, ServiceClients
from apev_monitor.console.session import COOKIE, Session, resolve, signed
from apev_monitor.dlq import DlqOffsets
from apev_monitor.tenants import Tenants
from apev_runtime.auth import AuthError, JwtVerifier
from apev_runtime.delivery.tools import Filter, read_dlq, replay

log = structlog.get_logger("apev.monitor.console")
tracer = trace.get_tracer("apev.monitor.console")

HERE = Path(__file__).parent
PREFIX = "/console"
NAV = [
    ("tenants", "Tenants and data", False),
    ("runs", "Runs", False),
    ("agents", "Agents", False),
    ("sql", "Ad-hoc SQL", False),
    ("approvals", "Approvals", False),
    ("alerts", "Alerts", False),
    ("cost", "Cost", False),
    ("lineage", "Lineage", False),
    ("dlq", "Dead letters", True),
]
RUN_RESULTS = ["success", "failure", "timeout", "canceled", "skipped", "active"]
LINEAGE_DIRECTIONS = ["both", "upstream", "downstream"]
RUN_KINDS = ["ingest", "agent-deploy", "agent-insights", "adhoc"]

Loader = Callable[[Request, Session], Awaitable[dict[str, Any]]]


class Console:
    def __init__(
        self,
        clients: ServiceClients,
        verifier: JwtVerifier | None,
        tenants: Tenants,
        *,
        bootstrap: str,
        topic_prefix: str,
        dlq: DlqOffsets,
        poll_seconds: float,
        cookie_secure: bool,
        key: bytes | None = None,
    ) -> None:
        self.clients = clients
        self.verifier = verifier
        self.tenant_settings = tenants
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.dlq = dlq
        self.poll_ms = int(poll_seconds * 1000)
        self.cookie_secure = cookie_secure
        self.key = key or secrets.token_bytes(32)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
        self.env.filters["money"] = _money
        self.env.filters["ago"] = _ago
        self.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)

    # ------------------------------------------------------------------ plumbing

    def render(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**ctx), status_code=status)

    async def api(
        self, s: Session, part: str, method: str, path: str, *, tenant: str | None = None, **kw: Any
    ) -> Answer:
        return await self.clients.call(part, method, path, user=s.principal, raw=s.raw, tenant=tenant or s.tenant, **kw)

    def url(self, page: str, s: Session | None = None, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if s is not None:
            query.setdefault("tenant", s.tenant)
        return f"{PREFIX}/{page}" + (f"?{urlencode(query)}" if query else "")

    async def visible_tenants(self, s: Session) -> list[str]:
        if not s.is_admin:
            return [s.principal.tenant_id]
        found = set(self.tenant_settings.tenants()) | {s.tenant, s.principal.tenant_id}
        listed = await self.api(s, "ingest", "GET", "/api/v1/tenants", tenant=s.principal.tenant_id)
        if listed.ok:
            found |= {t["tenant_id"] for t in listed.get("tenants", [])}
        return sorted(found)

    def page(self, name: str, loader: Loader, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            with tracer.start_as_current_span(f"console {name}"):
                try:
                    s = resolve(request, self.verifier, self.key)
                except AuthError as err:
                    return self.refused(request, err)
                if admin and not s.is_admin:
                    return self.refused(request, AuthError(403, f"the {name} page is for platform admins only"))
                started = time.monotonic()
                try:
                    ctx = await loader(request, s)
                except Exception as exc:  # shown, not swallowed: the page says what broke
                    log.exception("console_page_failed", page=name)
                    why = f"the {name} page failed: {type(exc).__name__}: {exc}"[:500]
                    return self.render("forbidden.html", 500, why=why, nav=[], s=None, title="Error")
                status = int(ctx.pop("status", 200))  # a page about something unknown answers 404
                ctx |= self.common(request, s, name)
                ctx["took_ms"] = round((time.monotonic() - started) * 1000)
                if request.query_params.get("fragment"):
                    return self.render(f"_{name}.html", status, **ctx)
                own = (HERE / "templates" / f"{name}.html").exists()
                return self.render(f"{name}.html" if own else "page.html", status, **ctx)

        return endpoint

    def common(self, request: Request, s: Session, name: str) -> dict[str, Any]:
        return {
            "s": s,
            "page": name,
            "nav": [(p, title) for p, title, admin in NAV if s.is_admin or not admin],
            "url": lambda page, **kw: self.url(page, s, **kw),
            "poll_ms": self.poll_ms,
            "notice": request.query_params.get("notice"),
            "fail": request.query_params.get("fail"),
            "self_url": self.url(name, s)
            if request.method == "POST"
            else str(request.url.path)
            + "?"
            + urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k not in ("fragment", "notice", "fail")]
            ),
        }

    def refused(self, request: Request, err: AuthError) -> Response:
        if err.status == 401:
            if request.method == "GET" and not request.query_params.get("fragment"):
                return RedirectResponse(
                    f"{PREFIX}/login?" + urlencode({"next": str(request.url.path), "why": err.message}), 303
                )
            return self.render("login.html", 401, why=err.message, next=f"{PREFIX}/")
        return self.render("forbidden.html", 403, why=err.message, nav=[], s=None)

    def action(
        self, fn: Callable[[Request, Session, dict[str, str]], Awaitable[str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: session, form token, then `fn` returns where to go (with `notice=`/`fail=` in it)."""

        async def endpoint(request: Request) -> Response:
            with tracer.start_as_current_span(f"console POST {request.url.path}"):
                form = await _form(request)
                try:
                    s = resolve(request, self.verifier, self.key)
                except AuthError as err:
                    return self.refused(request, err)
                if not secrets.compare_digest(form.get("csrf", ""), s.csrf):
                    return self.render(
                        "forbidden.html", 403, why="the form token does not match this sign-in", nav=[], s=None
                    )
                return RedirectResponse(await fn(request, s, form), 303)

        return endpoint

    def back(self, s: Session, page: str, answer: Answer | None = None, ok: str = "", **params: Any) -> str:
        if answer is not None and not answer.ok:
            return self.url(page, s, fail=answer.error, **params)
        return self.url(page, s, notice=ok, **params)

    # ------------------------------------------------------------------ sign-in

    async def login_form(self, request: Request) -> Response:
        return self.render(
            "login.html", why=request.query_params.get("why"), next=request.query_params.get("next") or f"{PREFIX}/"
        )

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        raw = str(form.get("token", "")).strip().removeprefix("Bearer ").strip()
        nxt = str(form.get("next") or f"{PREFIX}/")
        if not nxt.startswith(PREFIX + "/"):
            nxt = f"{PREFIX}/"
        try:
            if self.verifier is None:
                raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
            principal = self.verifier.verify(f"Bearer {raw}")
        except AuthError as err:
            return self.render("login.html", 401, why=err.message, next=nxt)
        response = RedirectResponse(nxt, 303)
        exp = int(principal.claims.get("exp", time.time() + 3600))
        response.set_cookie(
            COOKIE, raw, max_age=max(1, exp - int(time.time())), path=PREFIX, httponly=True,
            secure=self.cookie_secure, samesite="strict",
        )  # fmt: skip
        log.info("console_login", subject=principal.subject, tenant=principal.tenant_id, roles=sorted(principal.roles))
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/tenants" + (f"?{request.url.query}" if request.url.query else ""), 303)

    # ------------------------------------------------------------------ tenants and data

    async def tenants_data(self, request: Request, s: Session) -> dict[str, Any]:
        visible = await self.visible_tenants(s)
        shown = visible if request.query_params.get("all") == "1" and s.is_admin else [s.tenant]
        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        for tenant in shown:
            listed = await self.api(
                s, "ingest", "GET", "/api/v1/datasources", tenant=tenant, params={"tenant": tenant, "limit": 100}
            )
            if not listed.ok:
                errors.append(f"{tenant}: {listed.error}")
                continue

            async def one(ds: dict[str, Any], tenant: str = tenant) -> dict[str, Any]:
                full = await self.api(s, "ingest", "GET", f"/api/v1/datasources/{ds['datasource_id']}", tenant=tenant)
                item = full.body if full.ok else ds
                last = item.get("last_run") or {}
                run = None
                if last.get("run_id"):
                    got = await self.api(s, "jobs", "GET", f"/api/v1/databricks/runs/{last['run_id']}", tenant=tenant)
                    run = _run_view(got.body) if got.ok else {"error": got.error}
                return {"ds": item, "run": run}

            rows += await asyncio.gather(*(one(ds) for ds in listed.get("datasources", [])[:50]))
        return {
            "tenants": visible,
            "rows": rows,
            "errors": errors,
            "all": request.query_params.get("all") == "1",
        }

    async def tables_data(self, request: Request, s: Session) -> dict[str, Any]:
        """Row counts take a statement per table: their own fragment, loaded after the page."""
        return {"tables": await self.api(s, "ingest", "GET", f"/api/v1/tenants/{s.tenant}/tables")}

    # ------------------------------------------------------------------ runs

    async def runs_data(self, request: Request, s: Session) -> dict[str, Any]:
        q = request.query_params
        params = {"limit": 50, "kind": q.get("kind") or None, "result": q.get("result") or None}
        got = await self.api(s, "jobs", "GET", "/api/v1/databricks/runs", params={k: v for k, v in params.items() if v})
        runs = [_run_view(r) for r in got.get("runs", [])] if got.ok else []
        return {"answer": got, "runs": runs, "kind": q.get("kind", ""), "result": q.get("result", ""),
                "kinds": RUN_KINDS, "results": RUN_RESULTS, "tenants": await self.visible_tenants(s)}  # fmt: skip

    async def run_data(self, request: Request, s: Session) -> dict[str, Any]:
        run_id = request.path_params["run_id"]
        got = await self.api(s, "jobs", "GET", f"/api/v1/databricks/runs/{run_id}")
        return {"answer": got, "run": _run_view(got.body) if got.ok else None, "run_id": run_id,
                "tenants": await self.visible_tenants(s)}  # fmt: skip

    async def run_action(self, request: Request, s: Session, form: dict[str, str]) -> str:
        run_id = request.path_params["run_id"]
        kind = request.path_params["action"]
        got = await self.api(s, "jobs", "GET", f"/api/v1/databricks/runs/{run_id}")
        if not got.ok:
            return self.back(s, f"runs/{run_id}", got)
        action: dict[str, Any] = {"type": kind, "run_id": run_id}
        if kind == "repair":
            action["rerun_all_failed_tasks"] = True
        body = {"kind": got.body["kind"], "key": got.body["key"], "action": action}
        posted = await self.api(s, "jobs", "POST", "/api/v1/databricks/jobs", json=body)
        verb = "repair" if kind == "repair" else "cancel"
        return self.back(s, f"runs/{run_id}", posted, f"{verb} requested (request {posted.get('request_id')})")

    # ------------------------------------------------------------------ agents

    async def agents_data(self, request: Request, s: Session) -> dict[str, Any]:
        got = await self.api(s, "serving", "GET", "/api/v1/agents")
        today = datetime.now(UTC).date()
        window = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
        cost = await self.api(
            s, "monitor", "GET", f"/api/v1/monitor/tenants/{s.tenant}/agents/cost-per-1k", params=window
        )
        per_agent = {c["agent_id"]: c for c in cost.get("agents", [])} if cost.ok else {}
        agents = []
        for a in got.get("agents", []) if got.ok else []:
            lat = a.get("latency") or {}
            series = lat.get("series") or []
            labels = [str(p["window_end"])[11:19] for p in series]
            chart = charts.line_chart(
                f"{a['agent_id']}: invoke latency per window (bucket bounds)",
                labels,
                {q: [_num(p.get(f"{q}_ms")) for p in series] for q in ("p50", "p95", "p99")},
                unit="ms",
            )
            agents.append({"a": a, "chart": chart, "cost": per_agent.get(a["agent_id"])})
        return {"answer": got, "cost_answer": cost, "agents": agents, "tenants": await self.visible_tenants(s),
                "asked": request.query_params.get("asked"), "reply": request.query_params.get("reply")}  # fmt: skip

    async def ask(self, request: Request, s: Session, form: dict[str, str]) -> str:
        agent_id = form.get("agent", "")
        question = form.get("question", "").strip()
        if not question:
            return self.url("agents", s, fail="type a question first")
        if not agent_id or "/" in agent_id:
            return self.url("agents", s, fail="choose an agent")
        got = await self.api(
            s, "serving", "POST", f"/api/v1/agents/{agent_id}/invoke", json={"input": {"query": question}}
        )
        if not got.ok:
            return self.url("agents", s, fail=got.error, asked=question)
        answer = (got.get("output") or {}).get("answer") or json.dumps(got.body)[:2000]
        return self.url("agents", s, asked=question, reply=answer, agent=agent_id)

    # ------------------------------------------------------------------ SQL

    async def sql_data(self, request: Request, s: Session) -> dict[str, Any]:
        return {
            "statement": "SELECT * FROM gold.monthly_kpis LIMIT 20",
            "result": None,
            "tenants": await self.visible_tenants(s),
        }

    async def sql_run(self, request: Request) -> Response:
        """POST: run the statement through serving's SQL API and render the page with the rows (or refusal)."""
        with tracer.start_as_current_span("console sql"):
            form = await _form(request)
            try:
                s = resolve(request, self.verifier, self.key)
            except AuthError as err:
                return self.refused(request, err)
            if not secrets.compare_digest(form.get("csrf", ""), s.csrf):
                return self.render(
                    "forbidden.html", 403, why="the form token does not match this sign-in", nav=[], s=None
                )
            statement = form.get("statement", "")
            got = await self.api(s, "serving", "POST", "/api/v1/databricks/sql/query",
                                 json={"statement": statement, "page_rows": 200})  # fmt: skip
            ctx: dict[str, Any] = {"statement": statement, "result": got, "tenants": await self.visible_tenants(s)}
            return self.render("sql.html", **ctx, **self.common(request, s, "sql"), took_ms=0)

    # ------------------------------------------------------------------ approvals

    async def approvals_data(self, request: Request, s: Session) -> dict[str, Any]:
        held = await self.api(
            s, "writeback", "GET", "/api/v1/writeback/insights", params={"state": "held", "limit": 100}
        )
        recent = await self.api(
            s, "writeback", "GET", "/api/v1/writeback/insights", params={"state": "all", "limit": 200}
        )
        trails: dict[str, Any] = {}
        decided = []
        if recent.ok:
            decided = [i for i in reversed(recent.get("insights", [])) if i["state"] != "held"][:15]
            for item in [*(held.get("insights", []) if held.ok else [])[:10], *decided[:10]]:
                trail = await self.api(s, "writeback", "GET", f"/api/v1/writeback/insights/{item['insight_id']}/audit")
                if trail.ok:
                    trails[item["insight_id"]] = trail.body
        diffs = {
            i["insight_id"]: [
                {"field": k, "old": (i.get("old_values") or {}).get(k), "new": v}
                for k, v in (i.get("changes") or {}).items()
            ]
            for i in [*(held.get("insights", []) if held.ok else []), *decided]
        }
        return {
            "held": held,
            "decided": decided,
            "trails": trails,
            "diffs": diffs,
            "tenants": await self.visible_tenants(s),
        }

    async def decide(self, request: Request, s: Session, form: dict[str, str]) -> str:
        insight_id, verb = request.path_params["insight_id"], request.path_params["decision"]
        got = await self.api(s, "writeback", "POST", f"/api/v1/writeback/insights/{insight_id}/{verb}")
        if got.status == 409:
            return self.url("approvals", s, fail=f"{insight_id}: already decided ({got.get('state')})")
        done = "approved" if verb == "approve" else "rejected"
        return self.back(
            s, "approvals", got, f"{insight_id} {done}: {got.get('state')} {got.get('detail') or ''}".strip()
        )

    # ------------------------------------------------------------------ alerts

    async def alerts_data(self, request: Request, s: Session) -> dict[str, Any]:
        alerts = await self.api(s, "monitor", "GET", "/api/v1/monitor/alerts")
        silences = await self.api(s, "monitor", "GET", "/api/v1/monitor/silences")
        rows = alerts.get("alerts", []) if alerts.ok else []
        active = [a for a in rows if a["state"] in ("firing", "pending")]
        history = [a for a in rows if a["state"] not in ("firing", "pending")][:30]
        return {"alerts": alerts, "active": active, "history": history, "silences": silences,
                "tenants": await self.visible_tenants(s)}  # fmt: skip

    async def silence(self, request: Request, s: Session, form: dict[str, str]) -> str:
        fingerprint = form.get("fingerprint", "")
        got = await self.api(s, "monitor", "GET", f"/api/v1/monitor/alerts/{fingerprint}")
        if not got.ok:
            return self.back(s, "alerts", got)
        labels = {k: str(v) for k, v in (got.get("labels") or {}).items() if k != "tenant_id"}
        body = {"matchers": {"rule": got.body["rule"], **labels}, "duration": form.get("duration") or "2h",
                "comment": form.get("comment") or f"silenced from the console by {s.user}"}  # fmt: skip
        made = await self.api(s, "monitor", "POST", "/api/v1/monitor/silences", json=body)
        return self.back(s, "alerts", made, f"silence {made.get('silence_id')} until {made.get('ends_at')}")

    async def expire(self, request: Request, s: Session, form: dict[str, str]) -> str:
        silence_id = request.path_params["silence_id"]
        got = await self.api(s, "monitor", "DELETE", f"/api/v1/monitor/silences/{silence_id}")
        return self.back(s, "alerts", got, f"silence {silence_id} expired")

    # ------------------------------------------------------------------ cost

    async def cost_data(self, request: Request, s: Session) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        first = today - timedelta(days=13)
        days = [(first + timedelta(days=i)).isoformat() for i in range(14)]
        tenants = await self.visible_tenants(s)
        shown = tenants[:8] if s.is_admin else [s.tenant]
        per: dict[str, dict[str, Any]] = {}
        errors = []
        for tenant in shown:
            got = await self.api(s, "monitor", "GET", f"/api/v1/monitor/tenants/{tenant}/cost", tenant=tenant,
                                 params={"from": first.isoformat(), "to": today.isoformat()})  # fmt: skip
            if got.ok:
                per[tenant] = {d["usage_date"]: d for d in got.get("days", [])}
            else:
                errors.append(f"{tenant}: {got.error}")
        dollars = charts.line_chart(
            "Dollars per tenant and day", [d[5:] for d in days],
            {t: [_num((per[t].get(d) or {}).get("dollars")) for d in days] for t in per}, unit="$", bars=True,
        )  # fmt: skip
        mine = per.get(s.tenant, {})
        budget = self.tenant_settings.get(s.tenant).daily_dbu_budget
        dbus = charts.line_chart(
            f"{s.tenant}: DBUs per day against its budget", [d[5:] for d in days],
            {"DBUs": [_num((mine.get(d) or {}).get("dbus")) for d in days]}, unit="DBU",
            limit=float(budget) if budget is not None else None, limit_label="daily budget", bars=True,
        )  # fmt: skip
        skus: dict[str, dict[str, Decimal]] = {}
        for day in mine.values():
            for sku in day["skus"]:
                acc = skus.setdefault(sku["sku"], {"dbus": Decimal(0), "dollars": Decimal(0)})
                acc["dbus"] += Decimal(sku["dbus"])
                acc["dollars"] += Decimal(sku["dollars"])
        over = [d for d, v in sorted(mine.items()) if budget is not None and Decimal(v["dbus"]) > budget]
        return {"dollars_chart": dollars, "dbus_chart": dbus, "skus": skus, "budget": budget, "over": over,
                "errors": errors, "days": [mine[d] for d in sorted(mine)], "tenants": tenants}  # fmt: skip

    # ------------------------------------------------------------------ lineage

    async def lineage_data(self, request: Request, s: Session) -> dict[str, Any]:
        """The monitor's own lineage API, in process: the graph around `node`, drawn and tabled; the API's
        refusals (404 unknown node, 403 another tenant or a role that may not read it) shown as they came."""
        q = request.query_params
        node = (q.get("node") or "").strip()
        direction = q.get("direction") or "both"
        ctx: dict[str, Any] = {"node": node, "direction": direction, "directions": LINEAGE_DIRECTIONS,
                               "answer": None, "view": None, "graph_svg": None, "by_id": {},
                               "tenants": await self.visible_tenants(s)}  # fmt: skip
        if not node:
            return ctx
        got = await self.api(s, "monitor", "GET", "/api/v1/lineage",
                             params={"node": node, "tenant": s.tenant, "direction": direction})  # fmt: skip
        ctx["answer"] = got
        if not got.ok:
            if got.status in (400, 403, 404):
                ctx["status"] = got.status
            return ctx
        view = lineage_view.layout(got.body)
        centre = {p.id for p in view.nodes if node in (p.id, p.name)} or {
            p.id for p in view.nodes if p.kind == "dataset" and (p.name.endswith("." + node) or
                                                                 p.name.rstrip("/").endswith("/" + node))
        }  # fmt: skip
        ctx |= {
            "view": view,
            "centre": centre,
            "by_id": {p.id: p for p in view.nodes},
            "graph_svg": lineage_view.svg(
                view, centre, lambda p: self.url("lineage", s, node=p.name, direction=direction)
            ),
        }
        return ctx

    # ------------------------------------------------------------------ dead letters

    async def dlq_data(self, request: Request, s: Session) -> dict[str, Any]:
        error = None
        topics: list[dict[str, Any]] = []
        try:
            ends = await self.dlq.end_offsets()
            for name in sorted(dlq_topic(t) for t in TOPICS):
                if not ends.get(name):
                    continue
                messages = await read_dlq(self.bootstrap, self.topic_prefix + name, timeout_ms=1000)
                topics.append(
                    {"topic": name, "count": len(messages), "messages": [m.summary() for m in messages][-50:]}
                )
        except Exception as exc:  # the broker is unreachable: say so, render the rest
            error = f"Kafka: {type(exc).__name__}: {exc}"[:300]
        return {"topics": topics, "error": error, "preview": None, "tenants": await self.visible_tenants(s)}

    async def dlq_replay(self, request: Request) -> Response:
        """POST `topic`, `ref`: a dry run first (what would be sent where), then `confirm` sends it."""
        with tracer.start_as_current_span("console dlq replay"):
            form = await _form(request)
            try:
                s = resolve(request, self.verifier, self.key)
            except AuthError as err:
                return self.refused(request, err)
            if not s.is_admin:
                return self.refused(request, AuthError(403, "the dead letters page is for platform admins only"))
            if not secrets.compare_digest(form.get("csrf", ""), s.csrf):
                return self.render(
                    "forbidden.html", 403, why="the form token does not match this sign-in", nav=[], s=None
                )
            topic, ref = form.get("topic", ""), form.get("ref", "")
            if topic not in {dlq_topic(t) for t in TOPICS}:
                return RedirectResponse(self.url("dlq", s, fail=f"{topic!r} is not a dead-letter topic"), 303)
            confirm = form.get("confirm", "")
            dry = not (confirm and secrets.compare_digest(confirm, signed(self.key, s.raw, topic, ref)))
            try:
                chosen = await replay(
                    self.bootstrap, self.topic_prefix + topic, Filter(refs=frozenset({ref})), dry_run=dry
                )
            except ValueError as exc:
                return RedirectResponse(self.url("dlq", s, fail=str(exc)), 303)
            if not chosen:
                return RedirectResponse(self.url("dlq", s, fail=f"{topic} has no message {ref}"), 303)
            if not dry:
                log.info("console_dlq_replayed", topic=topic, ref=ref, by=s.user)
                back = chosen[0].letter.topic.removeprefix(self.topic_prefix)
                return RedirectResponse(self.url("dlq", s, notice=f"replayed {topic} {ref} -> {back}"), 303)
            ctx = await self.dlq_data(request, s)
            ctx["preview"] = {
                "topic": topic, "ref": ref, "confirm": signed(self.key, s.raw, topic, ref),
                "messages": [{**m.summary(), "to": m.letter.topic.removeprefix(self.topic_prefix)} for m in chosen],
            }  # fmt: skip
            return self.render("dlq.html", **ctx, **self.common(request, s, "dlq"), took_ms=0)

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PREFIX}/", self.home, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login_form, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{PREFIX}/tenants", self.page("tenants", self.tenants_data), methods=["GET"]),
            Route(f"{PREFIX}/tables", self.page("tables", self.tables_data), methods=["GET"]),
            Route(f"{PREFIX}/runs", self.page("runs", self.runs_data), methods=["GET"]),
            Route(f"{PREFIX}/runs/{{run_id:str}}", self.page("run", self.run_data), methods=["GET"]),
            Route(f"{PREFIX}/runs/{{run_id:str}}/{{action:str}}", self.action(self.run_action), methods=["POST"]),
            Route(f"{PREFIX}/agents", self.page("agents", self.agents_data), methods=["GET"]),
            Route(f"{PREFIX}/ask", self.action(self.ask), methods=["POST"]),
            Route(f"{PREFIX}/sql", self.page("sql", self.sql_data), methods=["GET"]),
            Route(f"{PREFIX}/sql", self.sql_run, methods=["POST"]),
            Route(f"{PREFIX}/approvals", self.page("approvals", self.approvals_data), methods=["GET"]),
            Route(
                f"{PREFIX}/approvals/{{insight_id:str}}/{{decision:str}}", self.action(self.decide), methods=["POST"]
            ),
            Route(f"{PREFIX}/alerts", self.page("alerts", self.alerts_data), methods=["GET"]),
            Route(f"{PREFIX}/silences", self.action(self.silence), methods=["POST"]),
            Route(f"{PREFIX}/silences/{{silence_id:str}}/expire", self.action(self.expire), methods=["POST"]),
            Route(f"{PREFIX}/cost", self.page("cost", self.cost_data), methods=["GET"]),
            Route(f"{PREFIX}/lineage", self.page("lineage", self.lineage_data), methods=["GET"]),
            Route(f"{PREFIX}/dlq", self.page("dlq", self.dlq_data, admin=True), methods=["GET"]),
            Route(f"{PREFIX}/dlq/replay", self.dlq_replay, methods=["POST"]),
            Mount(f"{PREFIX}/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
        ]


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form body (the console's forms post nothing else; no multipart parser needed)."""
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=50))


def _num(value: Any) -> float | None:
    if value is None or value == "+Inf":
        return None
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _money(value: Any) -> str:
    number = _num(value)
    return "-" if number is None else f"{number:,.2f}"


def _when(value: Any) -> datetime | None:
    """An ISO time from a service, aware (a service on SQLite answers naive UTC times)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ago(value: Any) -> str:
    when = _when(value)
    if when is None:
        return str(value) if value else "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    if seconds < 90:
        return f"{max(0, int(seconds))} s ago"
    if seconds < 5400:
        return f"{int(seconds // 60)} min ago"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def _run_view(body: dict[str, Any]) -> dict[str, Any]:
    """A run with what the pages show: its latest attempt's outcome, duration, error, tasks and run page."""
    attempts = body.get("attempts") or []
    last = attempts[-1] if attempts else {}
    start, end = _when(last.get("start_time")), _when(last.get("end_time"))
    duration = (end - start).total_seconds() if start and end else None
    outcome = "active" if body.get("active") else (last.get("outcome") or (body.get("result_state") or "").lower())
    return {
        **body,
        "outcome": outcome,
        "duration": duration,
        "error": last.get("state_message") if last.get("outcome") not in (None, "success") else None,
        "tasks": last.get("tasks") or [],
        "run_page_url": last.get("run_page_url"),
        "can_repair": not body.get("active") and last.get("outcome") in ("failure", "timeout", "canceled"),
        "can_cancel": bool(body.get("active")),
    }


def _today() -> date:
    return datetime.now(UTC).date()
