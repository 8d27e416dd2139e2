"""`make run` and `make demo`: bring the stack up, run the demo, then stay up (run) or stop (demo).

`make run`: Kafka in the background (started unless it runs; stopped again on Ctrl-C if this command started
it), the stand-ins and the five services on fixed ports, the demo with live progress, the closing table, then
events tailed until Ctrl-C, which stops everything it started.
`make demo`: a fresh state folder (`<state>/demo`), a private broker (or `KAFKA_BOOTSTRAP_SERVERS` with a fresh
topic prefix), free ports, the demo, everything stopped; the last line printed is the JSON summary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from apev_contracts.topics import all_topics
from apev_stack.demo import Demo, StepResult, console_link, summary_json
from apev_stack.kafka import KafkaBroker, create_topics, free_port
from apev_stack.paths import state_dir
from apev_stack.state import StackState, remove_state, write_state
from apev_stack.supervisor import Stack, choose_ports

console = Console(highlight=False)


def _signals(stopping: threading.Event) -> None:
    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def closing_table(state: StackState, kafka_log: Path | None) -> Table:
    table = Table(title="AgentProvision event layer: running on embedded defaults")
    table.add_column("part")
    table.add_column("where")
    table.add_column("log")
    table.add_row("kafka", state.bootstrap, str(kafka_log or "(external cluster)"))
    for part, url in state.urls.items():
        extra = (
            "  (/healthz /readyz /metrics /asyncapi.json)"
            if part in ("ingest", "jobs", "serving", "writeback", "monitor")
            else ""
        )
        table.add_row(part, url + extra, state.logs.get(part, ""))
    console_url = console_link(state)
    table.add_row("console", f"[link={console_url}]{console_url}[/link]  (operator console, served by monitor)", "")
    return table


def credentials(state: StackState) -> list[str]:
    ws = state.url("workspace")
    return [
        f"DATABRICKS_HOST={ws} DATABRICKS_TOKEN={state.databricks_token}   (local workspace admin; console: {ws}/)",
        f"MCP_BASE_URL={state.url('mcp')} MCP_API_KEY={state.mcp_admin_key}   (MCP simulator admin key)",
        f"APEV_JWT_SECRET={state.jwt_secret}   (the services' local JWT key; `python -m apev_stack token mint`)",
        f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap}"
        + (f" KAFKA_TOPIC_PREFIX={state.topic_prefix}" if state.topic_prefix else ""),
        f"Stack state for the CLI: {state_dir() / 'run' / 'stack.json'}   (`python -m apev_stack --help`)",
        f"Operator console: {console_link(state)}   (served by monitor)",
    ]


async def _demo(
    state: StackState, con: Console, timeout: float, stopping: threading.Event | None = None
) -> list[StepResult]:
    """The demo's steps; Ctrl-C or SIGTERM (`stopping`) interrupts the running step, the rest is "not run"."""
    demo = Demo(state, con, timeout=timeout)
    task = asyncio.create_task(demo.run())
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.3)
            if stopping is not None and stopping.is_set() and not task.done():
                task.cancel()
                await asyncio.wait([task])
                done = {r.name for r in demo.results}
                demo.results += [
                    StepResult(name, False, 0.0, "not run: interrupted (Ctrl-C)")
                    for name, _ in demo.steps()
                    if name not in done
                ]
    finally:
        await demo.close()
    return demo.results


