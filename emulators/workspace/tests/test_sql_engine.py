"""The engine behind the SQL API: restarts, per-catalog serialisation and cross-catalog parallelism."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from databricks.sdk.service import catalog, sql

from apev_workspace.sql.exceptions import SqlError
from apev_workspace.testing import running_workspace


def test_catalogs_grants_and_warehouse_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "ws"
    with running_workspace(data) as ws:
        w = ws.client()
        warehouses = [x.id for x in w.warehouses.list()]
        assert len(warehouses) == 1
        w.catalogs.create(name="kept")
        w.schemas.create(name="gold", catalog_name="kept")
        w.volumes.create(catalog_name="kept", schema_name="gold", name="v", volume_type=catalog.VolumeType.MANAGED)
        done = w.statement_execution.execute_statement(
            statement="CREATE TABLE kept.gold.t AS SELECT 42 AS answer", warehouse_id=warehouses[0], wait_timeout="30s"
        )
        assert done.status.state == sql.StatementState.SUCCEEDED
        w.grants.update(
            "table",
            "kept.gold.t",
            changes=[catalog.PermissionsChange(principal="users", add=[catalog.Privilege.SELECT])],
        )
    with running_workspace(data) as ws:
        w = ws.client()
        assert [x.id for x in w.warehouses.list()] == warehouses  # created once, at the first start only
        got = w.statement_execution.execute_statement(
            statement="SELECT answer FROM kept.gold.t", warehouse_id=warehouses[0], wait_timeout="30s"
        )
        assert got.result.data_array == [["42"]]
        assert w.grants.get("table", "kept.gold.t").privilege_assignments[0].principal == "users"
        assert w.volumes.read("kept.gold.v").name == "v"


def test_same_catalog_serialised_other_catalogs_parallel(tmp_path: Path) -> None:
    with running_workspace(tmp_path / "ws") as ws:
        workspace = ws.workspace
        admin = workspace.identity.admin_principal()
        for name in ("a", "b"):
            workspace.uc.create_catalog(admin, name, {})
        engine = workspace.sql.engine
        timeline: list[tuple[str, float]] = []

        def slow(name: str) -> None:
            workspace.sql.run(admin, f"CREATE TABLE {name}.default.t_{threading.get_ident()} AS SELECT 1 AS x")
            timeline.append((name, time.monotonic()))

        with engine.locked(["a"]):  # a long statement holds catalog a
            runners = [threading.Thread(target=slow, args=(n,)) for n in ("a", "b")]
            for r in runners:
                r.start()
            deadline = time.monotonic() + 10
            while not timeline and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)
            assert [n for n, _ in timeline] == ["b"]  # b ran while a waited
        for r in runners:
            r.join(10)
        assert [n for n, _ in timeline] == ["b", "a"]
        # a join across catalogs works in one statement
        workspace.sql.run(admin, "CREATE TABLE a.default.x AS SELECT 1 AS k; CREATE TABLE b.default.y AS SELECT 1 AS k")
        joined = workspace.sql.run(admin, "SELECT count(*) FROM a.default.x JOIN b.default.y USING (k)")
        assert joined.rows == [["1"]]
        with pytest.raises(SqlError) as failed:
            workspace.sql.run(admin, "SELECT * FROM a.default.x VERSION AS OF 1")
        assert failed.value.error_code == "BAD_REQUEST"
