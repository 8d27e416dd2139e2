"""Warehouse permissions (`/api/2.0/permissions/warehouses/{id}`) through databricks-sdk: CAN_USE is what lets a
principal run statements, directly or through a group, over the API and in SQL tasks."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied
from databricks.sdk.service import iam, jobs, sql
from databricks.sdk.service.sql import WarehouseAccessControlRequest as Ace
from databricks.sdk.service.sql import WarehousePermissionLevel as Level

from apev_workspace.testing import RunningWorkspace, upload, wait_run


def _sp(w: WorkspaceClient, ws: RunningWorkspace, name: str) -> tuple[iam.ServicePrincipal, WorkspaceClient]:
    sp = w.service_principals.create(display_name=name)
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
    return sp, ws.client(token=token.token_value)


def _levels(perms: sql.WarehousePermissions) -> dict[str, str]:
    out = {}
    for ace in perms.access_control_list or []:
        name = ace.user_name or ace.group_name or ace.service_principal_name or "?"
        out[name] = ",".join(str(p.permission_level.value) for p in ace.all_permissions or [] if p.permission_level)
    return out


def test_can_use_decides_who_runs_statements(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    (default,) = list(w.warehouses.list())
    wid = str(default.id)
    user, as_user = _sp(w, ws, "someone")
    member, as_member = _sp(w, ws, "member")
    group = w.groups.create(display_name="sql-people", members=[iam.ComplexValue(value=member.id)])
    # the starter warehouse is open to every workspace user, as on Databricks
    assert _levels(w.warehouses.get_permissions(wid))["users"] == "CAN_USE"
    ok = as_user.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=wid, wait_timeout="10s")
    assert ok.status.state == sql.StatementState.SUCCEEDED

    # lock it down: PUT replaces the direct entries; the owner and admins keep theirs
    w.warehouses.set_permissions(
        wid, access_control_list=[Ace(group_name="sql-people", permission_level=Level.CAN_USE)]
    )
    got = _levels(w.warehouses.get_permissions(wid))
    assert got == {"admin@apev.local": "IS_OWNER", "sql-people": "CAN_USE", "admins": "CAN_MANAGE"}
    with pytest.raises(PermissionDenied, match="CAN_USE"):
        as_user.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=wid, wait_timeout="10s")
    ok = as_member.statement_execution.execute_statement(statement="SELECT 2", warehouse_id=wid, wait_timeout="10s")
    assert ok.result.data_array == [["2"]]  # through the group

    # PATCH adds one principal (by application id); CAN_MONITOR is not enough to run
    w.warehouses.update_permissions(
        wid, access_control_list=[Ace(service_principal_name=user.application_id, permission_level=Level.CAN_MONITOR)]
    )
    with pytest.raises(PermissionDenied):
        as_user.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=wid, wait_timeout="10s")
    w.warehouses.update_permissions(
        wid, access_control_list=[Ace(service_principal_name=user.application_id, permission_level=Level.CAN_USE)]
    )
    ok = as_user.statement_execution.execute_statement(statement="SELECT 3", warehouse_id=wid, wait_timeout="10s")
    assert ok.result.data_array == [["3"]]
    assert _levels(w.warehouses.get_permissions(wid))[str(user.application_id)] == "CAN_USE"

    # only managers read or change the ACL; unknown principals and levels are refused
    with pytest.raises(PermissionDenied):
        as_user.warehouses.get_permissions(wid)
    with pytest.raises(PermissionDenied):
        as_user.warehouses.update_permissions(
            wid, access_control_list=[Ace(group_name="users", permission_level=Level.CAN_USE)]
        )
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        w.warehouses.update_permissions(
            wid, access_control_list=[Ace(group_name="nobody", permission_level=Level.CAN_USE)]
        )
    with pytest.raises(InvalidParameterValue, match="IS_OWNER"):
        w.warehouses.update_permissions(
            wid, access_control_list=[Ace(group_name="users", permission_level=Level.IS_OWNER)]
        )
    assert group.id


def test_sql_task_needs_can_use_for_its_run_as(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    (default,) = list(w.warehouses.list())
    wid = str(default.id)
    sp, _ = _sp(w, ws, "runner")
    upload(w, "/Shared/perm/q.sql", "SELECT 1")
    w.warehouses.set_permissions(wid, access_control_list=[])  # no one but the owner and admins
    job = w.jobs.create(
        name="sql-as-sp",
        tasks=[jobs.Task(task_key="q", sql_task=jobs.SqlTask(
            file=jobs.SqlTaskFile(path="/Shared/perm/q.sql", source=jobs.Source.WORKSPACE), warehouse_id=wid))],
        run_as=jobs.JobRunAs(service_principal_name=sp.application_id),
    )  # fmt: skip
    refused = wait_run(w, w.jobs.run_now(job_id=job.job_id).run_id, timeout=60)
    assert refused.state.result_state == jobs.RunResultState.FAILED
    assert "CAN_USE" in (refused.state.state_message or "") + str(w.jobs.get_run_output(refused.tasks[0].run_id).error)
    w.warehouses.update_permissions(
        wid, access_control_list=[Ace(service_principal_name=sp.application_id, permission_level=Level.CAN_USE)]
    )
    done = wait_run(w, w.jobs.run_now(job_id=job.job_id).run_id, timeout=60)
    assert done.state.result_state == jobs.RunResultState.SUCCESS
