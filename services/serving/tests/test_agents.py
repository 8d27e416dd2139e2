"""Agents end to end: register -> deploy run (jobs service, local workspace) -> endpoint READY -> invoke, whose
numbers are those of a direct SQL query over gold; the agent principal's grants; tenant isolation."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from databricks.sdk.service import sql as dbsql

from apev_contracts import naming

from .conftest import Stack, sql

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]


def _numbers(text: str) -> set[Decimal]:
    return {Decimal(n) for n in re.findall(r"\d+\.\d+", text)}


async def test_register_deploy_invoke_answers_with_the_gold_numbers(stack: Stack, demo: dict[str, Any]) -> None:
    w = stack.ws.client()
    cat = naming.catalog_name("tenant-a")
    agent = demo["agent"]
    assert agent["endpoint"]["ready"] == "READY" and agent["versions"] == [
        {"version": 1, "state": "serving", "run_id": agent["versions"][0]["run_id"]}
    ]
    assert agent["endpoint"]["traffic"] == [{"served_entity_name": "v1", "traffic_percentage": 100}]
    expected = sql(
        w,
        f"SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2)) FROM {cat}.gold.monthly_kpis "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
    )
    async with stack.http() as http:
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert r.json()["served_entity"] == "v1"
        (cited,) = out["citations"]
        assert cited["table"] == f"{cat}.gold.monthly_kpis"
        assert [[row[0], row[1]] for row in cited["rows"]] == expected
        for location, collections in expected:
            assert f"{location} with {collections}" in out["answer"]
        assert _numbers(out["answer"]) == {Decimal(str(c)) for _, c in expected}

        rates = sql(
            w,
            f"SELECT practice_location, collection_rate FROM {cat}.gold.monthly_kpis "
            f"WHERE month = (SELECT max(month) FROM {cat}.gold.monthly_kpis) ORDER BY 2 DESC, 1",
        )
        r = await stack.invoke(http, "demo", "What is the collection rate of each location?")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert [[row[0], row[2]] for row in out["citations"][0]["rows"]] == rates
        assert _numbers(out["answer"]) == {Decimal(str(v)) for _, v in rates}

        payroll = sql(
            w,
            f"SELECT practice_location, gross_pay, net_pay FROM {cat}.gold.payroll_summary "
            f"WHERE month = (SELECT max(month) FROM {cat}.gold.payroll_summary) ORDER BY 2 DESC, 1",
        )
        r = await stack.invoke(http, "demo", "Give me the payroll summary")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert [[row[0], row[2], row[3]] for row in out["citations"][0]["rows"]] == payroll
        for location, gross, net in payroll:
            assert f"{location} {gross} gross, {net} net" in out["answer"]


async def test_agent_principal_reads_only_its_tables(stack: Stack, demo: dict[str, Any]) -> None:
    w = stack.ws.client()
    app_id = demo["registered"]["principal_id"]
    token = w.token_management.create_obo_token(application_id=app_id, lifetime_seconds=600).token_value
    agent = stack.ws.client(token=token)
    wh = str(next(iter(w.warehouses.list())).id)

    def run(statement: str) -> dbsql.StatementResponse:
        return agent.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")

    a, b = naming.catalog_name("tenant-a"), naming.catalog_name("tenant-b")
    for table in ("monthly_kpis", "payroll_summary"):
        assert run(f"SELECT count(*) FROM {a}.gold.{table}").status.state == dbsql.StatementState.SUCCEEDED
    for table in (f"{a}.gold.financial_summary", f"{b}.gold.monthly_kpis", f"{b}.gold.payroll_summary"):
        done = run(f"SELECT count(*) FROM {table}")
        assert done.status.state == dbsql.StatementState.FAILED, table
        assert "INSUFFICIENT_PERMISSIONS" in done.status.error.message or "PERMISSION" in done.status.error.message
    tables = {t.full_name for t in w.tables.list(catalog_name=a, schema_name="gold")}
    allowed = set()
    for full in tables:
        grants = w.grants.get_effective("table", full, principal=app_id).privilege_assignments or []
        if any(p.privilege and p.privilege.value == "SELECT" for g in grants for p in g.privileges or []):
            allowed.add(full.rsplit(".", 1)[-1])
    assert allowed == {"monthly_kpis", "payroll_summary", "agent_insights"}  # agent_insights: its own output


async def test_other_tenant_cannot_invoke_or_read_and_limits_apply(stack: Stack, demo: dict[str, Any]) -> None:
    async with stack.http("tenant-b") as http:
        r = await http.get("/api/v1/agents/demo")
        assert r.status_code == 403, r.text
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 403, r.text
        r = await http.post(
            "/api/v1/agents",
            json={"name": "x", "model_source": "/Shared/x.py", "tables": ["agentprovision_tenant_a.gold.monthly_kpis"]},
        )
        assert r.status_code == 403, r.text
