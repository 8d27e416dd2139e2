"""The runtime's Databricks factory against the local workspace: SDK calls in a bounded worker pool, off the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from databricks.sdk.errors import PermissionDenied, Unauthenticated
from pydantic import ValidationError

from apev_runtime.databricks import DatabricksClients, DatabricksConfigError, DatabricksSignInError
from apev_runtime.errors import Failure, classify
from apev_runtime.settings import ServiceSettings
from apev_workspace.testing import running_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_workspace(tmp_path_factory.mktemp("ws")) as ws:
        yield ws


async def test_calls_run_in_a_bounded_pool_off_the_event_loop(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "would-be-a-second-auth-method")  # PAT auth is pinned
    clients = DatabricksClients(workspace.host, workspace.admin_token, threads=2)
    loop_thread = threading.get_ident()
    active = peak = 0
    lock = threading.Lock()

    def me(w):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        assert threading.get_ident() != loop_thread
        assert threading.current_thread().name.startswith("databricks")
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.1)  # a slow workspace must not block the loop
            return w.current_user.me().user_name
        finally:
            with lock:
                active -= 1

    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        names = await asyncio.gather(*(clients.call(me) for _ in range(6)))
        tick_task.cancel()
        await clients.ping()
    finally:
        clients.close()
    assert set(names) == {"admin@apev.local"}
    assert peak == 2  # bounded by the pool
    assert ticks >= 15  # the loop kept running during ~0.3 s of blocking SDK calls


async def test_bad_token_is_a_permanent_failure(workspace) -> None:  # type: ignore[no-untyped-def]
    clients = DatabricksClients(workspace.host, "dapi-not-a-real-token", threads=1)
    try:
        with pytest.raises((Unauthenticated, PermissionDenied)) as err:
            await clients.call(lambda w: w.jobs.list(limit=1).__iter__().__next__())
    finally:
        clients.close()
    assert classify(err.value) is Failure.PERMANENT
    assert "dapi-not-a-real-token" not in repr(clients)


async def test_injected_429_is_retried_by_the_sdk(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clients = DatabricksClients(workspace.host, workspace.admin_token, threads=1)
    workspace.add_fault(path="/api/2.0/preview/scim/v2/Me", action="429", retry_after=1, count=1)
    started = time.monotonic()
    try:
        await clients.ping()
    finally:
        clients.close()
        workspace.clear_faults()
    assert time.monotonic() - started >= 1.0


async def test_oauth_m2m_client_signs_in_as_the_service_principal(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_TOKEN", "would-be-a-second-auth-method")  # M2M auth is pinned too
    w = workspace.client()
    sp = w.service_principals.create(display_name="runtime-m2m")
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
    clients = DatabricksClients(workspace.host, client_id=sp.application_id, client_secret=secret, threads=1)
    try:
        await clients.check_sign_in()
        me = await clients.call(lambda w: w.current_user.me())
        # A tenant principal's token still gets its own PAT client next to the M2M one.
        admin = await clients.call(lambda w: w.current_user.me(), token=workspace.admin_token)
    finally:
        clients.close()
    assert me.user_name == sp.application_id and admin.user_name == "admin@apev.local"
    assert clients.auth_type == "oauth-m2m" and secret not in repr(clients)

    wrong = DatabricksClients(workspace.host, client_id=sp.application_id, client_secret="dose-wrong", threads=1)
    try:
        with pytest.raises(DatabricksSignInError, match=f"client id {sp.application_id} .*invalid_client") as err:
            await wrong.check_sign_in()
    finally:
        wrong.close()
    assert "dose-wrong" not in str(err.value)


def test_exactly_one_databricks_auth_method() -> None:
    with pytest.raises(DatabricksConfigError, match="not both"):
        DatabricksClients("http://h", "dapi-x", client_id="c", client_secret="s")
    with pytest.raises(DatabricksConfigError, match="DATABRICKS_CLIENT_SECRET is not set"):
        DatabricksClients("http://h", client_id="c")
    with pytest.raises(DatabricksConfigError, match="no credentials"):
        DatabricksClients("http://h")
    with pytest.raises(ValidationError, match="not both"):
        ServiceSettings(DATABRICKS_TOKEN="dapi-x", DATABRICKS_CLIENT_ID="c", DATABRICKS_CLIENT_SECRET="s")
    with pytest.raises(ValidationError, match="DATABRICKS_CLIENT_ID is not set"):
        ServiceSettings(DATABRICKS_CLIENT_SECRET="s")
    settings = ServiceSettings(DATABRICKS_HOST="http://h", DATABRICKS_CLIENT_ID="c", DATABRICKS_CLIENT_SECRET="s3cr3t")
    assert settings.databricks_configured and "s3cr3t" not in repr(settings)
