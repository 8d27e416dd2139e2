"""SQL warehouses through databricks-sdk: the one made at first start, lifecycle and states."""

from __future__ import annotations

from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service import sql

from apev_workspace.testing import RunningWorkspace


def test_warehouse_lifecycle(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    (default,) = list(w.warehouses.list())
    assert default.name == "Local Starter Warehouse" and default.state == sql.State.RUNNING
    assert default.odbc_params.path == f"/sql/1.0/warehouses/{default.id}"

    created = w.warehouses.create_and_wait(name="tenant", cluster_size="Small", timeout=timedelta(seconds=10))
    assert created.state == sql.State.RUNNING and created.cluster_size == "Small"
    stopped = w.warehouses.stop_and_wait(created.id, timeout=timedelta(seconds=10))
    assert stopped.state == sql.State.STOPPED
    # a statement on a stopped warehouse starts it
    done = w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=created.id, wait_timeout="10s")
    assert done.result.data_array == [["1"]]
    assert w.warehouses.get(created.id).state == sql.State.RUNNING
    w.warehouses.edit_and_wait(created.id, name="tenant", cluster_size="Medium", timeout=timedelta(seconds=10))
    assert w.warehouses.get(created.id).cluster_size == "Medium"

    sp = w.service_principals.create(display_name="user")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
    other = ws.client(token=token.token_value)
    assert {x.id for x in other.warehouses.list()} == {default.id, created.id}  # anyone may use them
    with pytest.raises(PermissionDenied):
        other.warehouses.create(name="mine", cluster_size="Small")
    w.warehouses.delete(created.id)
    with pytest.raises(NotFound):
        w.warehouses.get(created.id)
