"""One local workspace (with its local chat endpoint), the jobs service and the serving service (in-process, under
uvicorn, so the workspace can post the jobs service its webhooks) per test module, on the session's real Kafka and
PostgreSQL. Gold data is written directly with SQL through the SDK (same columns as the pipeline's gold files),
which keeps the module fast; the pipeline itself is tested in deploy/databricks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import sql as dbsql

from apev_contracts import naming
from apev_contracts.envelope import CloudEvent, decode, encode
from apev_contracts.topics import all_topics
from apev_jobs.app import create_app as create_jobs_app
from apev_jobs.settings import Settings as JobsSettings
from apev_pipeline.agents import demo_agent_path
from apev_runtime.auth import mint_token
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics
from apev_serving.app import create_app as create_serving_app
from apev_serving.settings import Settings as ServingSettings
from apev_stack.kafka import free_port
from apev_workspace.serving.chat import ensure_local_chat_endpoint
from apev_workspace.testing import RunningWorkspace, running_workspace

JWT_SECRET = "serving-tests-secret-0123456789abcdef0123456789"
HOOK_PASSWORD = "hook-s3cret"
LOCATIONS = ("eastlake_001", "northgate_002", "riverside_003", "westpark_004")
MONTHS = ("2026-01-01", "2026-02-01", "2026-03-01")


@pytest.fixture(autouse=True, scope="module")
def _no_databricks_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    yield
    os.environ.pop("DATABRICKS_CONFIG_FILE", None)
    os.environ.update(saved)


def sql(w: WorkspaceClient, statement: str) -> list[list[str | None]]:
    wh = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")
    assert done.status is not None and done.status.state == dbsql.StatementState.SUCCEEDED, (statement, done.status)
    return [list(r) for r in (done.result.data_array or [])] if done.result else []


def kpi(loc_i: int, month_i: int) -> tuple[Decimal, Decimal, int]:
    """Deterministic production, collections and visits; northgate's collection rate falls in the last month."""
    production = Decimal(100_000 + 17_500 * loc_i + 2_250 * month_i)
    rate = Decimal("0.95") - Decimal("0.02") * loc_i
    if loc_i == 1 and month_i == 2:
        rate -= Decimal("0.12")
    return production, (production * rate).quantize(Decimal("0.01")), 400 + 10 * loc_i + month_i


def seed_gold(w: WorkspaceClient, tenant_id: str, scale: int = 1) -> str:
    cat = naming.catalog_name(tenant_id)
    w.catalogs.create(name=cat)
    for schema in ("bronze", "silver", "gold"):
        w.schemas.create(name=schema, catalog_name=cat)
    kpis, payroll = [], []
    for li, loc in enumerate(LOCATIONS):
        for mi, month in enumerate(MONTHS):
            production, collections, visits = kpi(li, mi)
            production, collections = production * scale, collections * scale
            rate = (collections / production).quantize(Decimal("0.0001"))
            kpis.append(f"('{loc}', DATE '{month}', {production}, {collections}, {rate}, {visits}, {5 + li})")
            gross = Decimal(40_000 + 3_000 * li) * (Decimal("1.4") if (li, mi) == (2, 2) else 1)
            run = f"PR-{li + 1:03d}-{mi + 1:04d}"  # the month's largest payroll run (the MCP id format)
            payroll.append(f"('{loc}', DATE '{month}', 2, {gross}, {gross * Decimal('0.75')}, {12 + li}, '{run}')")
    sql(
        w,
        f"""CREATE TABLE {cat}.gold.monthly_kpis AS SELECT practice_location, CAST(month AS DATE) AS month,
        CAST(production AS DECIMAL(18,2)) AS production, CAST(collections AS DECIMAL(18,2)) AS collections,
        CAST(collection_rate AS DECIMAL(9,4)) AS collection_rate, CAST(visits AS BIGINT) AS visits,
        CAST(new_patients AS BIGINT) AS new_patients, current_timestamp() AS _built_at
        FROM (VALUES {", ".join(kpis)}) AS v(practice_location, month, production, collections, collection_rate,
        visits, new_patients)""",
    )
    sql(
        w,
        f"""CREATE TABLE {cat}.gold.payroll_summary AS SELECT practice_location, CAST(month AS DATE) AS month,
        CAST(payroll_runs AS BIGINT) AS payroll_runs, CAST(gross_pay AS DECIMAL(18,2)) AS gross_pay,
        CAST(net_pay AS DECIMAL(18,2)) AS net_pay, CAST(0 AS DECIMAL(18,2)) AS taxes_withheld,
        CAST(active_employees AS BIGINT) AS active_employees, largest_run_id, current_timestamp() AS _built_at
        FROM (VALUES {", ".join(payroll)}) AS v(practice_location, month, payroll_runs, gross_pay, net_pay,
        active_employees, largest_run_id)""",
    )
    sql(
        w,
        f"""CREATE TABLE {cat}.gold.financial_summary AS SELECT 'eastlake_001' AS practice_location,
        DATE '2026-03-01' AS month, CAST(1000 AS DECIMAL(18,2)) AS net_income""",
    )
    return cat


