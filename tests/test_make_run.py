"""`make run`'s supervisor brings the whole system up on embedded defaults; `make stop` takes it all down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apev_stack.kafka import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

SERVICES = ["ingest", "jobs", "serving", "writeback", "monitor"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_supervisor_runs_everything_and_stops_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ["WORKSPACE_PORT", "MCP_PORT", "SINKS_PORT", "SMTP_PORT"]}
    service_ports = {f"{s.upper()}_HTTP_PORT": free_port() for s in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MCP_"))}
    env |= {k: str(v) for k, v in (ports | service_ports).items()}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "APEV_STATE_DIR": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apev_stack", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "supervisor exited early:\n" + "".join(lines[-60:])
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        else:
            pytest.fail("system not up in 180 s:\n" + "".join(lines[-60:]))
        for service, port in zip(SERVICES, service_ports.values(), strict=True):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                body = json.loads(r.read())
            assert body["status"] == "ready", (service, body)
            if service != "writeback":
                assert body["checks"]["databricks"].startswith("ok"), (service, body)  # talks to the local workspace
            if service in ("ingest", "writeback"):
                assert body["checks"]["mcp"].startswith("ok"), (service, body)  # and to the MCP simulator
        assert (tmp_path / "run" / "supervisor.pid").read_text() == str(proc.pid)
    finally:
        # What `make stop` runs, from another process: it finds the supervisor by its pid file.
        stop = subprocess.run(
            [sys.executable, "-m", "apev_stack", "stop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        if proc.poll() is None and stop.returncode != 0:
            proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        lines.append(rest or "")
    output = "".join(lines)
    assert stop.returncode == 0 and f"stopping pid {proc.pid}" in stop.stdout, stop.stdout + stop.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "stopping services, then stand-ins" in output
    for port in [*ports.values(), *service_ports.values()]:
        assert not _listening(port), f"port {port} still open after stop"
    assert not (tmp_path / "run" / "supervisor.pid").exists()
