"""The Statement Execution API on the DuckDB engine, through databricks-sdk (`w.statement_execution`)."""

from __future__ import annotations

import io
import json
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InvalidParameterValue
from databricks.sdk.service import catalog, iam, sql

from apev_workspace.sql.system import SystemTable
from apev_workspace.testing import RunningWorkspace

S = sql.StatementState


def _wh(w: WorkspaceClient) -> str:
    return next(iter(w.warehouses.list())).id  # type: ignore[return-value]


def _run(w: WorkspaceClient, statement: str, **kw: object) -> sql.StatementResponse:
    kw.setdefault("wait_timeout", "30s")
    return w.statement_execution.execute_statement(statement=statement, warehouse_id=_wh(w), **kw)  # type: ignore[arg-type]


def _ok(w: WorkspaceClient, statement: str, **kw: object) -> list[list[str | None]]:
    response = _run(w, statement, **kw)
    assert response.status.state == S.SUCCEEDED, response.status.error
    return response.result.data_array or []


@pytest.fixture
def tenant(w: WorkspaceClient) -> str:
    w.catalogs.create(name="acme")
    for schema in ("bronze", "silver"):
        w.schemas.create(name=schema, catalog_name="acme")
    w.volumes.create(catalog_name="acme", schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED)
    return "acme"


def test_named_typed_parameters_manifest_and_strings(w: WorkspaceClient, tenant: str) -> None:
    response = _run(
        w,
        "SELECT :n + 1 AS n, :d AS d, :price * 2 AS price, :name AS name, CAST(NULL AS STRING) AS nothing,"
        " TIMESTAMP '2024-01-02 03:04:05' AS at, array(1, 2) AS xs, true AS flag, 1.5D AS ratio",
        parameters=[
            sql.StatementParameterListItem(name="n", value="41", type="INT"),
            sql.StatementParameterListItem(name="d", value="2024-02-29", type="DATE"),
            sql.StatementParameterListItem(name="price", value="10.25", type="DECIMAL(10,2)"),
            sql.StatementParameterListItem(name="name", value="O'Brien; DROP TABLE x"),
        ],
    )
    assert response.status.state == S.SUCCEEDED, response.status.error
    manifest = response.manifest
    assert manifest.format == sql.Format.JSON_ARRAY and manifest.total_row_count == 1
    columns = [(c.name, c.type_name, c.type_text) for c in manifest.schema.columns]
    assert columns == [
        ("n", sql.ColumnInfoTypeName.INT, "INT"),
        ("d", sql.ColumnInfoTypeName.DATE, "DATE"),
        ("price", sql.ColumnInfoTypeName.DECIMAL, columns[2][2]),
        ("name", sql.ColumnInfoTypeName.STRING, "STRING"),
        ("nothing", sql.ColumnInfoTypeName.STRING, "STRING"),
        ("at", sql.ColumnInfoTypeName.TIMESTAMP, "TIMESTAMP"),
        ("xs", sql.ColumnInfoTypeName.ARRAY, "ARRAY<INT>"),
        ("flag", sql.ColumnInfoTypeName.BOOLEAN, "BOOLEAN"),
        ("ratio", sql.ColumnInfoTypeName.DOUBLE, "DOUBLE"),
    ]
    assert response.result.data_array == [
        ["42", "2024-02-29", "20.50", "O'Brien; DROP TABLE x", None, "2024-01-02T03:04:05.000Z", "[1,2]", "true", "1.5"]
    ]
    missing = _run(w, "SELECT :nope")
    assert missing.status.state == S.FAILED and "UNBOUND_SQL_PARAMETER" in missing.status.error.message


