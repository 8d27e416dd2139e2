"""GDPR erasure asks the monitor's lineage graph which tables lie downstream of the `employees` entity
(`INGEST_MONITOR_URL`, over HTTP with a service token) and records its answer in the audit record
(`lineage_tables`) beside what the catalog scan deleted; it deletes and refuses nothing on that answer alone. With
the monitor down the erasure still completes, on the catalog scan alone, and the record says so.

The monitor's lineage API is a stand-in here (an HTTP server answering `GET /api/v1/lineage/downstream-tables`
as the monitor does, checking the token); the real API is tested in the monitor's tests and tests/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from databricks.sdk.service import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apev_contracts import naming
from apev_runtime.testing import serve_app
from apev_stack.kafka import free_port

from .conftest import JWT_SECRET, Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TENANT = "erase-lin"
MONITOR_PORT = free_port()


@pytest.fixture(scope="module")
def ingest_overrides() -> dict[str, Any]:
    return {"monitor_url": f"http://127.0.0.1:{MONITOR_PORT}", "monitor_timeout_seconds": 3.0}


class LineageStandIn:
    """The monitor's downstream-tables answer for one tenant's graph; every request's query and token kept."""

    def __init__(self, catalog: str) -> None:
        self.catalog = catalog
        self.seen: list[dict[str, Any]] = []

    async def downstream(self, request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="apev")
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "unauthorized", "detail": str(exc)}, status_code=401)
        self.seen.append({"params": dict(request.query_params), "claims": claims})
        if claims["tenant_id"] != request.query_params.get("tenant"):
            return JSONResponse({"error": "forbidden", "detail": "another tenant"}, status_code=403)
        c = self.catalog
        return JSONResponse({
            "tables": [f"{c}.bronze.employees", f"{c}.gold.monthly_kpis", f"{c}.silver.employees"],
            "volumes": [f"/Volumes/{c}/bronze/landing/adp-1/employees/"],
        })  # fmt: skip


@contextlib.asynccontextmanager
async def monitor_up(stand_in: LineageStandIn) -> AsyncIterator[None]:
    app = Starlette(routes=[Route("/api/v1/lineage/downstream-tables", stand_in.downstream)])
    async with serve_app(app, MONITOR_PORT):
        yield


def _sql(stack: Stack, statement: str) -> list[list[Any]]:
    w = stack.w
    wid = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="50s")
    assert done.status is not None and done.status.state == sql.StatementState.SUCCEEDED, done.status
    return [list(r) for r in (done.result.data_array or [])] if done.result else []


async def _erased(stack: Stack, person: str) -> dict[str, Any]:
    async with stack.http(TENANT, ("admin",)) as http:
        asked = await http.post("/api/v1/erasures", json={"employee_id": person})
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["request_id"]
        for _ in range(300):
            got = (await http.get(f"/api/v1/erasures/{request_id}")).json()
            if got.get("state") == "verified":
                return dict(got)
            await asyncio.sleep(0.1)
    raise AssertionError(got)


async def test_erasure_records_the_lineage_graphs_tables_and_completes_with_the_monitor_down(stack: Stack) -> None:
    created = stack.created(TENANT, "adp-1", "adp", ["employees"], stack.mcp.new_tenant("el"))
    await stack.send(created)
    await stack.wait_requests(TENANT, "adp-1", 1)  # the tenant's catalog and warehouse are provisioned
    cat = naming.catalog_name(TENANT)
    for statement in (
        f"CREATE TABLE {cat}.silver.employees (employee_id STRING, first_name STRING)",
        f"INSERT INTO {cat}.silver.employees VALUES ('E00001', 'Ada'), ('E00002', 'Bo'), ('E00003', 'Cy')",
        f"CREATE TABLE {cat}.gold.monthly_kpis (month STRING, headcount INT)",
        f"INSERT INTO {cat}.gold.monthly_kpis VALUES ('2026-11', 3)",
    ):
        _sql(stack, statement)
    stand_in = LineageStandIn(cat)
    async with monitor_up(stand_in):
        record = await _erased(stack, "E00001")
    (call,) = stand_in.seen
    assert call["params"] == {"node": "employees", "tenant": TENANT}
    assert call["claims"]["tenant_id"] == TENANT and call["claims"]["sub"] == "ingest:erasure"
    assert record["lineage_tables"] == [f"{cat}.bronze.employees", f"{cat}.gold.monthly_kpis",
                                        f"{cat}.silver.employees"]  # fmt: skip
    assert record["lineage_note"] == "lineage graph and catalog scan"
    assert record["counts"] == {f"{cat}.silver.employees": 1}  # the scan decides what is deleted
    # named by the graph but no person column (an aggregate) or not in the catalog: nothing deleted there
    assert record["lineage_without_person"] == [f"{cat}.bronze.employees", f"{cat}.gold.monthly_kpis"]
    assert _sql(stack, f"SELECT count(*) FROM {cat}.gold.monthly_kpis") == [["1"]]
    assert _sql(stack, f"SELECT count(*) FROM {cat}.silver.employees WHERE employee_id = 'E00001'") == [["0"]]

    # the monitor is down (nothing listens on its port any more): the erasure completes on the scan alone
    down = await _erased(stack, "E00002")
    assert down["state"] == "verified" and down["counts"] == {f"{cat}.silver.employees": 1}
    assert down["lineage_tables"] is None and down["lineage_without_person"] is None
    assert down["lineage_note"] == "catalog scan only: the monitor is down (ConnectError)"
    assert _sql(stack, f"SELECT employee_id FROM {cat}.silver.employees") == [["E00003"]]
    assert len(stand_in.seen) == 1
