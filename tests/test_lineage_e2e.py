"""Acceptance of OpenLineage (issue 28): an ingestion flow (datasource.created -> ingest -> jobs -> the run fills
gold) with the jobs service emitting `lineage.emitted` through its outbox and the monitor storing it; then the
lineage graph of `gold.monthly_kpis` shows the MCP entities, the landing folders, bronze and silver and the runs
(and jobs) that produced it, every stored event validates against the vendored OpenLineage JSON Schemas, and the
GDPR view lists the tables downstream of an entity. One stack per module."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from apev_contracts import DatasourceCreated, naming
from apev_contracts.envelope import encode, new_event
from apev_contracts.topics import all_topics
from apev_ingest.app import create_app as ingest_app
from apev_ingest.settings import Settings as IngestSettings
from apev_jobs.app import create_app as jobs_app
from apev_jobs.settings import Settings as JobsSettings
from apev_mcpsim.testing import RunningMcp, running_mcp
from apev_monitor import lineage_tables
from apev_monitor.app import create_app as monitor_app
from apev_monitor.settings import Settings as MonitorSettings
from apev_runtime.testing import create_topics
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace, running_workspace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "services" / "jobs" / "tests"))
from freshness import SECRET, _common, _serve  # noqa: E402 (bench/ on the path first)
from test_lineage_schema import validate_event  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.e2e]
TENANT = "lineage-co"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningWorkspace, RunningMcp]]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    try:
        with (
            running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws,
            running_mcp(locations=2, days=31) as mcp,
        ):
            ws.workspace.webhooks.retry_base = 0.2
            yield ws, mcp
    finally:
        os.environ.pop("DATABRICKS_CONFIG_FILE", None)
        os.environ.update(saved)


def _token(tenant: str) -> str:
    now = int(time.time())
    claims = {"sub": "ops", "tenant_id": tenant, "roles": ["analyst"], "iss": "agentprovision", "aud": "apev",
              "iat": now, "exp": now + 600}  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_lineage_of_gold_monthly_kpis_after_an_ingestion_flow(
    stack: tuple[RunningWorkspace, RunningMcp], kafka_bootstrap: str, pg_url: str, tmp_path: Path
) -> None:
    ws, mcp = stack
    prefix = f"l{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    ports = {name: free_port() for name in ("jobs", "ingest", "monitor")}
    jobs = JobsSettings(**_common(ws, kafka_bootstrap, pg_url, prefix, "jobs", ports["jobs"]),
                        webhook_password="hook", reconcile_interval_seconds=2.0)  # fmt: skip
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("defaults:\n  freshness_minutes: 60\n")
    ingest = IngestSettings(**_common(ws, kafka_bootstrap, pg_url, prefix, "ingest", ports["ingest"]),
                            MCP_BASE_URL=mcp.base_url, MCP_API_KEY=mcp.admin_key, mcp_webhook_secret="mcp-hook",
                            tenants_file=tenants)  # fmt: skip
    monitor = MonitorSettings(**_common(ws, kafka_bootstrap, pg_url, prefix, "monitor", ports["monitor"]),
                              tenants_file=tenants)  # fmt: skip
    code = mcp.new_tenant("li")
    catalog = naming.catalog_name(TENANT)
    base = f"http://127.0.0.1:{ports['monitor']}"
    async with (
        _serve(jobs_app(jobs), ports["jobs"]),
        _serve(ingest_app(ingest), ports["ingest"]),
        _serve(monitor_app(monitor), ports["monitor"]) as mon,
    ):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            created = DatasourceCreated(
                tenant_id=TENANT,
                datasource_id="di-1",
                name="DentalIntel",
                system="dentalintel",
                entities=["production_kpis"],
                mcp_tenant_code=code,
            )
            record = encode(new_event(created, tenant_id=TENANT, source="tests/lineage"))
            await producer.send_and_wait(prefix + record.topic, record.value, key=record.key, headers=record.headers)
        finally:
            await producer.stop()
        headers = {"Authorization": f"Bearer {_token(TENANT)}"}
        graph: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            deadline = time.monotonic() + 300
            while True:  # the job-level COMPLETE of the ingestion run comes last
                got = await http.get("/api/v1/lineage", params={"node": "gold.monthly_kpis", "tenant": TENANT})
                if got.status_code == 200:
                    graph = got.json()
                    if any(n["name"] == f"ap:{TENANT}:ingest:di-1.fetch_from_mcp" for n in graph["nodes"]):
                        break
                assert time.monotonic() < deadline, f"no lineage of gold.monthly_kpis in 300 s: {got.text[:300]}"
                await asyncio.sleep(0.5)
            names = {(n["kind"], n["name"]) for n in graph["nodes"]}
            job = f"ap:{TENANT}:ingest:di-1"
            assert {
                ("dataset", "dentalintel.production_kpis"),
                ("dataset", f"/Volumes/{catalog}/bronze/landing/di-1/production_kpis/"),
                ("dataset", f"{catalog}.bronze.production_kpis"),
                ("dataset", f"{catalog}.silver.production_kpis"),
                ("dataset", f"{catalog}.gold.monthly_kpis"),
                ("job", job),
                *{
                    ("job", f"{job}.{t}")
                    for t in ("fetch_from_mcp", "load_bronze", "bronze_to_silver", "silver_to_gold")
                },
            } <= names, names
            assert sum(1 for kind, _ in names if kind == "run") >= 5  # four tasks' runs and the job's run
            # the console's lineage page (the monitor serves it) lists exactly the nodes the API answered
            async with httpx.AsyncClient(base_url=base, cookies={"apev_console": _token(TENANT)}, timeout=10) as ui:
                page = await ui.get("/console/lineage", params={"node": "gold.monthly_kpis", "tenant": TENANT})
            assert page.status_code == 200, page.text[:500]
            table = page.text.split('id="lineage-nodes"', 1)[1].split("</table>", 1)[0]
            assert set(re.findall(r'data-kind="(\w+)" data-name="([^"]+)"', table)) == names
            # downstream of the gold table: nothing of bronze; of the MCP entity: every table it reaches
            down = (await http.get("/api/v1/lineage", params={"node": "gold.monthly_kpis", "tenant": TENANT,
                                                               "direction": "downstream"})).json()  # fmt: skip
            assert not any(n["name"].endswith(".bronze.production_kpis") for n in down["nodes"])
            erasure = (await http.get("/api/v1/lineage/downstream-tables",
                                      params={"node": "production_kpis", "tenant": TENANT})).json()  # fmt: skip
            assert {f"{catalog}.bronze.production_kpis", f"{catalog}.silver.production_kpis",
                    f"{catalog}.gold.monthly_kpis"} <= set(erasure["tables"])  # fmt: skip
            assert erasure["volumes"] == [f"/Volumes/{catalog}/bronze/landing/di-1/production_kpis/"]
            # tenant-scoped: another tenant's token is refused, and its own graph has no such node
            other = await http.get("/api/v1/lineage", params={"node": "gold.monthly_kpis", "tenant": TENANT},
                                   headers={"Authorization": f"Bearer {_token('someone-else')}"})  # fmt: skip
            assert other.status_code == 403
            missing = await http.get("/api/v1/lineage", params={"node": "gold.monthly_kpis"},
                                     headers={"Authorization": f"Bearer {_token('someone-else')}"})  # fmt: skip
            assert missing.status_code == 404
            bad = await http.get("/api/v1/lineage", params={"node": "x", "tenant": TENANT, "direction": "sideways"})
            assert bad.status_code == 400
        async with mon.state.lineage.db.engine.connect() as conn:
            rows = (await conn.execute(select(lineage_tables.events))).all()
    kinds = [r.event_type for r in rows]
    assert {"START", "COMPLETE"} <= set(kinds) and len(kinds) == len({(r.run_id, r.event_type) for r in rows})
    assert sum(validate_event(r.body) for r in rows) > 0
    gold = [o for r in rows for o in r.body.get("outputs", []) if o["name"] == f"{catalog}.gold.monthly_kpis"]
    assert any(o.get("outputFacets", {}).get("outputStatistics", {}).get("rowCount", 0) > 0 for o in gold)
    assert any(o.get("facets", {}).get("schema", {}).get("fields") for o in gold)
