"""`make run` / `make demo`: the whole system on its embedded defaults, as child processes, with no credentials.

`Stack` starts the local stand-ins (Databricks workspace, MCP simulator, alert sinks) together, waits until each
answers, then the five services together. Every child's output goes to `<data>/logs/<name>.log`; with `echo` it is
also copied to the terminal, each line prefixed with its name. `stop()` stops the services first (they commit
their offsets) and the stand-ins after, each with SIGTERM and a grace period, SIGKILL after it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console

from apev_stack.kafka import stop_process_group
from apev_stack.paths import repo_root
from apev_stack.state import StackState

console = Console(highlight=False)

# Local-only credentials of the embedded default; production reads real ones from the environment.
LOCAL_DATABRICKS_TOKEN = os.environ.get("APEV_LOCAL_DATABRICKS_TOKEN", "dapi-apev-local-admin")
LOCAL_MCP_KEY = os.environ.get("APEV_LOCAL_MCP_KEY", "mcp-local-admin-key-000000000000")
LOCAL_JWT_SECRET = os.environ.get("APEV_LOCAL_JWT_SECRET", "apev-local-jwt-secret-0123456789abcdef")
LOCAL_WEBHOOK_PASSWORD = "apev-local-webhook"  # noqa: S105 - the jobs service's local notification destination
LOCAL_MCP_WEBHOOK_SECRET = "apev-local-mcp-webhook"  # noqa: S105
LOCAL_SLACK_SIGNING_SECRET = "apev-local-slack-signing-secret"  # noqa: S105
DEMO_APPROVER = "U0DEMOOPS"
APPROVALS_WEBHOOK = "/services/T0APEV0000/B0ALERTS00/apev-local-alerts"  # the Slack stand-in's #alerts default
BILLING_WEBHOOK = "/services/T0APEV0000/B0BILLING0/apev-local-billing"  # the Slack stand-in's #billing default
PAGERDUTY_ROUTING_KEY = "apevlocalpagerdutyroutingkey0001"  # the PagerDuty stand-in's apev-oncall service
# The monitor evaluates its rules every 2 s here (15 s by default) so a page follows a failure within seconds;
# its billing sampler re-reads system.billing.usage every 60 s (900 s by default).
MONITOR_INTERVALS = {"MONITOR_EVALUATE_INTERVAL_SECONDS": "2", "MONITOR_SAMPLE_INTERVAL_SECONDS": "60"}
READY_TIMEOUT = 240.0  # seconds each group (stand-ins, services) may take to answer; a loaded 2-core box needs ~2 min
COLORS = ["cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green", "red"]
SERVICES = ["ingest", "jobs", "serving", "writeback", "monitor"]
STAND_INS = ["workspace", "mcp", "sinks"]
DEFAULT_PORTS = {
    "workspace": 8787,
    "mcp": 8785,
    "sinks": 8790,
    "smtp": 8025,
    **{name: 8101 + i for i, name in enumerate(SERVICES)},
}
PORT_VARS = {"workspace": "WORKSPACE_PORT", "mcp": "MCP_PORT", "sinks": "SINKS_PORT", "smtp": "SMTP_PORT"}


def port_var(part: str) -> str:
    return PORT_VARS.get(part, f"{part.upper()}_HTTP_PORT")


def choose_ports(free: bool = False) -> dict[str, int]:
    """Each part's port: its variable (`WORKSPACE_PORT`, `JOBS_HTTP_PORT`, ...), else the default (or a free one)."""
    out = {}
    held: list[socket.socket] = []  # every free port stays bound until all are chosen: no two parts get one port
    try:
        for part, default in DEFAULT_PORTS.items():
            value = os.environ.get(port_var(part))
            if value or not free:
                out[part] = int(value) if value else default
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            out[part] = int(s.getsockname()[1])
    finally:
        for s in held:
            s.close()
    return out


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None


