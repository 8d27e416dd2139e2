"""The guided demo: one tenant from onboarding to gold (and on through the later services as they land), each
step verified against its real effect, never against a log line.

Steps run against a running stack (its `StackState`): the MCP simulator, the local workspace through
databricks-sdk, and the services' HTTP APIs with a development token. A step whose service has not landed yet
(its route answers 404) is reported as skipped, with the reason; it is never faked.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.service import sql
from rich.console import Console

from apev_contracts import DatasourceCreated, naming
from apev_contracts.envelope import encode, new_event
from apev_runtime.auth import mint_token
from apev_stack.state import StackState
from apev_stack.supervisor import DEMO_APPROVER

TENANT = "demo-dental"
QUESTION = "What are our top performing locations?"
AGENT = "demo"
SOURCE = "apev/demo"
OFF_CYCLE_LOCATION = "downtown_007"
OFF_CYCLE_FACTOR = Decimal(3)
REVIEW_STATUS = "under_review"  # what the agent's payroll insight proposes for the run (demo_agent.py)
JOBS_SKU = "STANDARD_JOBS_COMPUTE"
GOLD_STEP = "gold tables equal MCP"
ALERT_JOB_KEY = "claims-reconcile"
# The tenant's job DBUs and dollars per day, straight from the system tables the sampler reads (fixed names).
JOBS_COST_SQL = (
    "SELECT CAST(u.usage_date AS STRING), CAST(sum(u.usage_quantity) AS STRING), "
    "CAST(sum(u.usage_quantity * p.pricing.effective_list.default) AS STRING) "
    "FROM system.billing.usage u JOIN system.billing.list_prices p ON u.sku_name = p.sku_name "
    "AND u.cloud = p.cloud AND u.usage_unit = p.usage_unit AND u.usage_start_time >= p.price_start_time "
    "AND (p.price_end_time IS NULL OR u.usage_start_time < p.price_end_time) "
    "WHERE u.custom_tags['ap_tenant_id'] = 'demo-dental' AND u.sku_name = 'STANDARD_JOBS_COMPUTE' GROUP BY 1 ORDER BY 1"
)
ALERT_SETTLE_SECONDS = 6.0  # three more of the stack's 2 s evaluations: a second page would show by then


@dataclass(frozen=True)
class Source:
    datasource_id: str
    name: str
    system: str
    entities: tuple[str, ...]


SOURCES = (
    Source("adp-payroll", "ADP payroll", "adp", ("employees", "payroll_runs")),
    Source("netsuite-finance", "NetSuite finance", "netsuite", ("financials", "journal_entries")),
    Source("dentalintel-kpis", "DentalIntel KPIs", "dentalintel", ("production_kpis", "locations")),
)
# gold table, SQL aggregate, MCP entity, MCP field summed: gold must equal what the simulator holds.
GOLD_CHECKS = (
    ("payroll_summary", "sum(gross_pay)", "payroll_runs", "GROSS_PAY", "adp-payroll"),
    ("financial_summary", "sum(revenue)", "financials", "REVENUE", "netsuite-finance"),
    ("monthly_kpis", "sum(production)", "production_kpis", "TOTAL_PRODUCTION", "dentalintel-kpis"),
)


class StepFailed(Exception):
    """The step's effect is not there (or not right); the message says what was expected and what was seen."""


class Skipped(Exception):
    """The step's service has not landed; the message says why."""


@dataclass
class StepResult:
    name: str
    ok: bool | None
    seconds: float
    detail: str = ""
    links: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 2)}
        if self.skipped:
            out["skipped"] = self.skipped
        elif self.ok is False:
            out["error"] = self.detail
        return out


@dataclass
class Outcome:
    detail: str
    links: list[str] = field(default_factory=list)


