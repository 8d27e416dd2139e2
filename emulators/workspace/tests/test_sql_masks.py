"""SQL functions used as column masks (evaluated for the querying principal) and COPY INTO from a query."""

from __future__ import annotations

import io
import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import catalog, iam, sql

from apev_workspace.sql.exceptions import SqlError
from apev_workspace.testing import RunningWorkspace

MASK = (
    "CREATE OR REPLACE FUNCTION m.s.pii(v STRING) RETURNS STRING "
    "RETURN CASE WHEN is_account_group_member('engineers') THEN v ELSE '***' END"
)


def _sql(w: WorkspaceClient, statement: str, **kw: object) -> sql.StatementResponse:
    warehouse = next(iter(w.warehouses.list())).id
    return w.statement_execution.execute_statement(
        statement=statement, warehouse_id=warehouse, wait_timeout="30s", **kw
    )


def _ok(w: WorkspaceClient, statement: str, **kw: object) -> list[list[str | None]]:
    done = _sql(w, statement, **kw)
    assert done.status.state == sql.StatementState.SUCCEEDED, done.status.error
    return (done.result.data_array or []) if done.result else []


def _reader(w: WorkspaceClient, ws: RunningWorkspace, name: str, *groups: str) -> WorkspaceClient:
    sp = w.service_principals.create(display_name=name)
    for group in groups:
        found = next(iter(w.groups.list(filter=f'displayName eq "{group}"')), None)
        if found is None:
            w.groups.create(display_name=group, members=[iam.ComplexValue(value=sp.id)])
        else:
            w.groups.patch(
                found.id,
                operations=[iam.Patch(op=iam.PatchOp.ADD, value={"members": [{"value": sp.id}]})],
                schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP],
            )
    for kind, full, privilege in (
        ("catalog", "m", catalog.Privilege.USE_CATALOG),
        ("schema", "m.s", catalog.Privilege.USE_SCHEMA),
        ("schema", "m.s", catalog.Privilege.SELECT),
    ):
        w.grants.update(kind, full, changes=[catalog.PermissionsChange(principal=sp.application_id, add=[privilege])])
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=3600)
    return ws.client(token=token.token_value)


@pytest.fixture
def masked(w: WorkspaceClient) -> WorkspaceClient:
    w.catalogs.create(name="m")
    w.schemas.create(name="s", catalog_name="m")
    _ok(w, "CREATE TABLE m.s.people (id INT, ssn STRING, city STRING)")
    _ok(w, "INSERT INTO m.s.people VALUES (1, '1234', 'Boise'), (2, '5678', 'Austin')")
    _ok(w, MASK)
    _ok(w, "ALTER TABLE m.s.people ALTER COLUMN ssn SET MASK m.s.pii")
    return w


def test_a_mask_answers_for_whoever_queries(masked: WorkspaceClient, ws: RunningWorkspace) -> None:
    engineer = _reader(masked, ws, "eng", "engineers")
    analyst = _reader(masked, ws, "ana", "analysts")
    query = "SELECT p.id, p.ssn, city FROM m.s.people AS p ORDER BY p.id"
    assert _ok(engineer, query) == [["1", "1234", "Boise"], ["2", "5678", "Austin"]]
    assert _ok(analyst, query) == [["1", "***", "Boise"], ["2", "***", "Austin"]]
    # no way around it: star, a filter on the masked column, a subquery, a join, a CTAS of the masked data
    assert _ok(analyst, "SELECT * FROM m.s.people WHERE ssn = '1234'") == []
    assert _ok(analyst, "SELECT max(ssn) FROM (SELECT * FROM m.s.people)") == [["***"]]
    assert _ok(analyst, "SELECT a.ssn FROM m.s.people a JOIN m.s.people b ON a.id = b.id LIMIT 1") == [["***"]]
    _ok(masked, "CREATE VIEW m.s.people_v AS SELECT id, ssn FROM m.s.people")
    assert _ok(analyst, "SELECT ssn FROM m.s.people_v ORDER BY id") == [["***"], ["***"]]
    assert _ok(engineer, "SELECT ssn FROM m.s.people_v ORDER BY id") == [["1234"], ["5678"]]
    # the admin is no exception (masks apply to everyone; the function decides)
    assert _ok(masked, "SELECT ssn FROM m.s.people WHERE id = 1") == [["***"]]


