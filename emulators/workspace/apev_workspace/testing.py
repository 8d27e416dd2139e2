"""Start a local workspace inside the test process, on a free port, for any team's tests.

    from apev_workspace.testing import running_workspace

    with running_workspace(tmp_path) as ws:
        w = ws.client()                  # databricks-sdk WorkspaceClient as the admin
        ws.add_fault(path="/api/2.2/jobs/run-now", action="lost_response", count=1)
        ws.counters()                    # {"POST /api/2.2/jobs/run-now": 2, ...}

The server (uvicorn + the executor) runs in a background thread; the data directory persists, so
entering `running_workspace` again with the same directory is a restart.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from apev_workspace.server import DEFAULT_ADMIN_TOKEN, Settings, Workspace, build_app

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs

TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


@dataclass
class RunningWorkspace:
    host: str
    admin_token: str
    data_dir: Path
    workspace: Workspace

    def client(self, token: str | None = None, **config: Any) -> WorkspaceClient:
        """A databricks-sdk client for `token` (default: the admin), ignoring the environment's DATABRICKS_*."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        cfg = Config(host=self.host, token=token or self.admin_token, auth_type="pat", **config)
        return WorkspaceClient(config=cfg)

    def admin_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.host, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        with self.admin_http() as http:
            response = http.post("/__admin/faults", json=rule)
            response.raise_for_status()
            return dict(response.json())

    def clear_faults(self) -> None:
        with self.admin_http() as http:
            http.delete("/__admin/faults").raise_for_status()

    def counters(self, prefix: str | None = None) -> dict[str, int]:
        with self.admin_http() as http:
            response = http.get("/__admin/counters", params={"prefix": prefix} if prefix else None)
            response.raise_for_status()
            return dict(response.json()["counters"])

    def set_notifications(self, enabled: bool) -> None:
        """Turn every webhook notification off (a receiver that never hears) or back on."""
        with self.admin_http() as http:
            http.post("/__admin/notifications", json={"enabled": enabled}).raise_for_status()

    def reset_counters(self) -> None:
        with self.admin_http() as http:
            http.delete("/__admin/counters").raise_for_status()


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it each small response waits ~40 ms for a delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    return sock


@contextmanager
def running_workspace(
    data_dir: Path,
    *,
    admin_token: str = DEFAULT_ADMIN_TOKEN,
    executor_slots: int = 4,
    failed_multitask_internal_error: bool = False,
    host: str = "127.0.0.1",
    oauth_token_ttl_seconds: int = 3600,
) -> Iterator[RunningWorkspace]:
    sock = free_socket(host)
    port = sock.getsockname()[1]
    settings = Settings(
        data_dir=Path(data_dir),
        host=host,
        port=port,
        admin_token=admin_token,
        executor_slots=executor_slots,
        failed_multitask_internal_error=failed_multitask_internal_error,
        oauth_token_ttl_seconds=oauth_token_ttl_seconds,
    )
    workspace = Workspace(settings)
    workspace.start()
    config = uvicorn.Config(build_app(workspace), log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="apev-workspace-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local workspace did not start")
        time.sleep(0.01)
    try:
        yield RunningWorkspace(settings.url, admin_token, settings.data_dir, workspace)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        workspace.close()


def upload(w: WorkspaceClient, path: str, code: str) -> str:
    """Put `code` at a workspace path (parents made, overwritten), as a task's python_file."""
    from databricks.sdk.service.workspace import ImportFormat

    parent = path.rsplit("/", 1)[0]
    w.workspace.mkdirs(parent)
    w.workspace.import_(
        path=path, content=base64.b64encode(code.encode()).decode(), format=ImportFormat.AUTO, overwrite=True
    )
    return path


def py_task(key: str, path: str, *params: str, depends_on: tuple[str, ...] = (), **extra: Any) -> jobs.Task:
    """A spark_python_task running the workspace file `path` with `params` as argv."""
    from databricks.sdk.service import jobs

    return jobs.Task(
        task_key=key,
        spark_python_task=jobs.SparkPythonTask(python_file=path, parameters=list(params)),
        depends_on=[jobs.TaskDependency(task_key=d) for d in depends_on] or None,
        **extra,
    )


def wait_run(
    w: WorkspaceClient,
    run_id: int,
    until: Callable[[jobs.Run], bool] | None = None,
    timeout: float = 60,
) -> jobs.Run:
    """Poll `runs/get` every 50 ms (the SDK's own waiter sleeps seconds) until the run is terminal."""
    until = until or (lambda r: r.state.life_cycle_state.value in TERMINAL)  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while True:
        run = w.jobs.get_run(run_id)
        if until(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not reach the expected state: {run.state}")
        time.sleep(0.05)
