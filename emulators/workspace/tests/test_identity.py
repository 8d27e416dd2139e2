"""Users, groups, service principals and tokens; every request resolves to a principal."""

from __future__ import annotations

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceConflict, Unauthenticated
from databricks.sdk.service import iam

from apev_workspace.testing import RunningWorkspace


def test_admin_is_me_and_in_admins(w: WorkspaceClient) -> None:
    me = w.current_user.me()
    assert me.user_name == "admin@apev.local"
    assert "admins" in {g.display for g in me.groups}


def test_users_groups_service_principals_and_membership(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    user = w.users.create(user_name="dana@clinic.example", display_name="Dana")
    with pytest.raises(ResourceConflict, match="already exists"):
        w.users.create(user_name="dana@clinic.example")
    sp = w.service_principals.create(display_name="tenant_t1_pipeline")
    group = w.groups.create(display_name="tenant_t1_engineers", members=[iam.ComplexValue(value=user.id)])
    w.groups.patch(
        group.id,
        operations=[iam.Patch(op=iam.PatchOp.ADD, path="members", value=[{"value": sp.id}])],
        schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP],
    )
    got = w.groups.get(group.id)
    assert {m.value for m in got.members} == {user.id, sp.id}
    assert [u.user_name for u in w.users.list(filter='userName eq "dana@clinic.example"')] == [user.user_name]
    assert w.service_principals.get(sp.id).application_id == sp.application_id
    assert [g.display_name for g in w.groups.list(filter='displayName eq "tenant_t1_engineers"')] == [
        "tenant_t1_engineers"
    ]
    assert "tenant_t1_engineers" in {g.display for g in w.users.get(user.id).groups}

    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=3600)
    as_sp = ws.client(token=token.token_value)
    me = as_sp.current_user.me()
    assert me.user_name == sp.application_id
    assert "tenant_t1_engineers" in {g.display for g in me.groups}
    with pytest.raises(PermissionDenied):
        as_sp.users.create(user_name="mallory@example.com")

    w.groups.patch(group.id, operations=[iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{sp.id}"]')])
    assert "tenant_t1_engineers" not in {g.display for g in as_sp.current_user.me().groups or []}

    own = as_sp.tokens.create(comment="mine", lifetime_seconds=600)
    assert sorted(t.comment for t in as_sp.tokens.list()) == ["", "mine"]  # the admin's OBO token is its own too
    assert ws.client(token=own.token_value).current_user.me().user_name == sp.application_id
    as_sp.tokens.delete(own.token_info.token_id)
    with pytest.raises(Unauthenticated):
        ws.client(token=own.token_value).current_user.me()

    w.service_principals.delete(sp.id)
    with pytest.raises(NotFound):
        w.service_principals.get(sp.id)
    with pytest.raises(Unauthenticated):
        as_sp.current_user.me()


def test_unknown_or_missing_token_is_401_in_databricks_shape(ws: RunningWorkspace) -> None:
    with pytest.raises(Unauthenticated):
        ws.client(token="dapi-not-a-token").current_user.me()
    response = httpx.get(f"{ws.host}/api/2.0/preview/scim/v2/Me")
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED" and response.json()["message"]
    well_known = httpx.get(f"{ws.host}/.well-known/databricks-config")
    assert well_known.status_code == 200 and well_known.json()["workspace_id"]
    unknown = httpx.get(f"{ws.host}/api/2.0/nope", headers={"Authorization": f"Bearer {ws.admin_token}"})
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_expired_token_is_rejected(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    import time

    sp = w.service_principals.create(display_name="short-lived")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=1)
    assert token.token_info.expiry_time - token.token_info.creation_time == 1000
    client = ws.client(token=token.token_value)
    assert client.current_user.me().user_name == sp.application_id
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        client.current_user.me()