def test_writes_keep_the_stored_values_and_the_mask_shows_in_table_info(masked: WorkspaceClient) -> None:
    _ok(masked, "UPDATE m.s.people SET city = 'Denver' WHERE ssn = '1234'")  # the target is not masked
    _ok(
        masked,
        "MERGE INTO m.s.people t USING (SELECT 2 AS id, '9999' AS ssn, 'Reno' AS city) s ON t.id = s.id"
        " WHEN MATCHED THEN UPDATE SET *",
    )
    column = next(c for c in masked.tables.get("m.s.people").columns if c.name == "ssn")
    assert column.mask is not None and column.mask.function_name == "m.s.pii"
    _ok(masked, "ALTER TABLE m.s.people ALTER COLUMN ssn DROP MASK")
    assert _ok(masked, "SELECT id, ssn, city FROM m.s.people ORDER BY id") == [
        ["1", "1234", "Denver"],
        ["2", "9999", "Reno"],
    ]
    assert next(c for c in masked.tables.get("m.s.people").columns if c.name == "ssn").mask is None


def test_mask_using_columns_and_typed_results(masked: WorkspaceClient) -> None:
    _ok(masked, "CREATE TABLE m.s.pay (id INT, salary DECIMAL(12,2), owner STRING)")
    _ok(masked, "INSERT INTO m.s.pay VALUES (1, 1000.50, 'admin@apev.local'), (2, 2000.25, 'someone')")
    _ok(
        masked,
        "CREATE FUNCTION m.s.own(v DECIMAL(12,2), who STRING) RETURNS DECIMAL(12,2)"
        " RETURN CASE WHEN who = current_user() THEN v ELSE NULL END",
    )
    _ok(masked, "ALTER TABLE m.s.pay ALTER COLUMN salary SET MASK m.s.own USING COLUMNS (owner)")
    done = _sql(masked, "SELECT id, salary FROM m.s.pay ORDER BY id")
    assert done.result.data_array == [["1", "1000.50"], ["2", None]]
    assert done.manifest.schema.columns[1].type_text == "DECIMAL(12,2)"


def test_function_and_mask_errors_name_the_problem(masked: WorkspaceClient, ws: RunningWorkspace) -> None:
    cases = {
        "ALTER TABLE m.s.people ALTER COLUMN nope SET MASK m.s.pii": "UNRESOLVED_COLUMN",
        "ALTER TABLE m.s.people ALTER COLUMN city SET MASK m.s.missing": "ROUTINE_NOT_FOUND",
        "ALTER TABLE m.s.people ALTER COLUMN city SET MASK m.s.pii USING COLUMNS (id)": "MASK_FUNCTION_ARITY",
        MASK.replace("OR REPLACE ", ""): "ROUTINE_ALREADY_EXISTS",
        "CREATE FUNCTION m.s.f(v INT) RETURNS INT RETURN (SELECT max(id) FROM m.s.people)": "UNSUPPORTED_FEATURE",
        "DROP FUNCTION m.s.missing": "ROUTINE_NOT_FOUND",
    }
    for statement, error in cases.items():
        failed = _sql(masked, statement)
        assert failed.status.state == sql.StatementState.FAILED, statement
        assert error in failed.status.error.message, (statement, failed.status.error.message)
    # only the table's owner (or MANAGE) sets a mask; CREATE_FUNCTION is needed to create one
    analyst = _reader(masked, ws, "ana2", "analysts")
    refused = _sql(analyst, "ALTER TABLE m.s.people ALTER COLUMN ssn DROP MASK")
    assert "INSUFFICIENT_PERMISSIONS" in refused.status.error.message
    refused = _sql(analyst, "CREATE FUNCTION m.s.g(v STRING) RETURNS STRING RETURN v")
    assert "INSUFFICIENT_PERMISSIONS" in refused.status.error.message
    _ok(masked, "DROP FUNCTION IF EXISTS m.s.missing")


