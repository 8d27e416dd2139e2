"""The real entry point (`make mcp`): starts in the foreground and takes its admin key from MCP_API_KEY."""

import os
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_apev_mcpsim_serves_with_the_admin_key_from_the_environment() -> None:
    port = free_port()
    env = {**os.environ, "MCP_API_KEY": "cli-admin-key"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apev_mcpsim", "--port", str(port), "--seed", "7", "--days", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)
        headers = {"Authorization": "Bearer cli-admin-key", "X-Tenant-ID": "acme"}
        assert httpx.get(f"{base}/api/v1/integrations/status", headers=headers).status_code == 200
        assert (
            httpx.get(f"{base}/api/v1/data/production_kpis", headers=headers, params={"limit": 1000}).status_code == 200
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}" in out
    assert "MCP_API_KEY" in out
    assert "cli-admin-key" not in out  # secrets are never logged
