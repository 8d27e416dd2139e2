"""`python -m apev_workspace` (what `make workspace` runs): foreground server, admin token from the env."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import Unauthenticated

from apev_workspace.testing import free_socket


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apev_workspace",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--executor-slots",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    host = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{host}/.well-known/databricks-config", timeout=1).status_code == 200:
                return proc, host
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "the server did not answer"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    return out


def test_module_entry_point_uses_databricks_token_as_admin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env["DATABRICKS_TOKEN"] = "dapi-from-env-123"
    proc, host = _start(tmp_path, env)
    try:
        started = time.monotonic()
        w = WorkspaceClient(config=Config(host=host, token="dapi-from-env-123", auth_type="pat"))
        assert time.monotonic() - started < 2  # the well-known probe answered at once
        assert w.current_user.me().user_name == "admin@apev.local"
        default = WorkspaceClient(config=Config(host=host, token="dapi-apev-local-admin", auth_type="pat"))
        with pytest.raises(Unauthenticated):
            default.current_user.me()
    finally:
        out = _stop(proc)
    assert proc.returncode == 0
    assert host in out and "from DATABRICKS_TOKEN" in out
    assert "dapi-from-env-123" not in out
    assert (tmp_path / "data" / "workspace.sqlite3").exists()