def test_failed_statement_is_databricks_shaped(w: WorkspaceClient, tenant: str) -> None:
    response = _run(w, "SELECT * FROM acme.bronze.does_not_exist")
    assert response.status.state == S.FAILED
    assert response.status.error.error_code == sql.ServiceErrorCode.BAD_REQUEST
    assert response.status.error.message.startswith("[TABLE_OR_VIEW_NOT_FOUND]")
    assert response.manifest is None and response.result is None
    untranslatable = _run(w, "SELECT * FROM acme.bronze.t VERSION AS OF 3")
    assert untranslatable.status.state == S.FAILED
    assert untranslatable.status.error.message.startswith("[UNSUPPORTED_FEATURE] Time travel (VERSION AS OF")
    optimize = _run(w, "CREATE FUNCTION acme.bronze.f(x INT) RETURNS TABLE (y INT) RETURN SELECT x AS y")
    assert optimize.status.state == S.FAILED and "not supported" in optimize.status.error.message
    with pytest.raises((BadRequest, InvalidParameterValue)):
        _run(w, "SELECT 1", wait_timeout="3s")
    # nothing reaches files or DuckDB's own catalog around Unity Catalog
    for escape in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM csv.`/etc/passwd`",
        "ATTACH '/tmp/x.duckdb' AS x",
        "SET enable_external_access = true; SELECT * FROM read_text('/etc/passwd')",
    ):
        denied = _run(w, escape)
        assert denied.status.state == S.FAILED, escape


def test_wait_timeout_zero_then_poll_and_chunks(w: WorkspaceClient, ws: RunningWorkspace, tenant: str) -> None:
    ws.workspace.sql.statements.chunk_rows = 1000
    pending = _run(w, "SELECT id FROM range(2500)", wait_timeout="0s")
    assert pending.status.state in (S.PENDING, S.RUNNING) and pending.result is None
    deadline = time.monotonic() + 20
    while (got := w.statement_execution.get_statement(pending.statement_id)).status.state != S.SUCCEEDED:
        assert got.status.state in (S.PENDING, S.RUNNING) and time.monotonic() < deadline
        time.sleep(0.02)
    assert got.manifest.total_row_count == 2500 and got.manifest.total_chunk_count == 3
    assert got.result.next_chunk_index == 1 and len(got.result.data_array) == 1000
    last = w.statement_execution.get_statement_result_chunk_n(pending.statement_id, 2)
    assert last.row_offset == 2000 and last.data_array[-1] == ["2499"] and last.next_chunk_index is None
    limited = _run(w, "SELECT id FROM range(10)", row_limit=3)
    assert limited.manifest.truncated is True and limited.result.data_array == [["0"], ["1"], ["2"]]


def test_cancel_a_running_statement(w: WorkspaceClient, tenant: str) -> None:
    slow = _run(w, "SELECT count(*) FROM range(1000000000) a, range(100) b WHERE a.id * b.id = -1", wait_timeout="0s")
    w.statement_execution.cancel_execution(slow.statement_id)
    assert w.statement_execution.get_statement(slow.statement_id).status.state == S.CANCELED