def test_masks_and_functions_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from apev_workspace.testing import running_workspace

    for attempt in range(2):
        with running_workspace(tmp_path / "ws") as ws:
            workspace, admin = ws.workspace, ws.workspace.identity.admin_principal()
            if attempt == 0:
                workspace.uc.create_catalog(admin, "m", {})
                workspace.sql.run(admin, "CREATE SCHEMA m.s")
                workspace.sql.run(admin, "CREATE TABLE m.s.people AS SELECT 1 AS id, '1234' AS ssn")
                workspace.sql.run(admin, MASK)
                workspace.sql.run(admin, "ALTER TABLE m.s.people ALTER COLUMN ssn SET MASK m.s.pii")
            assert workspace.sql.run(admin, "SELECT ssn FROM m.s.people").rows == [["***"]]
            with pytest.raises(SqlError, match="ROUTINE_ALREADY_EXISTS"):
                workspace.sql.run(admin, MASK.replace("OR REPLACE ", ""))


def test_copy_into_from_a_query_adds_columns_and_stays_idempotent(w: WorkspaceClient) -> None:
    w.catalogs.create(name="c")
    w.schemas.create(name="b", catalog_name="c")
    w.volumes.create(catalog_name="c", schema_name="b", name="landing", volume_type=catalog.VolumeType.MANAGED)
    lines = "".join(json.dumps({"ID": str(i), "AMOUNT": f"{i}.50"}) + "\n" for i in range(3))
    w.files.upload("/Volumes/c/b/landing/e/run-1/part-1.json", io.BytesIO(lines.encode()), overwrite=True)
    copy = (
        "COPY INTO c.b.e FROM (SELECT *, current_timestamp() AS _ingested_at, _metadata.file_path AS _source_file,"
        " _metadata.file_name AS _file, :run_id AS _run_id FROM '/Volumes/c/b/landing/e/')"
        " FILEFORMAT = JSON COPY_OPTIONS ('mergeSchema' = 'true')"
    )
    _ok(w, "CREATE TABLE IF NOT EXISTS c.b.e")
    params = [sql.StatementParameterListItem(name="run_id", value="41")]
    assert _ok(w, copy, parameters=params) == [["3", "3", "0"]]
    rows = _ok(w, "SELECT ID, AMOUNT, _source_file, _file, _run_id, _ingested_at IS NOT NULL FROM c.b.e ORDER BY ID")
    assert rows == [[str(i), f"{i}.50", "/Volumes/c/b/landing/e/run-1/part-1.json", "part-1.json", "41", "true"]
                    for i in range(3)]  # fmt: skip
    assert [c.name for c in w.tables.get("c.b.e").columns] == ["ID", "AMOUNT", "_ingested_at", "_source_file",
                                                               "_file", "_run_id"]  # fmt: skip
    params = [sql.StatementParameterListItem(name="run_id", value="42")]
    assert _ok(w, copy, parameters=params) == [["0", "0", "0"]]  # the same file is not loaded twice
    w.files.upload("/Volumes/c/b/landing/e/run-2/part-1.json", io.BytesIO(lines.splitlines(True)[0].encode()))
    assert _ok(w, copy, parameters=params) == [["1", "1", "0"]]
    assert _ok(w, "SELECT count(*) FROM c.b.e WHERE _run_id = '42' AND _source_file LIKE '%/run-2/%'") == [["1"]]
    for bad, error in (
        ("COPY INTO c.b.e FROM (SELECT * FROM c.b.e) FILEFORMAT = JSON", "COPY_INTO_SYNTAX_ERROR"),
        ("COPY INTO c.b.e FROM (SELECT _metadata.nope FROM '/Volumes/c/b/landing/e/') FILEFORMAT = JSON", "nope"),
    ):
        failed = _sql(w, bad)
        assert failed.status.state == sql.StatementState.FAILED and error in failed.status.error.message