def plan(bootstrap: str, data: Path, ports: dict[str, int], topic_prefix: str = "") -> tuple[list[Child], list[Child]]:
    """(stand-ins, services) with their commands, ports and settings."""
    py = sys.executable
    ws, mcp, sinks, smtp = ports["workspace"], ports["mcp"], ports["sinks"], ports["smtp"]
    ws_url, mcp_url, sinks_url = f"http://127.0.0.1:{ws}", f"http://127.0.0.1:{mcp}", f"http://127.0.0.1:{sinks}"
    stand_ins = [
        Child(
            "workspace",
            [py, "-m", "apev_workspace", "--port", str(ws), "--data-dir", str(data / "workspace")],
            f"{ws_url}/.well-known/databricks-config",
            {"DATABRICKS_TOKEN": LOCAL_DATABRICKS_TOKEN},
        ),
        Child(
            "mcp", [py, "-m", "apev_mcpsim", "--port", str(mcp)], f"{mcp_url}/health", {"MCP_API_KEY": LOCAL_MCP_KEY}
        ),
        Child(
            "sinks",
            [py, "-m", "apev_sinks", "--port", str(sinks), "--smtp-port", str(smtp)],
            f"{sinks_url}/_admin/requests",
        ),
    ]
    services = []
    for name in SERVICES:
        port = ports[name]
        up = name.upper()
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC_PREFIX": topic_prefix,
            f"{up}_HTTP_PORT": str(port),
            f"{up}_PUBLIC_URL": f"http://127.0.0.1:{port}",
            f"{up}_DATA_DIR": str(data / "services"),
            f"{up}_LOG_FORMAT": "console",
            f"{up}_TENANTS_FILE": str(data / "tenants.yaml"),
            "APEV_JWT_SECRET": LOCAL_JWT_SECRET,
        }
        if name != "writeback":
            env |= {"DATABRICKS_HOST": ws_url, "DATABRICKS_TOKEN": LOCAL_DATABRICKS_TOKEN}
        if name in ("ingest", "writeback"):  # the services that talk to the MCP server
            env |= {"MCP_BASE_URL": mcp_url, "MCP_API_KEY": LOCAL_MCP_KEY}
        if name == "ingest":  # erasure asks the monitor's lineage graph which tables lie downstream of a person
            env["INGEST_MCP_WEBHOOK_SECRET"] = LOCAL_MCP_WEBHOOK_SECRET
            env["INGEST_MONITOR_URL"] = f"http://127.0.0.1:{ports['monitor']}"
        if name == "writeback":
            env["WRITEBACK_SLACK_SIGNING_SECRET"] = LOCAL_SLACK_SIGNING_SECRET
        if name == "monitor":  # the operator console reads the other services through their HTTP APIs
            env |= {f"MONITOR_{other.upper()}_URL": f"http://127.0.0.1:{ports[other]}" for other in SERVICES[:4]}
        if name == "jobs":
            env |= {"JOBS_WEBHOOK_PASSWORD": LOCAL_WEBHOOK_PASSWORD, "JOBS_RECONCILE_INTERVAL_SECONDS": "5"}
        if name == "monitor":  # alerts go to the stand-ins: #alerts and #billing, PagerDuty, SMTP
            webhooks = {"alerts": sinks_url + APPROVALS_WEBHOOK, "billing": sinks_url + BILLING_WEBHOOK}
            env |= MONITOR_INTERVALS | {
                "MONITOR_SLACK_WEBHOOKS": json.dumps(webhooks),
                "MONITOR_PAGERDUTY_EVENTS_URL": sinks_url,
                "MONITOR_PAGERDUTY_ROUTING_KEY": PAGERDUTY_ROUTING_KEY,
                "MONITOR_SMTP_HOST": "127.0.0.1",
                "MONITOR_SMTP_PORT": str(smtp),
                "MONITOR_EMAIL_TO": json.dumps(["finance@demo-dental.local"]),
            }
        services.append(Child(name, [py, "-m", f"apev_{name}"], f"http://127.0.0.1:{port}/readyz", env))
    return stand_ins, services


def write_tenants_file(data: Path, sinks_url: str) -> Path:
    """`deploy/tenants.yaml` plus the demo tenant, whose approvals go to this stack's Slack stand-in."""
    import yaml

    settings = yaml.safe_load((repo_root() / "deploy" / "tenants.yaml").read_text()) or {}
    settings.setdefault("tenants", {}).setdefault(
        "demo-dental",
        {
            "mcp_tenant_code": "demo-dental",
            "approvers": [DEMO_APPROVER],
            "approvals_webhook": sinks_url + APPROVALS_WEBHOOK,
        },
    )
    path = data / "tenants.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _pump(child: Child, log: IO[bytes], color: str | None) -> None:
    assert child.process is not None and child.process.stdout is not None
    for raw in iter(child.process.stdout.readline, b""):
        log.write(raw)
        log.flush()
        if color is not None:
            line = raw.decode("utf-8", "replace").rstrip()
            console.print(f"[{color}]{child.name:>9} |[/] {line}", markup=True, soft_wrap=True, emoji=False)
    log.close()


