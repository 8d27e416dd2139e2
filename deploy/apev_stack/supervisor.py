"""`make run`: the whole system on its embedded defaults, in the foreground, with no credentials.

Starts (or reuses) the background Kafka broker, then the local stand-ins (Databricks workspace, MCP
simulator, alert sinks) and the five services as child processes, each line of their output prefixed with
its name. Waits until each answers, prints where everything listens, and runs until Ctrl-C or SIGTERM
(`make stop`), then stops the services first and the stand-ins after, each with SIGTERM and a grace period.
If any process exits on its own, everything is stopped and the exit status says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from apev_stack.paths import state_dir

console = Console(highlight=False)

# Local-only credentials of the embedded default; production reads real ones from the environment.
LOCAL_DATABRICKS_TOKEN = os.environ.get("APEV_LOCAL_DATABRICKS_TOKEN", "dapi-apev-local-admin")
LOCAL_MCP_KEY = os.environ.get("APEV_LOCAL_MCP_KEY", "mcp-local-admin-key-000000000000")
COLORS = ["cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green", "red"]


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def _port(var: str, default: int) -> int:
    return int(os.environ.get(var, default))


def plan(bootstrap: str, data: Path) -> tuple[list[Child], list[Child]]:
    """(stand-ins, services) with their commands, ports and settings."""
    py = sys.executable
    ws, mcp, sinks, smtp = (
        _port("WORKSPACE_PORT", 8787),
        _port("MCP_PORT", 8785),
        _port("SINKS_PORT", 8790),
        _port("SMTP_PORT", 8025),
    )
    stand_ins = [
        Child(
            "workspace",
            [py, "-m", "apev_workspace", "--port", str(ws), "--data-dir", str(data / "workspace")],
            f"http://127.0.0.1:{ws}/.well-known/databricks-config",
            {"DATABRICKS_TOKEN": LOCAL_DATABRICKS_TOKEN},
        ),
        Child(
            "mcp",
            [py, "-m", "apev_mcpsim", "--port", str(mcp)],
            f"http://127.0.0.1:{mcp}/health",
            {"MCP_API_KEY": LOCAL_MCP_KEY},
        ),
        Child(
            "sinks",
            [py, "-m", "apev_sinks", "--port", str(sinks), "--smtp-port", str(smtp)],
            f"http://127.0.0.1:{sinks}/_admin/requests",
        ),
    ]
    services = []
    for i, name in enumerate(["ingest", "jobs", "serving", "writeback", "monitor"]):
        port = _port(f"{name.upper()}_HTTP_PORT", 8101 + i)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            f"{name.upper()}_HTTP_PORT": str(port),
            f"{name.upper()}_DATA_DIR": str(data / "services"),
            f"{name.upper()}_LOG_FORMAT": "console",
        }
        if name != "writeback":
            env |= {"DATABRICKS_HOST": f"http://127.0.0.1:{ws}", "DATABRICKS_TOKEN": LOCAL_DATABRICKS_TOKEN}
        if name in ("ingest", "writeback"):  # the services that talk to the MCP server
            env |= {"MCP_BASE_URL": f"http://127.0.0.1:{mcp}", "MCP_API_KEY": LOCAL_MCP_KEY}
        services.append(Child(name, [py, "-m", f"apev_{name}"], f"http://127.0.0.1:{port}/readyz", env))
    return stand_ins, services


def _pump(child: Child, color: str) -> None:
    assert child.process is not None and child.process.stdout is not None
    for raw in iter(child.process.stdout.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        console.print(f"[{color}]{child.name:>9} |[/] {line}", markup=True, soft_wrap=True, emoji=False)


def _start(child: Child, color: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env |= child.env | {"PYTHONUNBUFFERED": "1"}
    child.process = subprocess.Popen(
        child.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    threading.Thread(target=_pump, args=(child, color), daemon=True).start()


def _wait_ready(child: Child, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.process is not None
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(child.ready_url, timeout=3) as r:  # noqa: S310 - fixed local URL
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{child.name} not ready at {child.ready_url} after {timeout:.0f}s")


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


def run(bootstrap: str) -> int:
    data = state_dir() / "data"
    data.mkdir(parents=True, exist_ok=True)
    pid_dir = state_dir() / "run"
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / "supervisor.pid").write_text(str(os.getpid()))
    stand_ins, services = plan(bootstrap, data)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started: list[Child] = []
    status = 0
    try:
        for i, child in enumerate([*stand_ins, *services]):
            console.print(f"[bold]run:[/] starting {child.name} ...")
            _start(child, COLORS[i % len(COLORS)])
            started.append(child)
            _wait_ready(child)
            console.print(f"[bold]run:[/] {child.name} ready")
            if stopping.is_set():
                return 130
        _summary(bootstrap, stand_ins, services)
        while not stopping.is_set():
            dead = [c for c in started if c.process and c.process.poll() is not None]
            if dead:
                console.print(f"[red]run: {dead[0].name} exited with code {dead[0].process.returncode}; stopping[/]")  # type: ignore[union-attr]
                status = 1
                break
            stopping.wait(0.5)
    except RuntimeError as exc:
        console.print(f"[red]run: {exc}[/]")
        status = 1
    finally:
        console.print("[bold]run:[/] stopping services, then stand-ins (Kafka keeps running; `make stop` stops it)")
        _stop([c for c in started if c in services])
        _stop([c for c in started if c in stand_ins])
        (pid_dir / "supervisor.pid").unlink(missing_ok=True)
    return status


def _summary(bootstrap: str, stand_ins: list[Child], services: list[Child]) -> None:
    table = Table(title="AgentProvision event layer: running on embedded defaults")
    table.add_column("part")
    table.add_column("where")
    table.add_row("kafka", bootstrap)
    for child in stand_ins:
        table.add_row(
            child.name,
            child.ready_url.rsplit("/", 1)[0]
            if child.name != "workspace"
            else child.ready_url.split("/.well-known")[0],
        )
    for child in services:
        table.add_row(child.name, child.ready_url.replace("/readyz", "  (/healthz /readyz /metrics)"))
    console.print(table)
    console.print(
        f"DATABRICKS_HOST={stand_ins[0].ready_url.split('/.well-known')[0]} "
        f"DATABRICKS_TOKEN=<APEV_LOCAL_DATABRICKS_TOKEN> (local admin token); Ctrl-C stops everything."
    )
