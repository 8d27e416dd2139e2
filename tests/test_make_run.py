"""`make run`'s supervisor brings the whole system up on embedded defaults; the operator CLI finds it from a fresh
shell (no variable set) through the stack's state file; a dead letter replayed by the CLI then succeeds; Ctrl-C
stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from apev_stack.kafka import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

SERVICES = ["ingest", "jobs", "serving", "writeback", "monitor"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_naming(state: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            zombie = (proc / "stat").read_text().split(") ", 1)[1].startswith("Z")
        except (OSError, IndexError):
            continue
        if str(state) in cmdline and not zombie:
            found.append(cmdline[:200])
    return found


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI in a fresh shell: no Kafka, Databricks, MCP or JWT variable, only where the stack lives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABRICKS_", "MCP_", "APEV_JWT"))}
    env |= {"APEV_STATE_DIR": str(state), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "apev_stack", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _until(what: str, probe, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.5)


@pytest.mark.timeout(400)
def test_supervisor_runs_everything_the_cli_operates_it_and_ctrl_c_stops_all(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ["WORKSPACE_PORT", "MCP_PORT", "SINKS_PORT", "SMTP_PORT"]}
    service_ports = {f"{s.upper()}_HTTP_PORT": free_port() for s in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MCP_"))}
    env |= {k: str(v) for k, v in (ports | service_ports).items()}
    # A topic prefix of its own: the session's broker is shared with every other test.
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "APEV_STATE_DIR": str(tmp_path), "COLUMNS": "200"}
    env["KAFKA_TOPIC_PREFIX"] = f"mr{uuid.uuid4().hex[:6]}."
    proc = subprocess.Popen(
        [sys.executable, "-m", "apev_stack", "run", "--no-demo"],
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
        up = "".join(lines)
        assert "DATABRICKS_TOKEN=dapi-apev-local-admin" in up  # the real local token, not a placeholder
        assert "MCP_API_KEY=mcp-local-admin-key" in up
        assert f"Operator console: http://127.0.0.1:{service_ports['MONITOR_HTTP_PORT']}/console/" in up
        for service, port in zip(SERVICES, service_ports.values(), strict=True):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                body = json.loads(r.read())
            assert body["status"] == "ready", (service, body)
            assert (tmp_path / "data" / "logs" / f"{service}.log").stat().st_size > 0  # every part logs to a file

        # The CLI from a fresh shell finds the broker and ports by itself.
        health = _cli(tmp_path, "health")
        assert health.returncode == 0, health.stdout + health.stderr
        assert _cli(tmp_path, "token", "mint", "--tenant", "replay-co").stdout.count(".") == 2
        bad = _cli(tmp_path, "publish", "datasource.created", "-t", "replay-co", "-d", "system=sap")
        assert bad.returncode == 2 and "not a valid datasource.created event" in bad.stdout

        # A data source whose MCP tenant does not exist yet is dead-lettered (permanent) ...
        sent = _cli(
            tmp_path, "publish", "datasource.created", "-t", "replay-co", "-d", "datasource_id=ns-1",
            "-d", "name=NetSuite", "-d", "system=netsuite", "-d", 'entities=["financials"]',
            "-d", "mcp_tenant_code=replay-co",
        )  # fmt: skip
        assert sent.returncode == 0 and "published" in sent.stdout, sent.stdout + sent.stderr

        def letters() -> list[dict[str, str]]:
            out = _cli(tmp_path, "dlq", "list", "datasource.created.dlq", "--json")
            assert out.returncode == 0, out.stdout + out.stderr
            return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

        (letter,) = _until("the dead letter", letters)
        assert letter["reason"] == "permanent" and "mcp_tenant_code" in letter["error"]
        missing = _cli(tmp_path, "dlq", "replay", "datasource.created.dlq", "--ref", "2:999")
        assert missing.returncode == 2 and "has no message 2:999" in missing.stdout
        dry = _cli(tmp_path, "dlq", "replay", "datasource.created.dlq", "--ref", letter["ref"], "--dry-run")
        assert "would replay 1 message(s)" in dry.stdout

        # ... the tenant is created on MCP, and the replayed message then succeeds.
        mcp = f"http://127.0.0.1:{ports['MCP_PORT']}"
        made = urllib.request.Request(  # noqa: S310 - fixed local URL
            f"{mcp}/api/v1/tenants/", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"tenant_code": "replay-co", "tenant_name": "Replay Co"}).encode(),
        )  # fmt: skip
        with urllib.request.urlopen(made, timeout=10) as r:  # noqa: S310
            assert r.status == 201
        replayed = _cli(tmp_path, "dlq", "replay", "datasource.created.dlq", "--ref", letter["ref"])
        assert "replayed 1 message(s)" in replayed.stdout, replayed.stdout + replayed.stderr

        def registered() -> bool:
            out = _cli(tmp_path, "jobs", "--tenant", "replay-co")
            body = json.loads(out.stdout) if out.returncode == 0 else {"datasources": []}
            return any(d["state"] in ("registered", "job_requested", "first_run_finished") for d in body["datasources"])

        assert _until("the replayed data source registered on MCP", registered)
        assert len(letters()) == 1  # nothing new was dead-lettered
        assert (tmp_path / "run" / "supervisor.pid").read_text() == str(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        lines.append(rest or "")
    output = "".join(lines)
    assert proc.returncode == 0, output[-4000:]
    assert "stopping services, then stand-ins" in output
    for port in [*ports.values(), *service_ports.values()]:
        assert not _listening(port), f"port {port} still open after Ctrl-C"
    assert not _processes_naming(tmp_path), "processes left after Ctrl-C"
    assert not (tmp_path / "run" / "supervisor.pid").exists()
    assert not (tmp_path / "run" / "stack.json").exists()