def demo(timeout: float = 150.0) -> int:
    """The demo without interaction; returns its exit status. Prints the JSON summary as the very last line."""
    started = time.monotonic()
    stopping = threading.Event()
    _signals(stopping)
    root = state_dir() / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    results: list[StepResult] = []
    broker: KafkaBroker | None = None
    stack: Stack | None = None
    try:
        step_started = time.monotonic()
        try:
            external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            if external:
                bootstrap, prefix = external, f"demo-{uuid.uuid4().hex[:8]}."
            else:
                broker = KafkaBroker(home=root / "kafka", port=free_port(), controller_port=free_port())
                broker.start()
                bootstrap, prefix = broker.bootstrap, ""
            asyncio.run(create_topics(bootstrap, [prefix + t for t in all_topics()]))
            stack = Stack(bootstrap, root / "data", choose_ports(free=True), topic_prefix=prefix)
            stack.start(stopping)
            state = stack.state(kafka_started=broker is not None)
            write_state(state, root)
            results.append(
                StepResult("stack up", True, time.monotonic() - step_started, "Kafka, 3 stand-ins, 5 services")
            )
        except (Exception, KeyboardInterrupt) as exc:  # a named failed step and the JSON line, never a traceback
            why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            results.append(StepResult("stack up", False, time.monotonic() - step_started, why[:1000]))
            console.print(f"[red]✘ stack up: {why}[/]")
            return 1
        console.print(f"[green]✔ ok     [/] {'stack up':<30} {results[0].seconds:6.1f}s  logs in {stack.logs_dir}")
        results += asyncio.run(_demo(state, console, timeout, stopping))
        return 0 if all(r.ok is not False for r in results) else 1
    finally:
        if stack is not None:
            stack.stop()
        if broker is not None:
            broker.stop()
        remove_state(root)
        # The very last line: the machine-readable summary.
        print(summary_json(results, time.monotonic() - started), flush=True)


def run(bootstrap: str, kafka_started: bool, kafka_log: Path | None, *, with_demo: bool, echo: bool) -> int:
    """`make run`: up, demo, closing table, tail events until Ctrl-C; stops what it started."""
    stopping = threading.Event()
    _signals(stopping)
    root = state_dir()
    prefix = os.environ.get("KAFKA_TOPIC_PREFIX", "")
    # Idempotent: the broker `make kafka` starts has the unprefixed topics; an external cluster or a prefix
    # (environments sharing one cluster) may not.
    asyncio.run(create_topics(bootstrap, [prefix + t for t in all_topics()]))
    stack = Stack(bootstrap, root / "data", choose_ports(), topic_prefix=prefix, echo=echo)
    status = 0
    pid_file = root / "run" / "supervisor.pid"  # `make stop` from another shell finds this process by it
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    try:
        t0 = time.monotonic()
        console.print(
            "[bold]run:[/] starting the workspace, the MCP simulator and the alert sinks, then the five services ..."
        )
        stack.start(stopping, on_ready=lambda name: console.print(f"[bold]run:[/] {name} ready"))
        state = stack.state(kafka_started=kafka_started)
        write_state(state, root)
        console.print(f"[bold]run:[/] everything answers after {time.monotonic() - t0:.1f}s; logs in {stack.logs_dir}")
        if with_demo:
            results = asyncio.run(_demo(state, console, 150.0, stopping))
            console.print(summary_json(results, sum(r.seconds for r in results)), soft_wrap=True)
        console.print(closing_table(state, kafka_log))
        for line in credentials(state):
            console.print(line, soft_wrap=True)
        what_stays = (
            "nothing"
            if kafka_started or not kafka_log
            else "the Kafka broker (started before, by `make kafka`; `make stop` stops it)"
        )
        console.print(f"Tailing events; Ctrl-C stops everything this command started (what stays: {what_stays}).")
        from apev_stack.ops import tail_events

        tail_thread = threading.Thread(
            target=lambda: asyncio.run(tail_events(state.bootstrap, state.topic_prefix, stopping=stopping)), daemon=True
        )
        tail_thread.start()
        while not stopping.is_set():
            dead = stack.dead()
            if dead is not None:
                code = dead.process.returncode if dead.process else "?"
                console.print(f"[red]run: {dead.name} exited with code {code} (log: {dead.log_file}); stopping[/]")
                status = 1
                break
            stopping.wait(0.5)
    except KeyboardInterrupt:
        status = 130
    except RuntimeError as exc:
        console.print(f"[red]run: {exc}[/]")
        status = 1
    finally:
        stopping.set()
        console.print("[bold]run:[/] stopping services, then stand-ins" + (", then Kafka" if kafka_started else ""))
        stack.stop()
        remove_state(root)
        pid_file.unlink(missing_ok=True)
    return status