@dataclass
class Stack:
    ws: RunningWorkspace
    bootstrap: str
    prefix: str
    serving_url: str
    jobs_url: str
    serving: Any  # ServingService
    producer: AIOKafkaProducer
    latency: list[CloudEvent[Any]] = field(default_factory=list)
    invokes: dict[str, int] = field(default_factory=dict)  # endpoint -> invokes that reached it (for the sums)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def token(self, tenant: str = "tenant-a", roles: tuple[str, ...] = ("engineer",)) -> str:
        return mint_token(JWT_SECRET, tenant_id=tenant, roles=list(roles))

    def http(self, tenant: str = "tenant-a", timeout: float = 60) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.serving_url, headers={"Authorization": f"Bearer {self.token(tenant)}"}, timeout=timeout
        )

    async def invoke(self, http: httpx.AsyncClient, agent_id: str, query: str, **context: Any) -> httpx.Response:
        r = await http.post(f"/api/v1/agents/{agent_id}/invoke", json={"input": {"query": query, "context": context}})
        if r.status_code not in (429, 403, 404, 409):
            self.invokes[f"agent-{agent_id}"] = self.invokes.get(f"agent-{agent_id}", 0) + 1
        return r

    async def send(self, *events: CloudEvent[Any]) -> None:
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        await self.producer.flush()

    async def agent(self, agent_id: str, tenant: str = "tenant-a") -> dict[str, Any]:
        async with self.http(tenant) as http:
            r = await http.get(f"/api/v1/agents/{agent_id}")
            assert r.status_code == 200, r.text
            return dict(r.json())

    async def wait_agent(self, agent_id: str, timeout: float = 90, **expected: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = await self.agent(agent_id)
            endpoint = body["endpoint"]
            if body["state"] == expected.get("state", "serving") and endpoint["ready"] == "READY":
                versions = [v["version"] for v in body["versions"] if v["state"] == "serving"]
                wanted = "version" not in expected or versions == [expected["version"]]
                if wanted and endpoint["config_update"] == "NOT_UPDATING":
                    return body
            assert body["state"] not in ("failed", "deploy_failed"), body
            assert time.monotonic() < deadline, f"agent {agent_id} not serving: {body}"
            await asyncio.sleep(0.1)


async def _read_latency(stack: Stack, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        stack.prefix + "serving.latency.sampled",
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                stack.latency += [decode(r.value, list(r.headers), topic="serving.latency.sampled") for r in records]
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[Any]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    try:
        yield app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, _no_databricks_env: None) -> Iterator[RunningWorkspace]:
    with running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws:
        ws.workspace.webhooks.retry_base = 0.2
        ws.workspace.serving.transition_seconds = 0.2
        ws.workspace.serving.cold_start_seconds = 0.1
        ensure_local_chat_endpoint(ws)
        w = ws.client()
        seed_gold(w, "tenant-a")
        seed_gold(w, "tenant-b", scale=2)
        yield ws


@pytest.fixture(scope="module")
async def stack(workspace: RunningWorkspace, kafka_bootstrap: str, pg_url: str) -> AsyncIterator[Stack]:
    prefix = f"v{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    delivery = DeliverySettings(
        retry_attempts=4, retry_timeout_seconds=30, retry_initial_wait_seconds=0.05, retry_max_wait_seconds=0.5
    )
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg_url,
        "databricks_host": workspace.host,
        "databricks_token": workspace.admin_token,
        "APEV_JWT_SECRET": JWT_SECRET,
        "log_format": "console",
        "log_level": "WARNING",
        "delivery": delivery,
    }
    jobs_port, serving_port = free_port(), free_port()
    jobs_settings = JobsSettings(
        **common,
        database_schema=prefix.rstrip(".") + "_jobs",
        http_port=jobs_port,
        public_url=f"http://127.0.0.1:{jobs_port}",
        webhook_password=HOOK_PASSWORD,
        reconcile_interval_seconds=1.0,
    )
    serving_settings = ServingSettings(
        **common,
        database_schema=prefix.rstrip(".") + "_serving",
        http_port=serving_port,
        scale_cooldown_seconds=3600,
        latency_window_seconds=1.0,
        tenant_concurrency_overrides={"tenant-b": 2},
        endpoint_poll_seconds=0.05,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    serving_app = create_serving_app(serving_settings)
    async with serve(create_jobs_app(jobs_settings), jobs_port), serve(serving_app, serving_port):
        s = Stack(
            workspace,
            kafka_bootstrap,
            prefix,
            f"http://127.0.0.1:{serving_port}",
            f"http://127.0.0.1:{jobs_port}",
            serving_app.state.service,
            producer,
        )
        stop = asyncio.Event()
        reader = asyncio.create_task(_read_latency(s, stop))
        try:
            yield s
        finally:
            stop.set()
            await reader
            await producer.stop()


@pytest.fixture(scope="module")
async def demo(stack: Stack) -> dict[str, Any]:
    """The demo agent of tenant A, registered through the API and deployed by its job: serving version 1."""
    async with stack.http() as http:
        r = await http.post(
            "/api/v1/agents",
            json={
                "agent_id": "demo",
                "name": "Demo analytics agent",
                "model_source": demo_agent_path(),
                "tables": ["gold.monthly_kpis", "payroll_summary"],
                "insights_schedule": {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "UTC"},
            },
        )
    assert r.status_code == 202, r.text
    body = await stack.wait_agent("demo", timeout=120, version=1)
    return {"registered": r.json(), "agent": body}


def provision_reader(w: WorkspaceClient, tenant_id: str) -> str:
    """The tenant's reader principal with the grants ingest gives it (USE_CATALOG; USE_SCHEMA and SELECT on gold);
    its application id."""
    from databricks.sdk.service import catalog as uc

    name = naming.reader_principal(tenant_id)
    found = [sp for sp in w.service_principals.list(filter=f'displayName eq "{name}"') if sp.display_name == name]
    app_id = str(found[0].application_id if found else w.service_principals.create(display_name=name).application_id)
    cat = naming.catalog_name(tenant_id)
    for kind, full, privileges in (
        ("catalog", cat, ["USE_CATALOG"]),
        ("schema", f"{cat}.gold", ["USE_SCHEMA", "SELECT"]),
    ):
        change = uc.PermissionsChange(principal=app_id, add=[uc.Privilege(p) for p in privileges])
        w.grants.update(kind, full, changes=[change])
    return app_id