def test_merge_qualify_insert_overwrite_and_describe(w: WorkspaceClient, tenant: str) -> None:
    _ok(
        w,
        "CREATE TABLE silver.employees (id BIGINT, name STRING, salary DECIMAL(10,2)) USING DELTA",
        catalog="acme",
        schema="bronze",
    )
    _ok(w, "INSERT INTO acme.silver.employees VALUES (1, 'Ann', 10), (2, 'Bob', 20)")
    _ok(
        w,
        "CREATE TABLE acme.bronze.raw AS SELECT * FROM VALUES (1, 'Ann', 11.0, 1), (1, 'Ann B', 12.0, 2),"
        " (3, 'Cy', 30.0, 1) AS t(id, name, salary, version)",
    )
    merged = _ok(
        w,
        "MERGE INTO silver.employees AS t USING (SELECT id, name, CAST(salary AS DECIMAL(10,2)) AS salary FROM raw"
        " QUALIFY row_number() OVER (PARTITION BY id ORDER BY version DESC) = 1) AS s ON t.id = s.id"
        " WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        catalog="acme",
        schema="bronze",
    )
    assert merged == [["2"]]
    rows = _ok(w, "SELECT id, name, salary FROM acme.silver.employees ORDER BY id")
    assert rows == [["1", "Ann B", "12.00"], ["2", "Bob", "20.00"], ["3", "Cy", "30.00"]]
    assert _ok(w, "INSERT OVERWRITE acme.silver.employees SELECT * FROM acme.silver.employees WHERE id > 1") == [
        ["2", "2"]
    ]
    assert _ok(w, "SELECT count(*) FROM acme.silver.employees") == [["2"]]
    assert _ok(w, "DESCRIBE TABLE acme.silver.employees") == [
        ["id", "bigint", None],
        ["name", "string", None],
        ["salary", "decimal(10,2)", None],
    ]
    assert ["silver", "employees", "false"] in _ok(w, "SHOW TABLES IN acme.silver")
    assert _ok(w, "USE CATALOG acme; SHOW SCHEMAS") == [["bronze"], ["default"], ["information_schema"], ["silver"]]


def test_copy_into_loads_every_file_once(w: WorkspaceClient, tenant: str) -> None:
    landing = "/Volumes/acme/bronze/landing/adp/employees"
    for part in range(2):
        rows = [{"id": part * 10 + i, "name": f"e{i}", "hired": "2024-01-01"} for i in range(5)]
        body = "\n".join(json.dumps(r) for r in rows).encode()
        w.files.upload(f"{landing}/part-{part}.json", io.BytesIO(body), overwrite=True)
    _ok(w, "CREATE TABLE IF NOT EXISTS acme.bronze.employees (id BIGINT, name STRING)")
    copy = f"COPY INTO acme.bronze.employees FROM '{landing}' FILEFORMAT = JSON COPY_OPTIONS ('mergeSchema' = 'true')"
    assert _ok(w, copy) == [["10", "10", "0"]]
    assert _ok(w, copy) == [["0", "0", "0"]]  # the same files are not loaded twice
    assert _ok(w, "SELECT count(*), count(DISTINCT id), min(hired) FROM acme.bronze.employees") == [
        ["10", "10", "2024-01-01"]
    ]
    w.files.upload(f"{landing}/part-9.json", io.BytesIO(b'{"id": 99, "name": "new"}\n'), overwrite=True)
    assert _ok(w, copy) == [["1", "1", "0"]]
    # the Databricks idiom: a table without columns, its schema from the files
    _ok(w, "CREATE TABLE IF NOT EXISTS acme.bronze.inferred")
    assert w.tables.get("acme.bronze.inferred").columns in (None, [])
    inferred = (
        f"COPY INTO acme.bronze.inferred FROM '{landing}' FILEFORMAT = JSON COPY_OPTIONS ('mergeSchema' = 'true')"
    )
    assert _ok(w, inferred) == [["11", "11", "0"]]
    assert [c.name for c in w.tables.get("acme.bronze.inferred").columns] == ["id", "name", "hired"]
    assert _ok(w, "SELECT * FROM acme.bronze.inferred WHERE id = 99") == [["99", "new", None]]
    csv = "/Volumes/acme/bronze/landing/csv/a.csv"
    w.files.upload(csv, io.BytesIO(b"id,name\n7,x\n8,y\n"), overwrite=True)
    _ok(w, "CREATE TABLE acme.bronze.csv_rows (id BIGINT, name STRING)")
    loaded = _ok(w, f"COPY INTO acme.bronze.csv_rows FROM '{csv}' FILEFORMAT = CSV FORMAT_OPTIONS ('header' = 'true')")
    assert loaded[0][0] == "2"
    assert _ok(w, "SELECT sum(id) FROM acme.bronze.csv_rows") == [["15"]]


