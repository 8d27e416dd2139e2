"""The runtime's Databricks factory against the local workspace: SDK calls in a bounded worker pool, off the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from databricks.sdk.errors import PermissionDenied, Unauthenticated

from apev_runtime.databricks import DatabricksClients
from apev_runtime.errors import Failure, classify
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
