"""Unity Catalog through databricks-sdk: catalogs, schemas, volumes, tables and enforced grants."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import catalog, iam, sql

from apev_workspace.testing import RunningWorkspace


def _principal(w: WorkspaceClient, ws: RunningWorkspace, name: str) -> tuple[iam.ServicePrincipal, WorkspaceClient]:
    sp = w.service_principals.create(display_name=name)
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=3600)
    return sp, ws.client(token=token.token_value)


def _warehouse(w: WorkspaceClient) -> str:
    return next(iter(w.warehouses.list())).id  # type: ignore[return-value]


def _sql(w: WorkspaceClient, statement: str) -> sql.StatementResponse:
    return w.statement_execution.execute_statement(statement=statement, warehouse_id=_warehouse(w), wait_timeout="30s")


def _change(principal: str, add: list[catalog.Privilege] = (), remove: list[catalog.Privilege] = ()) -> list:  # type: ignore[assignment]
    return [catalog.PermissionsChange(principal=principal, add=list(add) or None, remove=list(remove) or None)]


def test_catalog_schema_volume_lifecycle(w: WorkspaceClient) -> None:
    created = w.catalogs.create(name="t1", comment="tenant one")
    assert created.name == "t1" and created.owner == "admin@apev.local"
    with pytest.raises(ResourceAlreadyExists):
        w.catalogs.create(name="t1")
    assert [c.name for c in w.catalogs.list()] == ["t1"]
    assert w.catalogs.update("t1", comment="changed").comment == "changed"

    bronze = w.schemas.create(name="bronze", catalog_name="t1")
    assert bronze.full_name == "t1.bronze"
    assert {s.name for s in w.schemas.list(catalog_name="t1")} == {"bronze", "default", "information_schema"}
    volume = w.volumes.create(
        catalog_name="t1", schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED
    )
    assert volume.full_name == "t1.bronze.landing"
    assert w.volumes.read("t1.bronze.landing").volume_type == catalog.VolumeType.MANAGED
    assert [v.name for v in w.volumes.list(catalog_name="t1", schema_name="bronze")] == ["landing"]

    _sql(
        w,
        "CREATE TABLE t1.bronze.events (id BIGINT, amount DECIMAL(10,2), at TIMESTAMP, tags ARRAY<STRING>)"
        " USING DELTA PARTITIONED BY (id) COMMENT 'raw events' TBLPROPERTIES ('quality' = 'bronze')",
    )
    table = w.tables.get("t1.bronze.events")
    assert table.table_type == catalog.TableType.MANAGED
    assert table.comment == "raw events" and table.properties == {"quality": "bronze"}
    assert [(c.name, c.type_name) for c in table.columns] == [
        ("id", catalog.ColumnTypeName.LONG),
        ("amount", catalog.ColumnTypeName.DECIMAL),
        ("at", catalog.ColumnTypeName.TIMESTAMP),
        ("tags", catalog.ColumnTypeName.ARRAY),
    ]
    assert table.columns[1].type_text == "decimal(10,2)"
    assert [t.name for t in w.tables.list(catalog_name="t1", schema_name="bronze")] == ["events"]

    with pytest.raises(BadRequest):
        w.catalogs.delete("t1")  # not empty
    with pytest.raises(BadRequest):
        w.schemas.delete("t1.bronze")
    w.volumes.delete("t1.bronze.landing")
    w.catalogs.delete("t1", force=True)
    with pytest.raises(NotFound):
        w.catalogs.get("t1")


def test_grants_are_enforced_inherited_and_revocable(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    w.catalogs.create(name="t2")
    w.schemas.create(name="gold", catalog_name="t2")
    _sql(w, "CREATE TABLE t2.gold.kpis AS SELECT 1 AS id, 'x' AS name")
    analyst, as_analyst = _principal(w, ws, "analyst")
    member, as_member = _principal(w, ws, "member")
    group = w.groups.create(display_name="tenant_t2_analysts", members=[iam.ComplexValue(value=member.id)])

    # no privileges: the catalog is invisible and the table refused
    assert list(as_analyst.catalogs.list()) == []
    with pytest.raises(PermissionDenied):
        as_analyst.tables.get("t2.gold.kpis")
    refused = _sql(as_analyst, "SELECT * FROM t2.gold.kpis")
    assert refused.status.state == sql.StatementState.FAILED
    assert refused.status.error.error_code == sql.ServiceErrorCode.BAD_REQUEST
    assert "INSUFFICIENT_PERMISSIONS" in refused.status.error.message
    assert "USE CATALOG" in refused.status.error.message

    # USE_CATALOG + USE_SCHEMA are not enough without SELECT
    w.grants.update("catalog", "t2", changes=_change(analyst.application_id, [catalog.Privilege.USE_CATALOG]))
    w.grants.update("schema", "t2.gold", changes=_change(analyst.application_id, [catalog.Privilege.USE_SCHEMA]))
    assert [c.name for c in as_analyst.catalogs.list()] == ["t2"]
    refused = _sql(as_analyst, "SELECT * FROM t2.gold.kpis")
    assert refused.status.state == sql.StatementState.FAILED and "SELECT" in refused.status.error.message

    granted = w.grants.update(
        "table", "t2.gold.kpis", changes=_change(analyst.application_id, [catalog.Privilege.SELECT])
    )
    assert granted.privilege_assignments[0].privileges == [catalog.Privilege.SELECT]
    allowed = _sql(as_analyst, "SELECT id, name FROM t2.gold.kpis")
    assert allowed.status.state == sql.StatementState.SUCCEEDED
    assert allowed.result.data_array == [["1", "x"]]
    assert as_analyst.tables.get("t2.gold.kpis").name == "kpis"
    # reads do not imply writes
    write = _sql(as_analyst, "INSERT INTO t2.gold.kpis VALUES (2, 'y')")
    assert write.status.state == sql.StatementState.FAILED and "MODIFY" in write.status.error.message

    # a grant to a group reaches its members, inherited from the catalog
    denied = _sql(as_member, "SELECT * FROM t2.gold.kpis")
    assert denied.status.state == sql.StatementState.FAILED
    w.grants.update(
        "catalog",
        "t2",
        changes=_change(
            group.display_name, [catalog.Privilege.USE_CATALOG, catalog.Privilege.USE_SCHEMA, catalog.Privilege.SELECT]
        ),
    )
    assert _sql(as_member, "SELECT count(*) FROM t2.gold.kpis").result.data_array == [["1"]]
    effective = w.grants.get_effective("table", "t2.gold.kpis", principal=member.application_id)
    inherited = {(p.privilege, p.inherited_from_name) for a in effective.privilege_assignments for p in a.privileges}
    assert (catalog.Privilege.SELECT, "t2") in inherited

    # revoking removes access
    w.grants.update("table", "t2.gold.kpis", changes=_change(analyst.application_id, remove=[catalog.Privilege.SELECT]))
    assert _sql(as_analyst, "SELECT * FROM t2.gold.kpis").status.state == sql.StatementState.FAILED
    assert w.grants.get("table", "t2.gold.kpis").privilege_assignments in (None, [])
    # only owners (and admins) manage grants
    with pytest.raises(PermissionDenied):
        as_analyst.grants.update("catalog", "t2", changes=_change(analyst.application_id, [catalog.Privilege.SELECT]))


def test_sql_grant_statements_and_creation_privileges(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    w.catalogs.create(name="t3")
    engineer, as_engineer = _principal(w, ws, "engineer")
    denied = _sql(as_engineer, "CREATE SCHEMA t3.silver")
    assert denied.status.state == sql.StatementState.FAILED
    assert _sql(w, f"GRANT USE CATALOG, CREATE SCHEMA ON CATALOG t3 TO `{engineer.application_id}`").status.state == (
        sql.StatementState.SUCCEEDED
    )
    assert _sql(as_engineer, "CREATE SCHEMA t3.silver").status.state == sql.StatementState.SUCCEEDED
    # the creator owns what it creates, so it may create tables there
    created = _sql(as_engineer, "CREATE TABLE t3.silver.t (id INT)")
    assert created.status.state == sql.StatementState.SUCCEEDED, created.status.error
    shown = _sql(w, "SHOW GRANTS ON CATALOG t3")
    assert sorted(shown.result.data_array) == [
        [engineer.application_id, "CREATE SCHEMA", "CATALOG", "t3"],
        [engineer.application_id, "USE CATALOG", "CATALOG", "t3"],
    ]
    _sql(w, f"REVOKE CREATE SCHEMA ON CATALOG t3 FROM `{engineer.application_id}`")
    assert _sql(as_engineer, "CREATE SCHEMA t3.gold").status.state == sql.StatementState.FAILED


def test_tables_follow_sql_ddl(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    w.catalogs.create(name="t4")
    assert _sql(w, "CREATE TABLE t4.default.a (id INT)").status.state == sql.StatementState.SUCCEEDED
    _sql(w, "CREATE VIEW t4.default.v AS SELECT id FROM t4.default.a")
    assert {t.name: t.table_type for t in w.tables.list(catalog_name="t4", schema_name="default")} == {
        "a": catalog.TableType.MANAGED,
        "v": catalog.TableType.VIEW,
    }
    assert "SELECT id FROM t4.default.a" in (w.tables.get("t4.default.v").view_definition or "")
    assert w.tables.exists("t4.default.a").table_exists is True
    owner, as_owner = _principal(w, ws, "owner")
    w.grants.update(
        "catalog",
        "t4",
        changes=_change(
            owner.application_id,
            [catalog.Privilege.USE_CATALOG, catalog.Privilege.USE_SCHEMA, catalog.Privilege.SELECT],
        ),
    )
    dropped = _sql(as_owner, "DROP TABLE t4.default.a")
    assert dropped.status.state == sql.StatementState.FAILED  # SELECT is not ownership
    assert _sql(w, "DROP VIEW t4.default.v").status.state == sql.StatementState.SUCCEEDED
    w.tables.delete("t4.default.a")
    assert list(w.tables.list(catalog_name="t4", schema_name="default")) == []
    assert w.tables.exists("t4.default.a").table_exists is False