def test_row_filter_view_with_group_membership(w: WorkspaceClient, ws: RunningWorkspace, tenant: str) -> None:
    inside = w.service_principals.create(display_name="inside")
    outside = w.service_principals.create(display_name="outside")
    w.groups.create(display_name="tenant_acme_analysts", members=[iam.ComplexValue(value=inside.id)])
    _ok(w, "CREATE TABLE acme.silver.payroll AS SELECT * FROM VALUES ('hq', 100), ('clinic', 50) AS t(site, pay)")
    _ok(
        w,
        "CREATE VIEW acme.silver.payroll_visible AS SELECT site, CASE WHEN is_account_group_member("
        "'tenant_acme_analysts') THEN pay END AS pay, current_user() AS viewer FROM acme.silver.payroll"
        " WHERE is_account_group_member('tenant_acme_analysts') OR site = 'clinic'",
    )
    w.grants.update(
        "catalog",
        "acme",
        changes=[
            catalog.PermissionsChange(
                principal="users", add=[catalog.Privilege.USE_CATALOG, catalog.Privilege.USE_SCHEMA]
            )
        ],
    )
    w.grants.update(
        "table",
        "acme.silver.payroll_visible",
        changes=[catalog.PermissionsChange(principal="users", add=[catalog.Privilege.SELECT])],
    )
    clients = {}
    for sp in (inside, outside):
        token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
        clients[sp.display_name] = ws.client(token=token.token_value)
    assert _ok(clients["inside"], "SELECT * FROM acme.silver.payroll_visible ORDER BY site") == [
        ["clinic", "50", inside.application_id],
        ["hq", "100", inside.application_id],
    ]
    assert _ok(clients["outside"], "SELECT * FROM acme.silver.payroll_visible") == [
        ["clinic", None, outside.application_id]
    ]
    # the view is granted, its source table is not
    direct = _run(clients["outside"], "SELECT * FROM acme.silver.payroll")
    assert direct.status.state == S.FAILED
    assert w.tables.get("acme.silver.payroll_visible").table_type == catalog.TableType.VIEW


def test_system_tables_come_from_providers(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    rows = [("r1", "JOBS", 1.5, {"ap_tenant_id": "acme"}), ("r2", "SQL", 2.0, {})]
    ws.workspace.sql.system_tables.register(
        "testing.usage",
        SystemTable(
            columns=[
                ("record_id", "STRING"),
                ("sku", "STRING"),
                ("qty", "DECIMAL(10,2)"),
                ("custom_tags", "MAP<STRING,STRING>"),
            ],
            rows=lambda: rows,
        ),
    )
    got = _ok(w, "SELECT record_id, qty, custom_tags['ap_tenant_id'] FROM system.testing.usage ORDER BY 1")
    assert got == [["r1", "1.50", "acme"], ["r2", "2.00", None]]
    rows.append(("r3", "JOBS", 3.0, {}))
    assert _ok(w, "SELECT count(*) FROM system.testing.usage") == [["3"]]
    assert _ok(w, "DESCRIBE TABLE system.testing.usage")[3] == ["custom_tags", "map<string,string>", None]
    sp = w.service_principals.create(display_name="not-admin")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
    refused = _run(ws.client(token=token.token_value), "SELECT * FROM system.testing.usage")
    assert refused.status.state == S.FAILED and "INSUFFICIENT_PERMISSIONS" in refused.status.error.message
    missing = _run(w, "SELECT * FROM system.nothing.here")
    assert missing.status.state == S.FAILED and "TABLE_OR_VIEW_NOT_FOUND" in missing.status.error.message


def test_statements_are_billed_as_warehouse_time(w: WorkspaceClient) -> None:
    wh = _wh(w)
    _ok(w, "SELECT count(*) FROM range(1000)")
    rows = _ok(w, "SELECT DISTINCT billing_origin_product, usage_metadata.warehouse_id FROM system.billing.usage")
    assert ["SQL", wh] in rows
