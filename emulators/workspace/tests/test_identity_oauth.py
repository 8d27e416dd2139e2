"""OAuth M2M: service principal secrets, discovery, the client-credentials token endpoint, through databricks-sdk."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service import jobs

from apev_workspace.testing import RunningWorkspace, running_workspace, upload


def m2m(host: str, client_id: str, client_secret: str) -> WorkspaceClient:
    cfg = Config(host=host, client_id=client_id, client_secret=client_secret, auth_type="oauth-m2m")
    return WorkspaceClient(config=cfg)


def test_discovery_document_names_the_token_endpoint(ws: RunningWorkspace) -> None:
    doc = httpx.get(f"{ws.host}/oidc/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == f"{ws.host}/oidc"
    assert doc["token_endpoint"] == f"{ws.host}/oidc/v1/token"
    assert doc["authorization_endpoint"] == f"{ws.host}/oidc/v1/authorize"


def test_secret_signs_in_as_the_principal_everywhere_a_pat_does(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    sp = w.service_principals.create(display_name="tenant_t1_pipeline")
    assert sp.id and sp.application_id
    created = w.service_principal_secrets_proxy.create(service_principal_id=sp.id, lifetime="3600s")
    assert created.secret and created.id and created.status == "ACTIVE"
    listed = list(w.service_principal_secrets_proxy.list(service_principal_id=sp.id))
    assert [s.id for s in listed] == [created.id] and listed[0].secret_hash == created.secret[-4:]

    sp_client = m2m(ws.host, sp.application_id, created.secret)
    assert sp_client.current_user.me().user_name == sp.application_id
    # Acts as that principal: its own job, run as itself, and no admin rights.
    upload(w, "/Shared/oauth/ok.py", "print('fine')")
    job = sp_client.jobs.create(
        name="m2m-job",
        tasks=[jobs.Task(task_key="t", spark_python_task=jobs.SparkPythonTask(python_file="/Shared/oauth/ok.py"))],
    )
    assert job.job_id is not None
    assert w.jobs.get(job_id=job.job_id).creator_user_name == sp.application_id
    with pytest.raises(PermissionDenied):
        sp_client.service_principals.create(display_name="not-allowed")
    # The token is internal: it never shows in token listings.
    assert w.token_management.list() is not None
    assert all(t.owner_id != int(sp.id) for t in w.token_management.list())

    # A deleted secret no longer signs in; the principal's other secrets do.
    second = w.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    w.service_principal_secrets_proxy.delete(service_principal_id=sp.id, secret_id=created.id)
    with pytest.raises(Exception, match="invalid_client"):
        m2m(ws.host, sp.application_id, created.secret).current_user.me()
    assert second.secret
    assert m2m(ws.host, sp.application_id, second.secret).current_user.me().user_name == sp.application_id


def test_wrong_secret_or_unknown_client_gets_401_invalid_client(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    sp = w.service_principals.create(display_name="p")
    assert sp.id and sp.application_id
    w.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    token_url = f"{ws.host}/oidc/v1/token"
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    for client_id, secret in ((sp.application_id, "dose-wrong"), ("no-such-client", "x")):
        answer = httpx.post(token_url, data=form, auth=(client_id, secret))
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
    with pytest.raises(Exception, match="invalid_client: Client authentication failed"):
        m2m(ws.host, sp.application_id, "dose-wrong").current_user.me()
    assert httpx.post(token_url, data={"grant_type": "password"}, auth=("a", "b")).json()["error"] == (
        "unsupported_grant_type"
    )


def test_token_answer_and_form_client_authentication(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    sp = w.service_principals.create(display_name="p")
    assert sp.id and sp.application_id
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
    assert secret
    answer = httpx.post(
        f"{ws.host}/oidc/v1/token",
        data={
            "grant_type": "client_credentials",
            "scope": "all-apis",
            "client_id": sp.application_id,
            "client_secret": secret,
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "all-apis"
    me = httpx.get(f"{ws.host}/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["userName"] == sp.application_id


def test_only_admins_manage_secrets_and_unknown_principal_is_404(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    sp = w.service_principals.create(display_name="p")
    assert sp.id and sp.application_id
    token = w.token_management.create_obo_token(application_id=sp.application_id).token_value
    sp_pat = ws.client(token=token)
    with pytest.raises(PermissionDenied):
        sp_pat.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    with pytest.raises(NotFound):
        w.service_principal_secrets_proxy.create(service_principal_id="999")


def test_short_lived_tokens_expire_and_the_sdk_refreshes(tmp_path: Path) -> None:
    with running_workspace(tmp_path / "ws", oauth_token_ttl_seconds=2) as ws:
        w = ws.client()
        sp = w.service_principals.create(display_name="p")
        assert sp.id and sp.application_id
        secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
        assert secret
        form = {"grant_type": "client_credentials", "scope": "all-apis"}
        body = httpx.post(f"{ws.host}/oidc/v1/token", data=form, auth=(sp.application_id, secret)).json()
        assert body["expires_in"] == 2
        sp_client = m2m(ws.host, sp.application_id, secret)
        assert sp_client.current_user.me().user_name == sp.application_id
        time.sleep(2.2)
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        expired = httpx.get(f"{ws.host}/api/2.0/preview/scim/v2/Me", headers=headers)
        assert expired.status_code == 401
        # The SDK's token went stale too; it fetches a new one and keeps working.
        assert sp_client.current_user.me().user_name == sp.application_id


def test_a_deleted_principal_takes_its_secrets_and_a_deleted_secret_signs_in_no_more(
    w: WorkspaceClient, ws: RunningWorkspace
) -> None:
    sp = w.service_principals.create(display_name="rotating")
    assert sp.id and sp.application_id
    old = w.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    new = w.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    assert old.id and old.secret and new.id and new.secret
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    token = httpx.post(f"{ws.host}/oidc/v1/token", data=form, auth=(sp.application_id, old.secret))
    assert token.status_code == 200  # both valid until one is deleted (a rotation's grace period)
    w.service_principal_secrets_proxy.delete(service_principal_id=sp.id, secret_id=old.id)
    refused = httpx.post(f"{ws.host}/oidc/v1/token", data=form, auth=(sp.application_id, old.secret))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert httpx.post(f"{ws.host}/oidc/v1/token", data=form, auth=(sp.application_id, new.secret)).status_code == 200
    assert [s.id for s in w.service_principal_secrets_proxy.list(service_principal_id=sp.id)] == [new.id]
    w.service_principals.delete(sp.id)
    assert not [s for s in ws.workspace.identity.sp_secrets.values() if s["sp_id"] == sp.id]
    gone = httpx.post(f"{ws.host}/oidc/v1/token", data=form, auth=(sp.application_id, new.secret))
    assert gone.status_code == 401