def _start(child: Child, logs: Path, color: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MCP_", "KAFKA_"))}
    env |= child.env | {"PYTHONUNBUFFERED": "1"}
    logs.mkdir(parents=True, exist_ok=True)
    child.log_file = logs / f"{child.name}.log"
    log = child.log_file.open("ab")
    child.process = subprocess.Popen(
        child.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    threading.Thread(target=_pump, args=(child, log, color), daemon=True).start()


def _ready(child: Child) -> bool:
    try:
        with urllib.request.urlopen(child.ready_url, timeout=3) as r:  # noqa: S310 - fixed local URL
            return bool(r.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _wait_ready(children: list[Child], timeout: float, stopping: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(children)
    while waiting:
        for child in list(waiting):
            assert child.process is not None
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode} before it was ready "
                    f"(log: {child.log_file})\n{_tail(child.log_file)}"
                )
            if _ready(child):
                waiting.remove(child)
        if stopping.is_set():
            raise KeyboardInterrupt
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{c.name} ({c.ready_url})" for c in waiting)
            raise RuntimeError(f"not ready after {timeout:.0f}s: {names}")
        if waiting:
            time.sleep(0.3)


def _put_json(url: str, body: dict[str, str]) -> None:
    request = urllib.request.Request(  # noqa: S310 - fixed local URL
        url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        r.read()


def _processes_naming(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(children: list[Child], grace: float = 30.0) -> None:
    for child in children:
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"[red]{child.name}: still running after {grace:.0f}s, killing[/]")
            child.process.kill()
            child.process.wait()


@dataclass
class Stack:
    """The stand-ins and the five services of one data folder, on one broker."""

    bootstrap: str
    data: Path
    ports: dict[str, int]
    topic_prefix: str = ""
    echo: bool = False
    ready_timeout: float = READY_TIMEOUT
    """How long each group (stand-ins, then services) may take to answer."""
    stand_ins: list[Child] = field(default_factory=list)
    services: list[Child] = field(default_factory=list)
    started: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stand_ins, self.services = plan(self.bootstrap, self.data, self.ports, self.topic_prefix)

    @property
    def logs_dir(self) -> Path:
        return self.data / "logs"

    def start(self, stopping: threading.Event | None = None, on_ready: Callable[[str], None] | None = None) -> None:
        """Stand-ins together, then services together; raises RuntimeError naming what did not come up."""
        stopping = stopping or threading.Event()
        self.data.mkdir(parents=True, exist_ok=True)
        sinks_url = f"http://127.0.0.1:{self.ports['sinks']}"
        write_tenants_file(self.data, sinks_url)
        index = 0
        for group in (self.stand_ins, self.services):
            if group is self.services:
                # Slack's app settings: clicks on the approval buttons go to writeback, signed with its secret.
                _put_json(f"{sinks_url}/_admin/slack/interactivity", {
                    "request_url": f"http://127.0.0.1:{self.ports['writeback']}/slack/interactions",
                    "signing_secret": LOCAL_SLACK_SIGNING_SECRET,
                })  # fmt: skip
            for child in group:
                _start(child, self.logs_dir, COLORS[index % len(COLORS)] if self.echo else None)
                self.started.append(child)
                index += 1
            _wait_ready(group, self.ready_timeout, stopping)
            for child in group:
                if on_ready:
                    on_ready(child.name)

    def dead(self) -> Child | None:
        return next((c for c in self.started if c.process and c.process.poll() is not None), None)

    def stop(self) -> None:
        _stop([c for c in self.started if c in self.services])
        _stop([c for c in self.started if c in self.stand_ins])
        # The workspace leaves task processes of runs still executing when it stops (each in its own session; it
        # kills them at its next start): end them here so Ctrl-C leaves nothing running.
        for pid in _processes_naming(self.data / "workspace" / "runs"):
            stop_process_group(pid, timeout=5)

    def urls(self) -> dict[str, str]:
        out = {c.name: f"http://127.0.0.1:{self.ports[c.name]}" for c in [*self.stand_ins, *self.services]}
        out["smtp"] = f"127.0.0.1:{self.ports['smtp']}"
        return out

    def state(self, *, kafka_started: bool) -> StackState:
        logs = {c.name: str(c.log_file) for c in self.started if c.log_file}
        return StackState(
            bootstrap=self.bootstrap,
            topic_prefix=self.topic_prefix,
            urls=self.urls(),
            databricks_token=LOCAL_DATABRICKS_TOKEN,
            mcp_admin_key=LOCAL_MCP_KEY,
            jwt_secret=LOCAL_JWT_SECRET,
            data_dir=str(self.data),
            logs=logs,
            supervisor_pid=os.getpid(),
            kafka_started_by_stack=kafka_started,
        )