class Demo:
    """Shared clients and what earlier steps learned (run ids, integration ids)."""

    def __init__(self, state: StackState, console: Console | None = None, timeout: float = 150.0) -> None:
        self.state = state
        self.console = console or Console(highlight=False)
        self.timeout = timeout
        self.http = httpx.AsyncClient(timeout=30)
        self.token = mint_token(state.jwt_secret, tenant_id=TENANT, roles=["admin"], subject="demo", ttl_seconds=3600)
        self._ws: WorkspaceClient | None = None
        self.datasources: dict[str, dict[str, Any]] = {}
        self.results: list[StepResult] = []
        self.insight_rows: list[list[Any]] = []
        # The failing job of the last step starts as soon as gold is there (see `run`), so monitor's group_wait
        # (30 s) passes while the agent is deployed instead of at the end.
        self.failing: asyncio.Task[tuple[dict[str, Any], dict[str, Any]]] | None = None
        self.began = datetime.now(UTC)

    # ------------------------------------------------------------------ clients

    def ws(self) -> WorkspaceClient:
        if self._ws is None:
            cfg = Config(host=self.state.url("workspace"), token=self.state.databricks_token, auth_type="pat")
            self._ws = WorkspaceClient(config=cfg)
        return self._ws

    async def dbx(self, fn: Callable[[WorkspaceClient], Any]) -> Any:
        return await asyncio.to_thread(lambda: fn(self.ws()))

    async def api(self, part: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return await self.http.request(method, self.state.url(part) + path, headers=headers, **kw)

    async def mcp(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.state.mcp_admin_key}", "X-Tenant-ID": TENANT}
        return await self.http.request(method, self.state.url("mcp") + path, headers=headers, **kw)

    async def until(self, what: str, probe: Callable[[], Awaitable[Any]], timeout: float | None = None) -> Any:
        """Poll `probe` until it returns something truthy; StepFailed naming `what` and the last value if not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Any = None
        while True:
            last = await probe()
            if last:
                return last
            if time.monotonic() > deadline:
                raise StepFailed(f"{what}: not within {timeout or self.timeout:.0f}s")
            await asyncio.sleep(0.5)

    async def landed(self, part: str, method: str, path: str, what: str) -> None:
        """Skip unless `part` serves `path` (a route that is not there answers 404 even without a token)."""
        got = await self.http.request(method, self.state.url(part) + path, json={})
        if got.status_code == 404 and "not_found" not in got.text:
            raise Skipped(f"{part} has no {method} {path} yet ({what} has not landed on main)")

    # ------------------------------------------------------------------ running

    async def run_step(self, name: str, fn: Callable[[], Awaitable[Outcome]]) -> StepResult:
        started = time.monotonic()
        status = self.console.status(f"[bold]{name}[/] ...") if self.console.is_terminal else None
        if status:
            status.start()
        try:
            out = await fn()
            result = StepResult(name, True, time.monotonic() - started, out.detail, out.links)
        except Skipped as exc:
            result = StepResult(name, None, time.monotonic() - started, skipped=str(exc))
        except StepFailed as exc:
            result = StepResult(name, False, time.monotonic() - started, str(exc))
        except Exception as exc:  # an unexpected error is a failed step, named, not a traceback
            result = StepResult(name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"[:500])
        finally:
            if status:
                status.stop()
        self.results.append(result)
        self.print_line(result)
        return result

    def print_line(self, r: StepResult) -> None:
        mark = {True: "[green]✔ ok     [/]", False: "[red]✘ failed [/]", None: "[yellow]- skipped[/]"}[r.ok]
        text = r.skipped if r.ok is None else r.detail
        links = "".join(f"\n{'':>44}[link={u}]{u}[/link]" for u in r.links)
        self.console.print(f"{mark} {r.name:<30} {r.seconds:6.1f}s  {text}{links}", soft_wrap=True)

    async def run(self, steps: list[tuple[str, Callable[[], Awaitable[Outcome]]]] | None = None) -> bool:
        for name, fn in steps or self.steps():
            result = await self.run_step(name, fn)
            if result.ok is False:
                break  # later steps build on this one; they are reported as not run
            if name == GOLD_STEP and steps is None:
                self.failing = asyncio.create_task(self.fail_twice())
        done = {r.name for r in self.results}
        for name, _ in steps or self.steps():
            if name not in done:
                self.results.append(StepResult(name, False, 0.0, "not run: an earlier step failed"))
        return all(r.ok is not False for r in self.results)

    def steps(self) -> list[tuple[str, Callable[[], Awaitable[Outcome]]]]:
        return [
            ("mcp tenant demo-dental", self.create_tenant),
            ("onboard ADP, NetSuite, DentalIntel", self.onboard),
            ("catalog, principals, grants", self.catalog),
            ("ingestion runs and tasks", self.ingestion_runs),
            (GOLD_STEP, self.gold),
            ("agent answers", self.agent),
            ("insights run", self.insights),
            ("payroll insight held, approved, written", self.writeback),
            ("cost sample", self.cost),
            ("job fails twice: one page", self.alert),
        ]

    async def close(self) -> None:
        if self.failing is not None and not self.failing.done():
            self.failing.cancel()
            await asyncio.wait([self.failing])
        await self.http.aclose()

    # ------------------------------------------------------------------ steps

    async def create_tenant(self) -> Outcome:
        base = self.state.url("mcp")
        made = await self.http.post(
            f"{base}/api/v1/tenants/", json={"tenant_code": TENANT, "tenant_name": "Demo Dental"}
        )
        if made.status_code not in (201, 409):
            raise StepFailed(f"POST /api/v1/tenants/ answered {made.status_code}: {made.text[:200]}")
        got = await self.http.get(f"{base}/api/v1/tenants/{TENANT}")
        if got.status_code != 200 or got.json().get("status") != "active":
            raise StepFailed(f"MCP tenant {TENANT} is not active: {got.status_code} {got.text[:200]}")
        verb = "created" if made.status_code == 201 else "already there"
        run = await self.plant_off_cycle_payroll()
        return Outcome(
            f"{verb}; GET /api/v1/tenants/{TENANT}: active; in ADP, payroll run {run['PAYROLL_RUN_ID']} of "
            f"{run['PRACTICE_LOCATION']} ({run['PAY_DATE']}) entered at {OFF_CYCLE_FACTOR}x: GROSS_PAY "
            f"{run['before']} -> {run['GROSS_PAY']} (for the agent to find)",
            [f"{base}/api/v1/tenants/{TENANT}"],
        )

    async def plant_off_cycle_payroll(self) -> dict[str, Any]:
        """The scene: the newest payroll run of one location is entered in ADP at several times its usual gross
        (through MCP's own write-back API, as a correction would be). The agent's insights run must find it in
        gold; the demo never tells serving or writeback about it."""
        got = await self.mcp("GET", "/api/v1/data/payroll_runs", params={"location": OFF_CYCLE_LOCATION, "limit": 1000})
        if got.status_code != 200 or not got.json():
            raise StepFailed(f"MCP payroll_runs of {OFF_CYCLE_LOCATION}: {got.status_code} {got.text[:200]}")
        run = max(got.json(), key=lambda r: (r["PAY_DATE"], r["PAYROLL_RUN_ID"]))
        if run["STATUS"] != "processed":  # planted already (a second demo on the same simulator)
            return {**run, "before": "(already planted)"}
        gross = Decimal(run["GROSS_PAY"]) * OFF_CYCLE_FACTOR
        changes = {"GROSS_PAY": f"{gross:.2f}", "NET_PAY": f"{gross * Decimal('0.78'):.2f}",
                   "TAXES_WITHHELD": f"{gross * Decimal('0.22'):.2f}", "STATUS": "off_cycle"}  # fmt: skip
        body = {"entity_type": "payroll_runs", "entity_id": run["PAYROLL_RUN_ID"], "changes": changes,
                "reason": "demo scene: an off-cycle run entered at several times the usual gross"}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.state.mcp_admin_key}", "X-Tenant-ID": TENANT,
                   "Idempotency-Key": f"apev-demo-plant-{run['PAYROLL_RUN_ID']}"}  # fmt: skip
        put = await self.http.post(
            self.state.url("mcp") + "/api/v1/integrations/adp/update", json=body, headers=headers
        )
        if put.status_code != 200:
            raise StepFailed(f"planting the off-cycle payroll run: {put.status_code} {put.text[:300]}")
        return {**run, **changes, "before": run["GROSS_PAY"]}

    async def onboard(self) -> Outcome:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.state.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for s in SOURCES:
                payload = DatasourceCreated(
                    tenant_id=TENANT, datasource_id=s.datasource_id, name=s.name, system=s.system,
                    entities=list(s.entities), mcp_tenant_code=TENANT,
                )  # fmt: skip
                record = encode(new_event(payload, tenant_id=TENANT, source=SOURCE))
                topic = self.state.topic_prefix + record.topic
                await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
        finally:
            await producer.stop()

        async def accepted() -> bool:
            for s in SOURCES:
                got = await self.api("ingest", "GET", f"/api/v1/datasources/{s.datasource_id}")
                if got.status_code != 200:
                    return False
                self.datasources[s.datasource_id] = got.json()
            return True

        await self.until("ingest recording the three data sources", accepted, 60)
        states = ", ".join(f"{k}: {v['state']}" for k, v in self.datasources.items())
        return Outcome(f"3 datasource.created events published; ingest has them ({states})")

    async def catalog(self) -> Outcome:
        async def provisioned() -> bool:
            for ds in self.datasources:
                got = await self.api("ingest", "GET", f"/api/v1/datasources/{ds}")
                if got.status_code != 200 or got.json()["state"] in ("accepted", "provisioned"):
                    return False
                self.datasources[ds] = got.json()
            return True

        await self.until("ingest provisioning the tenant and registering the integrations", provisioned)
        cat = naming.catalog_name(TENANT)

        def check(w: WorkspaceClient) -> str:
            w.catalogs.get(cat)
            schemas = {s.name for s in w.schemas.list(catalog_name=cat)}
            missing = {"bronze", "silver", "gold"} - schemas
            if missing:
                raise StepFailed(f"catalog {cat} lacks schemas {sorted(missing)}")
            groups = naming.role_groups(TENANT)
            for g in groups.values():
                if not list(w.groups.list(filter=f'displayName eq "{g}"')):
                    raise StepFailed(f"group {g} does not exist")
            for sp in (naming.pipeline_principal(TENANT), naming.reader_principal(TENANT)):
                if not list(w.service_principals.list(filter=f'displayName eq "{sp}"')):
                    raise StepFailed(f"service principal {sp} does not exist")
            on_cat = {a.principal: a.privileges for a in w.grants.get("catalog", cat).privilege_assignments or []}
            admin_privs = {str(p.value) for p in on_cat.get(groups["admin"]) or []}
            if "ALL_PRIVILEGES" not in admin_privs:
                raise StepFailed(f"{groups['admin']} lacks ALL_PRIVILEGES on {cat} (has {sorted(admin_privs)})")
            gold = w.grants.get("schema", f"{cat}.gold").privilege_assignments or []
            analyst = {str(p.value) for a in gold if a.principal == groups["analyst"] for p in a.privileges or []}
            if "SELECT" not in analyst:
                raise StepFailed(f"{groups['analyst']} cannot SELECT in {cat}.gold (has {sorted(analyst)})")
            return f"{cat} (bronze, silver, gold); groups {', '.join(groups.values())}; 2 service principals; grants"

        detail = await self.dbx(check)
        return Outcome(detail, [f"{self.state.url('workspace')}/"])

    async def ingestion_runs(self) -> Outcome:
        async def finished() -> bool:
            for ds in self.datasources:
                got = await self.api("ingest", "GET", f"/api/v1/datasources/{ds}")
                body = got.json()
                if body.get("last_run") is None:
                    return False
                if body["last_run"]["outcome"] != "success":
                    raise StepFailed(f"{ds}: first ingestion run ended {body['last_run']['outcome']}")
                self.datasources[ds] = body
            return True

        await self.until("each data source's first ingestion run", finished)
        links, parts = [], []
        for ds, body in self.datasources.items():
            run_id = body["last_run"]["run_id"]
            tracked = await self.api("jobs", "GET", f"/api/v1/databricks/runs/{run_id}")
            if tracked.status_code != 200 or tracked.json()["result_state"] != "SUCCESS":
                raise StepFailed(f"jobs service on run {run_id}: {tracked.status_code} {tracked.text[:200]}")
            run = await self.dbx(functools.partial(_get_run, run_id=int(run_id)))
            tasks = {
                t.task_key: t.state.result_state.value for t in run.tasks or [] if t.state and t.state.result_state
            }
            bad = {k: v for k, v in tasks.items() if v != "SUCCESS"}
            if len(tasks) < 5 or bad:
                raise StepFailed(f"run {run_id} of {ds}: tasks {tasks}")
            parts.append(f"{ds} run {run_id} ({len(tasks)} tasks)")
            links.append(str(run.run_page_url))
        return Outcome("SUCCESS: " + "; ".join(parts), links)

    async def _mcp_sum(self, integration_id: str, entity: str, column: str) -> tuple[Decimal, int]:
        total, count, cursor = Decimal(0), 0, None
        while True:
            params: dict[str, Any] = {"entity_type": entity, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            got = await self.mcp("GET", f"/api/v1/integrations/{integration_id}/data", params=params)
            if got.status_code != 200:
                raise StepFailed(f"MCP {entity}: {got.status_code} {got.text[:200]}")
            body = got.json()
            for rec in body["data"]:
                total += Decimal(rec[column])
                count += 1
            cursor = body.get("next_cursor")
            if not cursor:
                return total, count

    async def gold(self) -> Outcome:
        cat = naming.catalog_name(TENANT)
        wid = await self.dbx(lambda w: str(next(iter(w.warehouses.list())).id))
        parts = []
        for table, agg, entity, column, ds in GOLD_CHECKS:
            stmt = f"SELECT CAST({agg} AS STRING), count(*) FROM {cat}.gold.{table}"  # noqa: S608 - fixed names

            def query(w: WorkspaceClient, stmt: str = stmt) -> list[Any]:
                done = w.statement_execution.execute_statement(statement=stmt, warehouse_id=wid, wait_timeout="30s")
                if done.status is None or done.status.state != sql.StatementState.SUCCEEDED or not done.result:
                    raise StepFailed(f"{stmt}: {done.status}")
                rows: list[list[Any]] = done.result.data_array or [[None, 0]]
                return list(rows[0])

            value, rows = await self.dbx(query)
            integration = self.datasources[ds]["mcp_integration_id"]
            want, records = await self._mcp_sum(integration, entity, column)
            if value is None or Decimal(value) != want:
                raise StepFailed(f"gold.{table} {agg} = {value}, MCP {entity} sum of {column} = {want}")
            parts.append(f"gold.{table} {agg}={Decimal(value):,.2f} ({rows} rows) = MCP {entity} ({records} records)")
        return Outcome("; ".join(parts))

    async def sql_rows(self, statement: str) -> list[list[Any]]:
        def query(w: WorkspaceClient) -> list[list[Any]]:
            wid = str(next(iter(w.warehouses.list())).id)
            done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="30s")
            if done.status is None or done.status.state != sql.StatementState.SUCCEEDED or not done.result:
                raise StepFailed(f"{statement}: {done.status}")
            return list(done.result.data_array or [])

        rows: list[list[Any]] = await self.dbx(query)
        return rows

    async def agent(self) -> Outcome:
        await self.landed("serving", "POST", "/api/v1/agents", "serving (agents and invoke)")
        from apev_pipeline.agents import demo_agent_path

        # The agent plans through a chat endpoint: locally the workspace's deterministic local-only stand-in.
        await asyncio.to_thread(ensure_chat_endpoint, self.state.url("workspace"), self.state.databricks_token)
        body = {
            "agent_id": AGENT, "name": "Demo Dental analytics agent", "model_source": demo_agent_path(),
            "tables": ["gold.monthly_kpis", "gold.payroll_summary"],
            "insights_schedule": {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "UTC"},
        }  # fmt: skip
        made = await self.api("serving", "POST", "/api/v1/agents", json=body)
        if made.status_code not in (200, 202, 409):
            raise StepFailed(f"POST /api/v1/agents answered {made.status_code}: {made.text[:300]}")

        async def serving() -> dict[str, Any] | None:
            got = await self.api("serving", "GET", f"/api/v1/agents/{AGENT}")
            if got.status_code != 200:
                return None
            agent = dict(got.json())
            endpoint = agent.get("endpoint") or {}
            live = [v for v in agent.get("versions") or [] if v.get("state") == "serving"]
            rejected = [v for v in agent.get("versions") or [] if v.get("state") == "rejected"]
            if rejected and not live:
                raise StepFailed(f"version {rejected[-1]['version']} was not rolled out: {rejected[-1].get('reason')}")
            return agent if endpoint.get("ready") == "READY" and live else None

        agent = await self.until("the agent's endpoint READY with a version serving", serving)
        answer = await self.api(
            "serving", "POST", f"/api/v1/agents/{AGENT}/invoke", json={"input": {"query": QUESTION}}
        )
        if answer.status_code != 200:
            raise StepFailed(f"invoke answered {answer.status_code}: {answer.text[:300]}")
        out = answer.json()["output"]
        cat = naming.catalog_name(TENANT)
        expected = await self.sql_rows(
            f"SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2)) FROM {cat}.gold.monthly_kpis "  # noqa: S608
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
        )
        cited = [[str(r[0]), str(r[1])] for c in out.get("citations") or [] for r in c.get("rows") or []]
        if cited != [[str(a), str(b)] for a, b in expected]:
            raise StepFailed(f"the answer cites {cited}, gold says {expected}")
        missing = [f"{loc} with {v}" for loc, v in expected if f"{loc} with {v}" not in out.get("answer", "")]
        if missing:
            raise StepFailed(f"the answer lacks {missing}: {out.get('answer')!r}")
        versions = agent.get("versions") or []
        runs = [v.get("run_id") for v in versions if v.get("run_id")]
        accuracy = versions[-1].get("answer_accuracy") if versions else None
        links = []
        if runs:
            deploy = await self.dbx(functools.partial(_get_run, run_id=int(runs[-1])))
            links.append(str(deploy.run_page_url))
        if versions and versions[-1].get("mlflow_run_url"):
            links.append(str(versions[-1]["mlflow_run_url"]))
        return Outcome(
            f"{QUESTION!r} -> {out['answer'][:160]!r} (= gold; deploy run {runs[-1] if runs else '?'},"
            f" smoke answer_accuracy {accuracy})",
            links,
        )

    async def insights(self) -> Outcome:
        await self.landed("serving", "POST", "/api/v1/agents", "serving (insights jobs)")
        name = naming.job_name(TENANT, "agent-insights", AGENT)
        job = await self.until(f"job {name}", lambda: self.dbx(lambda w: next(iter(w.jobs.list(name=name)), None)))
        run = await self.api("jobs", "POST", f"/api/v1/databricks/jobs/{job.job_id}/run", json={})
        if run.status_code != 202:
            raise StepFailed(f"POST jobs/{job.job_id}/run answered {run.status_code}: {run.text[:300]}")
        request_id = run.json()["request_id"]

        async def finished() -> dict[str, Any] | None:
            got = await self.api("jobs", "GET", f"/api/v1/databricks/requests/{request_id}")
            state = (got.json() or {}).get("run_state") if got.status_code == 200 else None
            return got.json() if state and not state["active"] and state["result_state"] else None

        done = await self.until("the insights run", finished)
        if done["run_state"]["result_state"] != "SUCCESS":
            raise StepFailed(f"insights run {done['run_id']} ended {done['run_state']}")
        cat = naming.catalog_name(TENANT)
        rows = await self.sql_rows(
            f"SELECT insight_id, kind, target_system, entity_type, entity_id, changes, reason, confidence, "  # noqa: S608
            f"review_required FROM {cat}.gold.agent_insights WHERE agent_id = '{AGENT}' ORDER BY kind, entity_id"
        )
        if not rows:
            raise StepFailed(f"run {done['run_id']} succeeded but {cat}.gold.agent_insights has no row")
        self.insight_rows = rows
        kinds = ", ".join(f"{r[1]} ({r[4]})" for r in rows)
        ids = {str(r[0]) for r in rows}

        async def published() -> list[Any] | None:
            events = await self.topic_events("insight.created", lambda e: e.tenantid == TENANT, timeout=5)
            return events if {e.data.insight_id for e in events} >= ids else None

        events = await self.until("serving's insight.created for every row", published)
        mine = [e for e in events if e.data.insight_id in ids]
        if len({e.id for e in mine}) != len(ids) or any(e.source != "/apev/serving" for e in mine):
            raise StepFailed(f"insight.created for {len(ids)} rows: {[(e.id, e.source) for e in mine]}")
        run_page = await self.dbx(functools.partial(_get_run, run_id=int(done["run_id"])))
        return Outcome(
            f"run {done['run_id']} SUCCESS; gold.agent_insights: {kinds}; serving published {len(mine)} "
            "insight.created",
            [str(run_page.run_page_url)],
        )

    async def writeback(self) -> Outcome:
        """Serving published the insights run's rows as `insight.created`; writeback must hold the payroll one
        (a write to ADP payroll runs), post it to Slack, apply it once approved there, and MCP must show it."""
        await self.landed("writeback", "GET", "/api/v1/writeback/insights", "writeback (held insights, Slack approval)")
        payroll = [r for r in self.insight_rows if r[1] == "payroll_anomaly"]
        if not payroll:
            raise StepFailed(
                f"the insights run wrote no payroll_anomaly row (rows: {[r[1] for r in self.insight_rows]})"
            )
        insight_id, run_id = str(payroll[0][0]), str(payroll[0][4])

        async def insight() -> dict[str, Any] | None:
            got = await self.api("writeback", "GET", f"/api/v1/writeback/insights/{insight_id}")
            return dict(got.json()) if got.status_code == 200 else None

        async def held() -> dict[str, Any] | None:
            body = await insight()
            view = (body or {}).get("insight", body or {})
            earlier = view.get("state") == "applied" and _at(view["decided_at"]) < self.began
            return view if earlier or (view.get("state") == "held" and view.get("slack_posted_at")) else None

        view = await self.until(f"serving's insight {insight_id} held by writeback and posted to Slack", held)
        if view["state"] == "applied":  # `make run` on an earlier stack's data: approved and written back then
            if view.get("decided_by") != DEMO_APPROVER or not view.get("change_id"):
                raise StepFailed(f"insight {insight_id} applied on an earlier run, but not as approved: {view}")
            return Outcome(
                f"serving's insight {insight_id[:8]} ({run_id}) was held, approved by {view['decided_by']} and "
                f"written back on an earlier run at {view['decided_at']} (change {view['change_id']}); not again",
                [f"{self.state.url('writeback')}/api/v1/writeback/insights/{insight_id}"],
            )
        if (view.get("target_system"), view.get("entity_type"), view.get("entity_id")) != ("adp", "payroll_runs",
                                                                                           run_id):  # fmt: skip
            raise StepFailed(f"writeback holds {view} for insight {insight_id}, not adp/payroll_runs/{run_id}")
        sinks = self.state.url("sinks")

        async def message() -> dict[str, Any] | None:
            messages = (await self.http.get(f"{sinks}/_admin/slack/messages")).json()
            mine = [m for m in messages if insight_id in json.dumps(m)]
            return mine[-1] if mine else None

        posted = await self.until("the approval message in the Slack stand-in", message)
        click = await self.http.post(
            f"{sinks}/_admin/slack/messages/{posted['id']}/click",
            json={"action_id": "writeback_approve", "user_id": DEMO_APPROVER, "user_name": "demo-ops"},
        )
        if click.status_code != 200 or click.json().get("status") != 200:
            raise StepFailed(f"the Approve click was answered {click.status_code} {click.text[:300]}")

        async def applied() -> dict[str, Any] | None:
            body = await insight()
            view = (body or {}).get("insight", body or {})
            if view.get("state") == "failed":
                raise StepFailed(f"the approved write-back failed: {view.get('detail')}")
            return view if view.get("state") == "applied" else None

        view = await self.until("the approved insight applied", applied)
        now = await self.mcp("GET", "/api/v1/data/payroll_runs", params={"location": OFF_CYCLE_LOCATION, "limit": 1000})
        record = next((r for r in now.json() if r["PAYROLL_RUN_ID"] == run_id), None)
        if record is None or record["STATUS"] != REVIEW_STATUS:
            raise StepFailed(f"MCP shows STATUS {record and record['STATUS']} for {run_id}, not {REVIEW_STATUS}")
        changes = (await self.mcp("GET", "/api/v1/integrations/adp/changes", params={"limit": 1000})).json()
        mine = [c for c in changes if c["entity_id"] == run_id and c["changes"].get("STATUS") == REVIEW_STATUS]
        if len(mine) != 1:
            raise StepFailed(f"the simulator recorded {len(mine)} write-backs of STATUS to {run_id}, not one")
        return Outcome(
            f"serving's insight {insight_id[:8]} (payroll_anomaly, {run_id}): held "
            f"({view.get('policy_reason') or 'payroll'}), Slack message {posted['id']}, approved by {DEMO_APPROVER}, "
            f"MCP {run_id} STATUS={record['STATUS']} version {record['VERSION']} (change {mine[0]['change_id']})",
            [f"{self.state.url('writeback')}/api/v1/writeback/insights/{insight_id}"],
        )

    async def send(self, event: Any) -> None:
        from aiokafka import AIOKafkaProducer

        record = encode(event)
        producer = AIOKafkaProducer(bootstrap_servers=self.state.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            topic = self.state.topic_prefix + record.topic
            await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
        finally:
            await producer.stop()

    async def topic_events(self, topic: str, match: Callable[[Any], bool], timeout: float = 30.0) -> list[Any]:
        """The events on `topic` (from its start) that `match`: read until the topic's end once one matched, or
        until `timeout` (then whatever matched, maybe nothing)."""
        from aiokafka import AIOKafkaConsumer

        from apev_contracts.envelope import decode

        consumer = AIOKafkaConsumer(
            self.state.topic_prefix + topic, bootstrap_servers=self.state.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        found: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        event = decode(r.value, list(r.headers), topic=topic)
                        if match(event):
                            found.append(event)
                if found and not batch:
                    return found
        finally:
            await consumer.stop()
        return found

    async def cost(self) -> Outcome:
        """Monitor samples system.billing.usage now; the tenant's job DBUs in its cost API and on `cost.sampled`
        must equal a direct SQL sum over the same system table."""
        await self.landed("monitor", "POST", "/api/v1/monitor/cost/samples", "monitor (billing sampler)")
        if self.failing is not None:  # no run may finish between the sample and the direct SQL sum
            await asyncio.wait([self.failing])
        sampled = await self.api("monitor", "POST", "/api/v1/monitor/cost/samples")
        if sampled.status_code != 200:
            raise StepFailed(f"POST /api/v1/monitor/cost/samples answered {sampled.status_code}: {sampled.text[:300]}")
        published = sampled.json()["published"]
        rows = await self.sql_rows(JOBS_COST_SQL)
        if not rows:
            raise StepFailed(f"system.billing.usage has no {JOBS_SKU} row tagged ap_tenant_id={TENANT}")
        day, dbus, dollars = rows[-1][0], Decimal(rows[-1][1]), Decimal(rows[-1][2])
        places = Decimal("0.000001")
        got = await self.api("monitor", "GET", f"/api/v1/monitor/tenants/{TENANT}/cost", params={"from": day})
        days = {d["usage_date"]: d for d in got.json().get("days", [])} if got.status_code == 200 else {}
        skus = {x["sku"]: x for x in days.get(day, {}).get("skus", [])}
        jobs = skus.get(JOBS_SKU)
        if jobs is None:
            raise StepFailed(f"monitor's cost API has no {JOBS_SKU} for {TENANT} on {day}: {got.text[:300]}")
        if (Decimal(jobs["dbus"]), Decimal(jobs["dollars"])) != (dbus.quantize(places), dollars.quantize(places)):
            raise StepFailed(f"monitor says {jobs['dbus']} DBUs / ${jobs['dollars']}, system.billing.usage "
                             f"{dbus} DBUs / ${dollars}")  # fmt: skip
        if dollars <= 0:
            raise StepFailed(f"{TENANT}'s {JOBS_SKU} on {day} costs {dollars}")

        def the_sample(e: Any) -> bool:
            return bool(e.id == jobs["event_id"] and e.tenantid == TENANT and e.data.sku == JOBS_SKU)

        events = await self.until("the sample on cost.sampled", lambda: self.topic_events("cost.sampled", the_sample))
        event = events[0]
        if (event.data.dbus, event.data.dollars) != (Decimal(jobs["dbus"]), Decimal(jobs["dollars"])):
            raise StepFailed(f"cost.sampled {event.id} carries {event.data.dbus} DBUs / ${event.data.dollars}")
        total = days[day]
        return Outcome(
            f"cost.sampled {event.id[:8]} (revision {event.data.revision}): {TENANT} {day} {JOBS_SKU} "
            f"{event.data.dbus} DBUs = ${event.data.dollars} (= system.billing.usage); all SKUs that day "
            f"{total['dbus']} DBUs = ${total['dollars']}; {len(published)} sample(s) published now",
            [f"{self.state.url('monitor')}/api/v1/monitor/tenants/{TENANT}/cost", console_link(self.state)],
        )

    async def fail_twice(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """An ad-hoc job whose SQL task reads a table no data source provides, created and run twice through the
        jobs service; both runs must FAIL in the workspace."""
        cat = naming.catalog_name(TENANT)
        path = f"/Shared/apev-demo/{ALERT_JOB_KEY}.sql"
        sql_text = (
            "-- reconcile claims against collections (no data source provides claims yet)\n"
            f"SELECT count(*) AS claims FROM {cat}.silver.claims;\n"
        )
        await self.dbx(functools.partial(_upload, path=path, content=sql_text))
        body = {
            "kind": "adhoc", "key": ALERT_JOB_KEY,
            "job": {"tasks": [{"task_key": "reconcile", "sql_task": {"file": path}}],
                    "description": "Demo: reconcile claims (fails: silver.claims does not exist)"},
            "action": {"type": "run"},
        }  # fmt: skip
        made = await self.api("jobs", "POST", "/api/v1/databricks/jobs", json=body)
        if made.status_code != 202:
            raise StepFailed(f"POST /api/v1/databricks/jobs answered {made.status_code}: {made.text[:300]}")
        first = await self._run_outcome(made.json()["request_id"])
        job_id = str(first["job_id"])
        again = await self.api("jobs", "POST", f"/api/v1/databricks/jobs/{job_id}/run", json={})
        if again.status_code != 202:
            raise StepFailed(f"POST jobs/{job_id}/run answered {again.status_code}: {again.text[:300]}")
        second = await self._run_outcome(again.json()["request_id"])
        for run in (first, second):
            if run["run_state"]["result_state"] != "FAILED":
                raise StepFailed(f"run {run['run_id']} of job {job_id} ended {run['run_state']}, not FAILED")
        return first, second

    async def alert(self) -> Outcome:
        """The job failing twice (started after the gold step): monitor's job_failures rule must page exactly
        once (one PagerDuty incident by its dedup key, one Slack message naming the job)."""
        await self.landed("monitor", "GET", "/api/v1/monitor/alerts", "monitor (alerts to PagerDuty and Slack)")
        first, second = await (self.failing or self.fail_twice())
        job_id = str(first["job_id"])

        async def firing() -> dict[str, Any] | None:
            got = await self.api("monitor", "GET", "/api/v1/monitor/alerts", params={"rule": "job_failures"})
            mine = [a for a in got.json().get("alerts", []) if a["labels"].get("job_id") == job_id]
            return mine[0] if mine and mine[0]["state"] == "firing" else None

        alert = await self.until(f"monitor's job_failures alert for job {job_id} firing", firing, 60)

        async def delivered() -> dict[str, Any] | None:
            got = await self.api("monitor", "GET", f"/api/v1/monitor/alerts/{alert['fingerprint']}")
            notes = got.json().get("notifications", []) if got.status_code == 200 else []
            done = {n["receiver"]: n for n in notes if n["status"] == "delivered"}
            return done if {"pagerduty", "slack"} <= set(done) else None

        notes = await self.until("the page delivered to PagerDuty and Slack", delivered, 90)
        dedup = notes["pagerduty"]["dedup_key"]
        sinks = self.state.url("sinks")
        needle = f"(job {job_id})"

        async def received() -> tuple[list[Any], list[Any]]:
            incidents = (await self.http.get(f"{sinks}/_admin/pagerduty/incidents", params={"dedup_key": dedup})).json()
            messages = (await self.http.get(f"{sinks}/_admin/slack/messages")).json()
            return incidents, [m for m in messages if needle in json.dumps(m)]

        sent_at = min(_at(a["at"]) for n in notes.values() for a in n["attempts"] if a["outcome"] == "delivered")
        if sent_at < self.began:  # `make run` on an earlier stack's data: the alert was firing and paged then
            await asyncio.sleep(ALERT_SETTLE_SECONDS)
            incidents, messages = await received()
            if incidents or messages:
                raise StepFailed(f"job {job_id} paged again: {len(incidents)} incidents, {len(messages)} messages")
            return Outcome(
                f"job {job_id} runs {first['run_id']}, {second['run_id']} FAILED; alert {alert['fingerprint'][:12]} "
                f"still firing since an earlier run, which paged at {sent_at:%H:%M:%S}: no second page now "
                "(repeat_interval 4h; the stand-ins, restarted, received nothing new)",
                [first["run_page_url"], second["run_page_url"], console_link(self.state)],
            )
        incidents, messages = await self.until("the incident and the message in the stand-ins", received)
        await asyncio.sleep(ALERT_SETTLE_SECONDS)  # further evaluations must not page again
        incidents, messages = await received()
        if len(incidents) != 1 or len(messages) != 1:
            raise StepFailed(f"job {job_id}: {len(incidents)} PagerDuty incidents for dedup key {dedup} and "
                             f"{len(messages)} Slack messages naming it; expected exactly one each")  # fmt: skip
        incident = incidents[0]
        if incident.get("trigger_count", 1) != 1:
            raise StepFailed(f"incident {incident['id']} was triggered {incident['trigger_count']} times")
        return Outcome(
            f"job {job_id} runs {first['run_id']}, {second['run_id']} FAILED (started after the gold step) -> "
            f"alert {alert['fingerprint'][:12]} firing ({alert['summary'][:80]}) -> PagerDuty incident "
            f"{incident['id']} ({incident['status']}, "
            f"dedup {dedup[:12]}), Slack message {messages[0]['id']}: one each after {ALERT_SETTLE_SECONDS:.0f}s more",
            [
                first["run_page_url"],
                second["run_page_url"],
                f"{sinks}/_admin/pagerduty/incidents/{incident['id']}",
                console_link(self.state),
            ],
        )

    async def _run_outcome(self, request_id: str) -> dict[str, Any]:
        """Wait for the jobs service's request to have a finished run; its view plus the run page."""

        async def finished() -> dict[str, Any] | None:
            got = await self.api("jobs", "GET", f"/api/v1/databricks/requests/{request_id}")
            body = got.json() if got.status_code == 200 else {}
            if body.get("state") == "failed":
                raise StepFailed(f"the jobs service failed request {request_id}: {body.get('error')}")
            state = body.get("run_state")
            return body if state and not state["active"] and state["result_state"] else None

        done = await self.until(f"the run of request {request_id}", finished)
        run = await self.dbx(functools.partial(_get_run, run_id=int(done["run_id"])))
        return {**done, "run_page_url": str(run.run_page_url)}


class _RemoteWorkspace:
    """What `ensure_local_chat_endpoint` needs of a workspace, for one running as a process."""

    def __init__(self, host: str, token: str) -> None:
        self.host, self.admin_token = host, token
        self.workspace = type("Areas", (), {"uc": True})()

    def client(self, token: str | None = None) -> WorkspaceClient:
        return WorkspaceClient(config=Config(host=self.host, token=token or self.admin_token, auth_type="pat"))

    def admin_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.host, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)


def ensure_chat_endpoint(host: str, token: str) -> str:
    from apev_workspace.serving.chat import ensure_local_chat_endpoint

    return ensure_local_chat_endpoint(_RemoteWorkspace(host, token))  # type: ignore[arg-type]


def console_link(state: StackState) -> str:
    """The operator console, served by the monitor service under `/console/`."""
    return f"{state.url('monitor')}/console/"


def _at(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _get_run(w: WorkspaceClient, run_id: int) -> Any:
    return w.jobs.get_run(run_id)


def _upload(w: WorkspaceClient, path: str, content: str) -> None:
    from databricks.sdk.service.workspace import ImportFormat

    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    body = base64.b64encode(content.encode()).decode()
    w.workspace.import_(path=path, content=body, format=ImportFormat.AUTO, overwrite=True)


def summary_json(results: list[StepResult], total_seconds: float) -> str:
    ok = all(r.ok is not False for r in results) and bool(results)
    body: dict[str, Any] = {
        "ok": ok,
        "steps": [r.as_json() for r in results],
        "total_seconds": round(total_seconds, 2),
    }
    failed = next((r for r in results if r.ok is False), None)
    if failed is not None:
        body["failed_step"] = failed.name
    return json.dumps(body)
