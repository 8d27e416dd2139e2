"""Secrets, their ACLs, and tasks reading them as their run-as principal."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists, Unauthenticated
from databricks.sdk.service import jobs, workspace

from apev_workspace.testing import RunningWorkspace, py_task, upload, wait_run

READER = """
import os, sys
from pathlib import Path
Path(sys.argv[1]).write_text(os.environ["DATABRICKS_TOKEN"])  # test only: to prove the token dies with the task
from databricks.sdk import WorkspaceClient
print("me =", WorkspaceClient().current_user.me().user_name)
for scope in sys.argv[2:]:
    try:
        print(scope, "=", dbutils.secrets.get(scope, "mcp_api_key"))
    except Exception as err:
        print(scope, "!", err)
"""


def test_scopes_secrets_and_acls(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    w.secrets.create_scope("agentprovision_t1")
    with pytest.raises(ResourceAlreadyExists):
        w.secrets.create_scope("agentprovision_t1")
    w.secrets.put_secret("agentprovision_t1", "mcp_api_key", string_value="t1_sk_abc")
    w.secrets.put_secret("agentprovision_t1", "blob", bytes_value=base64.b64encode(b"\x00\x01").decode())
    assert [s.key for s in w.secrets.list_secrets("agentprovision_t1")] == ["blob", "mcp_api_key"]
    assert all(not hasattr(s, "value") or s.value is None for s in w.secrets.list_secrets("agentprovision_t1"))
    got = w.secrets.get_secret("agentprovision_t1", "mcp_api_key")
    assert base64.b64decode(got.value) == b"t1_sk_abc"
    assert [s.name for s in w.secrets.list_scopes()] == ["agentprovision_t1"]

    sp = w.service_principals.create(display_name="tenant_t1_reader")
    token = w.token_management.create_obo_token(application_id=sp.application_id).token_value
    reader = ws.client(token=token)
    with pytest.raises(PermissionDenied):
        reader.secrets.get_secret("agentprovision_t1", "mcp_api_key")
    assert list(reader.secrets.list_scopes()) == []
    w.secrets.put_acl("agentprovision_t1", sp.application_id, workspace.AclPermission.READ)
    assert base64.b64decode(reader.secrets.get_secret("agentprovision_t1", "mcp_api_key").value) == b"t1_sk_abc"
    with pytest.raises(PermissionDenied):
        reader.secrets.put_secret("agentprovision_t1", "x", string_value="y")
    acls = {a.principal: a.permission for a in w.secrets.list_acls("agentprovision_t1")}
    assert acls == {"admin@apev.local": workspace.AclPermission.MANAGE, sp.application_id: workspace.AclPermission.READ}
    w.secrets.delete_secret("agentprovision_t1", "blob")
    with pytest.raises(NotFound):
        w.secrets.get_secret("agentprovision_t1", "blob")
    w.secrets.delete_scope("agentprovision_t1")
    with pytest.raises(NotFound):
        w.secrets.list_secrets("agentprovision_t1")


def test_task_running_as_service_principal_reads_only_scopes_it_may(
    w: WorkspaceClient, ws: RunningWorkspace, tmp_path: Path
) -> None:
    sp = w.service_principals.create(display_name="tenant_t1_pipeline")
    for scope in ("agentprovision_t1", "agentprovision_t2"):
        w.secrets.create_scope(scope)
        w.secrets.put_secret(scope, "mcp_api_key", string_value=f"{scope}_key")
    w.secrets.put_acl("agentprovision_t1", sp.application_id, workspace.AclPermission.READ)
    path = upload(w, "/Shared/secrets/reader.py", READER)
    job = w.jobs.create(
        name="reader",
        run_as=jobs.JobRunAs(service_principal_name=sp.application_id),
        tasks=[py_task("read", path, str(tmp_path / "token"), "agentprovision_t1", "agentprovision_t2")],
    )
    assert w.jobs.get(job.job_id).run_as_user_name == sp.application_id
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    logs = w.jobs.get_run_output(run.tasks[0].run_id).logs
    assert f"me = {sp.application_id}" in logs  # the unchanged SDK inside the task, from DATABRICKS_HOST/TOKEN
    assert "agentprovision_t1 = agentprovision_t1_key" in logs
    assert "agentprovision_t2 ! PERMISSION_DENIED" in logs
    assert "agentprovision_t2_key" not in logs
    # the task's token was short-lived: it is revoked once the task ended
    with pytest.raises(Unauthenticated):
        ws.client(token=(tmp_path / "token").read_text()).current_user.me()
