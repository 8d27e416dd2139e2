"""The ingestion pipeline end to end, through databricks-sdk, on the local workspace and the MCP simulator.

Every expected figure is computed here from the simulator's own records (Decimal), never copied from the
pipeline's output.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service import jobs

from apev_contracts import naming
from apev_mcpsim.testing import RunningMcp
from apev_pipeline.entities import chunk_words
from apev_workspace.testing import RunningWorkspace, wait_run

from .conftest import Tenant, deploy, output, provision, query, result, rows, run_job, start_job, task

DATA = "GET /api/v1/integrations/{integration_id}/data"
PII = ("ssn_last_four", "annual_salary", "date_of_birth")


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _rate(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return None if denominator == 0 else (numerator / denominator).quantize(Decimal("0.0001"), ROUND_HALF_UP)


@pytest.fixture(scope="module")
def world(stack: tuple[RunningWorkspace, RunningMcp]) -> dict[str, Any]:
    """Tenant A (ADP + DentalIntel) and B (NetSuite), each data source run once, all three in parallel."""
    ws, mcp = stack
    w = ws.client()
    a, b = provision(ws, mcp, "tenant-a"), provision(ws, mcp, "tenant-b")
    deploy(ws, mcp, a, "adp-1", "adp", ["employees", "payroll_runs"])
    deploy(ws, mcp, a, "pms-1", "dentalintel", ["production_kpis", "locations"])
    deploy(ws, mcp, b, "ns-1", "netsuite", ["financials", "documents"])
    mcp.reset_counters()
    started = {(t.tenant_id, ds): start_job(w, job) for t in (a, b) for ds, (_, job) in t.jobs.items()}
    first = {k: wait_run(w, run_id, timeout=120) for k, run_id in started.items()}
    return {"a": a, "b": b, "first": first, "first_requests": mcp.counters().get(DATA, 0)}


def test_first_runs_fill_bronze_silver_gold_with_the_simulators_numbers(
    stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]
) -> None:
    ws, mcp = stack
    w = ws.client()
    a: Tenant = world["a"]
    for key, run in world["first"].items():
        assert result(run) == "SUCCESS", (key, [(t.task_key, t.state) for t in run.tasks or []])
    fetch_log = output(w, world["first"][("tenant-a", "adp-1")], "fetch_from_mcp").logs or ""
    employees = a.mcp_records(mcp, "employees")
    assert f"employees: done, {-(-len(employees) // 50)} pages, {len(employees)} records" in fetch_log
    for entity in ("employees", "payroll_runs", "production_kpis", "locations"):
        expected = len(a.mcp_records(mcp, entity))
        assert rows(w, f"SELECT count(*) FROM {a.catalog}.bronze.{entity}") == [[str(expected)]]
        assert rows(w, f"SELECT count(*), count(DISTINCT _source_file) > 0 FROM {a.catalog}.silver.{entity}") == [
            [str(expected), "true"]
        ]
    _assert_gold_matches(w, mcp, a)
    b: Tenant = world["b"]
    _assert_financials(w, mcp, b)
    # a gold table whose sources are absent is not created, and the task says so
    gold = {t.name for t in w.tables.list(catalog_name=b.catalog, schema_name="gold")}
    assert gold == {"financial_summary", "knowledge_chunks"}
    gold_log = output(w, world["first"][("tenant-b", "ns-1")], "silver_to_gold").logs or ""
    assert "gold.monthly_kpis: not built, its sources are absent: silver.production_kpis" in gold_log


def _assert_gold_matches(w: Any, mcp: RunningMcp, a: Tenant) -> None:
    kpis: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
    for r in a.mcp_records(mcp, "production_kpis"):
        acc = kpis[(r["PRACTICE_LOCATION"], r["KPI_DATE"][:7] + "-01")]
        acc[0] += Decimal(r["TOTAL_PRODUCTION"])
        acc[1] += Decimal(r["TOTAL_COLLECTIONS"])
        acc[2] += int(r["PATIENT_VISITS"])
        acc[3] += int(r["NEW_PATIENTS"])
    expected = [[loc, month, p, c, _rate(c, p), v, n] for (loc, month), (p, c, v, n) in sorted(kpis.items())]
    got = rows(w, f"SELECT practice_location, CAST(month AS STRING), production, collections, collection_rate, "
                  f"visits, new_patients FROM {a.catalog}.gold.monthly_kpis ORDER BY 1, 2")  # fmt: skip
    assert [[r[0], r[1], _d(r[2]), _d(r[3]), _d(r[4]), _d(r[5]), _d(r[6])] for r in got] == expected

    pay: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
    for r in a.mcp_records(mcp, "payroll_runs"):
        acc = pay[(r["PRACTICE_LOCATION"], r["PAY_DATE"][:7] + "-01")]
        acc[0] += 1
        acc[1] += Decimal(r["GROSS_PAY"])
        acc[2] += Decimal(r["NET_PAY"])
        acc[3] += Decimal(r["TAXES_WITHHELD"])
    active: dict[str, int] = defaultdict(int)
    for r in a.mcp_records(mcp, "employees"):
        active[r["PRACTICE_LOCATION"]] += r["EMPLOYMENT_STATUS"] == "active"
    expected = [[loc, m, n, g, net, tax, Decimal(active[loc])] for (loc, m), (n, g, net, tax) in sorted(pay.items())]
    got = rows(w, f"SELECT practice_location, CAST(month AS STRING), payroll_runs, gross_pay, net_pay, taxes_withheld,"
                  f" active_employees FROM {a.catalog}.gold.payroll_summary ORDER BY 1, 2")  # fmt: skip
    assert [[r[0], r[1], *(_d(x) for x in r[2:])] for r in got] == expected

    both = sorted(set(kpis) & set(pay))
    assert both  # the two sources share months, so the cross-source table is not trivially empty
    expected = [[loc, m, pay[(loc, m)][1], kpis[(loc, m)][1], _rate(pay[(loc, m)][1], kpis[(loc, m)][1])]
                for loc, m in both]  # fmt: skip
    got = rows(w, f"SELECT practice_location, CAST(month AS STRING), gross_pay, collections, labor_cost_share"
                  f" FROM {a.catalog}.gold.labor_cost_share ORDER BY 1, 2")  # fmt: skip
    assert [[r[0], r[1], _d(r[2]), _d(r[3]), _d(r[4])] for r in got] == expected


def _assert_financials(w: Any, mcp: RunningMcp, b: Tenant) -> None:
    expected = sorted(
        [r["PRACTICE_LOCATION"], r["PERIOD_START"], Decimal(r["REVENUE"]), Decimal(r["EXPENSES"]),
         Decimal(r["NET_INCOME"]), _rate(Decimal(r["NET_INCOME"]), Decimal(r["REVENUE"]))]
        for r in b.mcp_records(mcp, "financials")
    )  # fmt: skip
    got = rows(w, f"SELECT practice_location, CAST(month AS STRING), revenue, expenses, net_income, net_margin"
                  f" FROM {b.catalog}.gold.financial_summary ORDER BY 1, 2")  # fmt: skip
    assert [[r[0], r[1], *(_d(x) for x in r[2:])] for r in got] == expected


def test_second_run_merges_changes_and_fetches_only_what_changed(
    stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]
) -> None:
    ws, mcp = stack
    w = ws.client()
    a: Tenant = world["a"]
    mcp.tick(a.code, ["employees", "payroll_runs"], ratio=0.1)
    changed = {e: {r[e_key] for r in a.mcp_records(mcp, e) if r["VERSION"] != "1"}
               for e, e_key in (("employees", "EMPLOYEE_ID"), ("payroll_runs", "PAYROLL_RUN_ID"))}  # fmt: skip
    assert all(0 < len(ids) < 50 for ids in changed.values())  # each fits one page of 50
    mcp.reset_counters()
    run = run_job(w, a.jobs["adp-1"][1])
    assert result(run) == "SUCCESS", [(t.task_key, t.state) for t in run.tasks or []]
    # one request per entity instead of the full scan of the first run
    assert mcp.counters().get(DATA) == 2 < world["first_requests"]
    for entity, ids in changed.items():
        folder = f"/Volumes/{a.catalog}/bronze/landing/adp-1/{entity}/run-{run.run_id}-0/"
        landed = [json.loads(line) for f in w.files.list_directory_contents(folder)
                  for line in w.files.download(str(f.path)).contents.read().decode().splitlines()]  # fmt: skip
        key = "EMPLOYEE_ID" if entity == "employees" else "PAYROLL_RUN_ID"
        assert sorted(r[key] for r in landed) == sorted(ids)
    # silver: no duplicate keys, the new values
    silver = f"{a.catalog}.silver.payroll_runs"
    assert rows(w, f"SELECT count(*) = count(DISTINCT payroll_run_id) FROM {silver}") == [["true"]]
    current = {r["PAYROLL_RUN_ID"]: r for r in a.mcp_records(mcp, "payroll_runs")}
    got = rows(w, f"SELECT payroll_run_id, gross_pay, version FROM {silver}")
    assert len(got) == len(current)
    assert {r[0]: (Decimal(r[1]), r[2]) for r in got} == {
        k: (Decimal(r["GROSS_PAY"]), r["VERSION"]) for k, r in current.items()
    }
    _assert_gold_matches(w, mcp, a)  # gold follows silver (payroll changed; labor cost share with it)


def test_quality_checks_fail_on_an_empty_page(
    stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]
) -> None:
    ws, mcp = stack
    w = ws.client()
    b: Tenant = world["b"]
    job = deploy(ws, mcp, b, "pms-b", "eaglesoft", ["production_kpis"])
    assert b.mcp_records(mcp, "production_kpis")  # the source has data
    mcp.add_fault("empty_page", "/api/v1/integrations/*/data", count=1)
    try:
        run = run_job(w, job)
    finally:
        mcp.clear_faults()
    assert task(run, "fetch_from_mcp").state.result_state == jobs.RunResultState.SUCCESS
    assert task(run, "quality_checks").state.result_state == jobs.RunResultState.FAILED
    assert task(run, "silver_to_gold").state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    error = output(w, run, "quality_checks").error or ""
    assert f"row_count: {b.catalog}.silver.production_kpis has 0 rows (fetched 0 records in run {run.run_id})" in error
    assert "monthly_kpis" not in {t.name for t in w.tables.list(catalog_name=b.catalog, schema_name="gold")}


def test_quality_checks_fail_on_a_duplicate_key(
    stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]
) -> None:
    ws, mcp = stack
    w = ws.client()
    a: Tenant = world["a"]
    mcp.tick(a.code, ["employees"], ratio=0.05)
    mcp.add_fault("duplicate_record", "/api/v1/integrations/*/data", count=1)
    try:
        run = run_job(w, a.jobs["adp-1"][1])
    finally:
        mcp.clear_faults()
    assert result(run) == "FAILED"
    error = output(w, run, "quality_checks").error or ""
    assert "duplicate_keys: MCP delivered 1 employees key(s) twice at the same version" in error, error
    assert f"in run {run.run_id}" in error
    # the MERGE still kept one row per key
    assert rows(w, f"SELECT count(*) - count(DISTINCT employee_id) FROM {a.catalog}.silver.employees") == [["0"]]


def test_tenant_isolation_and_pii(stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]) -> None:
    ws, mcp = stack
    a: Tenant = world["a"]
    b: Tenant = world["b"]
    with pytest.raises(PermissionDenied):
        a.as_pipeline.secrets.get_secret(scope=naming.secret_scope(b.tenant_id), key="mcp_api_key")
    with pytest.raises(PermissionDenied):
        a.as_pipeline.files.upload(f"/Volumes/{b.catalog}/bronze/landing/x.json", io.BytesIO(b"{}"), overwrite=True)
    assert a.as_pipeline.secrets.get_secret(scope=naming.secret_scope(a.tenant_id), key="mcp_api_key").value

    employees = {r["EMPLOYEE_ID"]: r for r in a.mcp_records(mcp, "employees")}
    secrets_ = {v for r in employees.values() for v in (r["ANNUAL_SALARY"], r["DATE_OF_BIRTH"])}
    ssns = {r["SSN_LAST_FOUR"] for r in employees.values()}
    gold = [t.name for t in ws.client().tables.list(catalog_name=a.catalog, schema_name="gold")]
    assert set(gold) == {"monthly_kpis", "payroll_summary", "labor_cost_share"}
    for who in (a.as_analyst, a.as_engineer):
        for name in gold:
            done = rows(who, f"SELECT * FROM {a.catalog}.gold.{name}")
            columns = who.tables.get(f"{a.catalog}.gold.{name}").columns or []
            assert done  # readable, and nothing in it is a PII value
            assert not {v for r in done for v in r} & secrets_
            # An SSN's last four digits can equal a count (visits, employees) by chance: compared with text only.
            text = [i for i, c in enumerate(columns) if c.type_name is not None and c.type_name.value == "STRING"]
            assert text  # practice_location at least
            assert not {r[i] for r in done for i in text} & ssns
            assert not set(PII) & {c.name for c in columns}
    # the analyst reads neither silver nor bronze
    for layer in ("silver", "bronze"):
        refused = query(a.as_analyst, f"SELECT * FROM {a.catalog}.{layer}.employees")
        assert "INSUFFICIENT_PERMISSIONS" in (refused.status.error.message if refused.status.error else ""), layer
    # the engineer sees PII in silver (masked for everyone else, the pipeline principal included), not in bronze
    got = rows(a.as_engineer, f"SELECT employee_id, ssn_last_four, CAST(annual_salary AS STRING),"
                              f" CAST(date_of_birth AS STRING) FROM {a.catalog}.silver.employees")  # fmt: skip
    assert {r[0]: tuple(r[1:]) for r in got} == {
        k: (r["SSN_LAST_FOUR"], r["ANNUAL_SALARY"], r["DATE_OF_BIRTH"]) for k, r in employees.items()
    }
    masked = rows(a.as_pipeline, f"SELECT count(*), count(ssn_last_four), count(annual_salary), count(date_of_birth)"
                                 f" FROM {a.catalog}.silver.employees")  # fmt: skip
    assert masked == [[str(len(employees)), "0", "0", "0"]]
    refused = query(a.as_engineer, f"SELECT SSN_LAST_FOUR FROM {a.catalog}.bronze.employees")
    assert "INSUFFICIENT_PERMISSIONS" in (refused.status.error.message if refused.status.error else "")


def test_documents_become_knowledge_chunks(stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]) -> None:
    """`gold.knowledge_chunks` is the chunking rule (`apev_pipeline.entities.chunk_words`) applied here to the
    simulator's documents, with the change data feed on that the tenant's Delta Sync index needs."""
    ws, mcp = stack
    w = ws.client()
    b: Tenant = world["b"]
    assert result(world["first"][("tenant-b", "ns-1")]) == "SUCCESS"
    docs = b.mcp_records(mcp, "documents")
    assert rows(w, f"SELECT count(*) FROM {b.catalog}.silver.documents") == [[str(len(docs))]]
    expected = {
        f"{d['DOCUMENT_ID']}#{n}": (d["DOCUMENT_ID"], d["TITLE"], d["UPDATED_AT"][:19], text)
        for d in docs
        for n, text in enumerate(chunk_words(d["BODY"]))
    }
    assert len(expected) > len(docs)  # some documents are longer than one chunk
    got = rows(w, f"SELECT chunk_id, document_id, title, CAST(updated_at AS STRING), chunk_text"
                  f" FROM {b.catalog}.gold.knowledge_chunks")  # fmt: skip
    assert {str(r[0]): (r[1], r[2], str(r[3])[:19].replace(" ", "T"), r[4]) for r in got} == expected
    table = w.tables.get(f"{b.catalog}.gold.knowledge_chunks")
    assert (table.properties or {}).get("delta.enableChangeDataFeed") == "true"


def test_a_bad_mcp_key_fails_fetch_with_mcps_detail_and_loads_nothing(
    stack: tuple[RunningWorkspace, RunningMcp], world: dict[str, Any]
) -> None:
    ws, _ = stack
    w = ws.client()
    b: Tenant = world["b"]
    scope = naming.secret_scope(b.tenant_id)
    before = rows(w, f"SELECT count(*) FROM {b.catalog}.bronze.financials")
    w.secrets.put_secret(scope=scope, key="mcp_api_key", string_value=f"{b.code}_sk_revoked")
    try:
        run = run_job(w, b.jobs["ns-1"][1])
    finally:
        w.secrets.put_secret(scope=scope, key="mcp_api_key", string_value=b.key)
    assert result(run) == "FAILED"
    fetch = task(run, "fetch_from_mcp")
    assert fetch.state.result_state == jobs.RunResultState.FAILED
    error = output(w, run, "fetch_from_mcp").error or ""
    assert "McpError: MCP answered 403" in error and "Invalid or expired API key" in error, error
    assert task(run, "load_bronze").state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    assert rows(w, f"SELECT count(*) FROM {b.catalog}.bronze.financials") == before
    landing = [
        str(f.path) for f in w.files.list_directory_contents(f"/Volumes/{b.catalog}/bronze/landing/ns-1/financials/")
    ]
    assert not any(f"run-{run.run_id}-" in p for p in landing)
