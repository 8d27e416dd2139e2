"""Freshness: from an MCP `data.changed` webhook to the changed value readable in gold, end to end.

    uv run python bench/freshness.py [--changes 20] [--out bench/results/freshness.json]

Runs `tests/test_ingest_jobs_e2e.py` (local workspace, MCP simulator, the session's Kafka and PostgreSQL, the jobs
and the ingest services in one process) with N changes: provisions one NetSuite data source through `datasource.created`
(the first sync runs through the jobs service), then N times: change a share of MCP's financials (MCP signs and
posts `data.changed` to ingest), and wait until `gold.financial_summary` shows MCP's new totals. Reports p50/p95.
`run_e2e` is also what `tests/test_ingest_jobs_e2e.py` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import sql
from sqlalchemy import select
from starlette.applications import Starlette

from apev_contracts import DatasourceCreated, naming
from apev_contracts.envelope import encode, new_event
from apev_contracts.topics import all_topics
from apev_ingest import tables as ingest_tables
from apev_ingest.app import create_app as ingest_app
from apev_ingest.settings import Settings as IngestSettings
from apev_jobs.app import create_app as jobs_app
from apev_jobs.settings import Settings as JobsSettings
from apev_mcpsim.testing import RunningMcp
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace

SECRET = "bench-jwt-secret-0123456789abcdef0123456789"  # noqa: S105 (local stand-ins only)
TENANT = "fresh-co"


@contextlib.asynccontextmanager
async def _serve(app: Starlette, port: int) -> AsyncIterator[Starlette]:
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


def _common(ws: RunningWorkspace, bootstrap: str, pg_url: str, prefix: str, service: str, port: int) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg_url,
        "database_schema": prefix.rstrip(".") + "_" + service,
        "http_port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "databricks_host": ws.host,
        "databricks_token": ws.admin_token,
        "APEV_JWT_SECRET": SECRET,
        "log_format": "console",
        "log_level": "WARNING",
        "delivery": DeliverySettings(retry_attempts=4, retry_timeout_seconds=30, retry_initial_wait_seconds=0.05),
    }


def _gold_totals(w: WorkspaceClient, catalog: str) -> tuple[Decimal, Decimal] | None:
    wid = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(
        statement=f"SELECT sum(revenue), sum(expenses) FROM {catalog}.gold.financial_summary",  # noqa: S608
        warehouse_id=wid,
        wait_timeout="30s",
    )
    if done.status is None or done.status.state != sql.StatementState.SUCCEEDED or not done.result:
        return None
    (row,) = done.result.data_array or [[None, None]]
    return None if row[0] is None else (Decimal(row[0]), Decimal(row[1] or 0))


def _mcp_totals(mcp: RunningMcp, key: str) -> tuple[Decimal, Decimal]:
    got = httpx.get(f"{mcp.base_url}/api/v1/data/financials", params={"limit": 1000},
                    headers={"Authorization": f"Bearer {key}"}, timeout=10)  # fmt: skip
    got.raise_for_status()
    records = got.json()
    return sum(Decimal(r["REVENUE"]) for r in records), sum(Decimal(r["EXPENSES"]) for r in records)


async def _until(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.2)


async def run_e2e(ws: RunningWorkspace, mcp: RunningMcp, bootstrap: str, pg_url: str, changes: int) -> dict[str, Any]:
    """Provision one data source, wait for its first sync in gold, then measure `changes` webhook-to-gold times."""
    prefix = f"f{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, [prefix + t for t in all_topics()], partitions=2)
    jobs_port, ingest_port = free_port(), free_port()
    jobs = JobsSettings(**_common(ws, bootstrap, pg_url, prefix, "jobs", jobs_port), webhook_password="hook",  # noqa: S106
                        reconcile_interval_seconds=2.0)  # fmt: skip
    tenants = Path(tempfile.mkdtemp()) / "tenants.yaml"
    tenants.write_text("defaults:\n  freshness_minutes: 60\n")
    ingest = IngestSettings(
        **_common(ws, bootstrap, pg_url, prefix, "ingest", ingest_port),
        MCP_BASE_URL=mcp.base_url, MCP_API_KEY=mcp.admin_key, mcp_webhook_secret="mcp-hook",  # noqa: S106
        tenants_file=tenants,
    )  # fmt: skip
    code = mcp.new_tenant("fr")
    key = mcp.tenant_key(code)
    catalog = naming.catalog_name(TENANT)
    w = ws.client()
    async with _serve(jobs_app(jobs), jobs_port), _serve(ingest_app(ingest), ingest_port) as app:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            created = DatasourceCreated(tenant_id=TENANT, datasource_id="ns-1", name="NetSuite", system="netsuite",
                                        entities=["financials"], mcp_tenant_code=code)  # fmt: skip
            record = encode(new_event(created, tenant_id=TENANT, source="bench/freshness"))
            started = time.monotonic()
            await producer.send_and_wait(prefix + record.topic, record.value, key=record.key, headers=record.headers)
            await _until("first sync in gold", lambda: _gold_totals(w, catalog) == _mcp_totals(mcp, key), 300)
            first_sync = time.monotonic() - started

            service = app.state.service

            async def state() -> str:
                async with service.db.engine.connect() as conn:
                    q = select(ingest_tables.datasources.c.state).where(ingest_tables.datasources.c.tenant_id == TENANT)
                    return str((await conn.execute(q)).scalar_one())

            deadline = time.monotonic() + 60
            while await state() != "first_run_finished":
                assert time.monotonic() < deadline, await state()
                await asyncio.sleep(0.2)
            latencies = []
            for _ in range(changes):
                tick_at = time.monotonic()
                mcp.tick(code, ["financials"], ratio=0.05)
                want = _mcp_totals(mcp, key)
                await _until("changed value in gold", lambda want=want: _gold_totals(w, catalog) == want, 300)
                latencies.append(time.monotonic() - tick_at)
        finally:
            await producer.stop()
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else None
    return {
        "changes": changes,
        "first_sync_seconds": round(first_sync, 2),
        "p50_seconds": round(statistics.median(ordered), 2) if ordered else None,
        "p95_seconds": round(p95, 2) if p95 is not None else None,
        "max_seconds": round(ordered[-1], 2) if ordered else None,
        "latencies_seconds": [round(x, 2) for x in latencies],
        "target_p95_seconds": 60,
    }


def _main(changes: int, out: Path) -> int:
    """The stack's fixtures (Kafka from the cached jars, PostgreSQL) are pytest's: run the e2e test with N changes."""
    import subprocess
    import sys

    env = {**os.environ, "FRESHNESS_CHANGES": str(changes), "FRESHNESS_OUT": str(out.resolve())}
    test = "tests/test_ingest_jobs_e2e.py"
    return subprocess.call([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-s"], env=env)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/freshness.json"))
    args = parser.parse_args()
    raise SystemExit(_main(args.changes, args.out))
