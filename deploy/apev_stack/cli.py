"""`python -m apev_stack` (also the `apev` command): the one operator entry point of the local stack.

    run · demo · stop · kafka {start,stop,status,jars} · publish · tail · dlq {list,replay}
    jobs · runs · alerts · insights · health · token mint
    tenant {offboard,status} · erasure {request,status} · credentials {list,rotate,status} (cli_lifecycle)

Every command finds the running stack (broker, ports, local credentials) in `<state>/run/stack.json`, which
`make run` writes, or takes `KAFKA_BOOTSTRAP_SERVERS`, `<PART>_URL` and `APEV_JWT_SECRET` from the environment,
and says which to set when it finds neither. `python -m apev_runtime dlq|token` stays as an alias.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from apev_stack import cli_backup, cli_lifecycle, ops
from apev_stack.jars import ensure_kafka_jars
from apev_stack.kafka import (
    KafkaBroker,
    create_topics,
    free_port,
    pid_alive,
    read_pid,
    stop_process_group,
    wait_ready,
)
from apev_stack.paths import state_dir
from apev_stack.state import (
    StackNotFound,
    find_bootstrap,
    find_topic_prefix,
    load_state,
    service_url,
)

app = typer.Typer(
    no_args_is_help=True,
    help="AgentProvision event layer, locally: run the stack, the demo, and operate it (events, DLQs, jobs, alerts).",
)
kafka_app = typer.Typer(no_args_is_help=True, help="The local Kafka broker (KRaft, 127.0.0.1).")
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter topics (<topic>.dlq).")
token_app = typer.Typer(no_args_is_help=True, help="Development JWTs for the services' APIs.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(dlq_app, name="dlq")
app.add_typer(token_app, name="token")
app.add_typer(cli_backup.app, name="backup")
cli_lifecycle.register(app)
console = Console(highlight=False)

BootstrapOpt = typer.Option(
    None,
    "--bootstrap",
    "-b",
    help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else the running stack).",
)
PrefixOpt = typer.Option(None, "--topic-prefix", help="Topic prefix (default: KAFKA_TOPIC_PREFIX, else the stack's).")


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _bootstrap(explicit: str | None) -> str:
    try:
        return find_bootstrap(explicit)
    except StackNotFound as exc:
        _fail(str(exc))
        raise  # unreachable


def _url(part: str) -> str:
    try:
        return service_url(part)
    except StackNotFound as exc:
        _fail(str(exc))
        raise


def _secret() -> str:
    if os.environ.get("APEV_JWT_SECRET"):
        return os.environ["APEV_JWT_SECRET"]
    state = load_state()
    if state is None:
        _fail("no JWT key: set APEV_JWT_SECRET (the services' key, >= 32 bytes), or start the stack with `make run`")
    assert state is not None
    return state.jwt_secret


# ---------------------------------------------------------------------------- kafka


def _kafka_home() -> Path:
    return state_dir() / "kafka"


def _running_bootstrap(home: Path) -> str | None:
    pid = read_pid(home / "broker.pid")
    bootstrap_file = home / "bootstrap"
    if pid is None or not pid_alive(pid) or not bootstrap_file.exists():
        return None
    bootstrap = bootstrap_file.read_text().strip()
    try:
        asyncio.run(wait_ready(bootstrap, timeout=10))
    except Exception:
        return None
    return bootstrap


def _kafka_start(port: int) -> tuple[str, bool]:
    """(bootstrap, started by this call)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        typer.echo(f"kafka: KAFKA_BOOTSTRAP_SERVERS is set; using {bootstrap} and starting nothing")
        asyncio.run(create_topics(bootstrap))
        return bootstrap, False
    home = _kafka_home()
    running = _running_bootstrap(home)
    started = False
    if running is None:
        # Reuse the ports of an earlier start so the data directory's advertised listener stays valid.
        ports_file = home / "ports"
        if ports_file.exists():
            broker_port, controller_port = (int(p) for p in ports_file.read_text().split())
        else:
            broker_port, controller_port = port or free_port(), free_port()
        broker = KafkaBroker(home=home, port=broker_port, controller_port=controller_port)
        t0 = time.monotonic()
        typer.echo(f"kafka: starting broker on {broker.bootstrap} (data in {home}) ...")
        broker.start()
        ports_file.write_text(f"{broker_port} {controller_port}")
        typer.echo(f"kafka: ready in {time.monotonic() - t0:.1f}s (log: {broker.log_file})")
        running, started = broker.bootstrap, True
    else:
        typer.echo("kafka: already running")
    created = asyncio.run(create_topics(running))
    if created:
        typer.echo(f"kafka: created {len(created)} topics")
    return running, started


@kafka_app.command("start")
def kafka_start(
    port: int = typer.Option(0, envvar="KAFKA_PORT", help="Broker port; 0 picks a free one (first start only)."),
) -> None:
    """Start the broker in the background unless it already runs; create every topic; print the bootstrap."""
    bootstrap, _ = _kafka_start(port)
    typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")


@kafka_app.command("topics")
def kafka_topics(
    bootstrap: str = typer.Option(
        "127.0.0.1:9092", "--bootstrap", "-b", envvar="KAFKA_BOOTSTRAP_SERVERS", help="The cluster to create them on."
    ),
    prefix: str = typer.Option("", envvar="KAFKA_TOPIC_PREFIX", help="Prepended to every topic name."),
    partitions: int = typer.Option(0, envvar="KAFKA_TOPIC_PARTITIONS", help="Partitions per topic (0: 3)."),
    replication_factor: int = typer.Option(0, envvar="KAFKA_TOPIC_REPLICATION_FACTOR", help="Replicas (0: 1)."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the cluster and the topics."),
) -> None:
    """Create every topic and its .dlq twin on an existing cluster (idempotent; starts nothing)."""
    from apev_contracts.topics import all_topics

    async def go() -> list[str]:
        await wait_ready(bootstrap, timeout=timeout)
        wanted = [prefix + t for t in all_topics()]
        return await create_topics(
            bootstrap,
            wanted,
            partitions=partitions or None,
            replication_factor=replication_factor or None,
            timeout=timeout,
        )

    created = asyncio.run(go())
    typer.echo(f"kafka: {len(created)} topics created, {len(all_topics()) - len(created)} already there")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the background broker (clean shutdown, killed after 30 s)."""
    _stop_one(_kafka_home() / "broker.pid")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the background broker runs, and where."""
    bootstrap = _running_bootstrap(_kafka_home())
    typer.echo(f"kafka: running at {bootstrap}" if bootstrap else "kafka: not running")
    raise typer.Exit(0 if bootstrap else 1)


@kafka_app.command("jars")
def kafka_jars() -> None:
    """Fetch the Kafka jars into the cache (no broker started)."""
    typer.echo(f"kafka: jars in {ensure_kafka_jars()}")


def _stop_one(pid_file: Path) -> bool:
    pid = read_pid(pid_file)
    name = pid_file.parent.name
    if pid is None:
        return False
    if pid_alive(pid):
        typer.echo(f"{name}: stopping pid {pid}")
        stop_process_group(pid)
    pid_file.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------------------- run, demo, stop


@app.command("run")
def run_all(
    port: int = typer.Option(0, envvar="KAFKA_PORT", help="Broker port on first start; 0 picks a free one."),
    demo: bool = typer.Option(True, "--demo/--no-demo", envvar="APEV_RUN_DEMO", help="Run the guided demo once up."),
    echo: bool = typer.Option(False, "--echo", envvar="APEV_RUN_ECHO", help="Copy every part's log to the terminal."),
) -> None:
    """Start Kafka, the stand-ins and the five services, run the demo, tail events until Ctrl-C; then stop
    everything this command started (Kafka too, unless it was already running)."""
    from apev_stack.run import run

    bootstrap, started = _kafka_start(port)
    external = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    kafka_log = None if external else _kafka_home() / "broker.log"
    status = run(bootstrap, started, kafka_log, with_demo=demo, echo=echo)
    if started:
        _stop_one(_kafka_home() / "broker.pid")
    raise typer.Exit(status)


@app.command("demo")
def demo_cmd(
    timeout: float = typer.Option(150.0, help="Seconds each step may wait for its effect."),
) -> None:
    """The demo without interaction, on a fresh state folder and free ports; exits 0 only when every step was
    verified. The last line printed is `{"ok": ..., "steps": [...], "total_seconds": ...}`."""
    from apev_stack.run import demo

    raise typer.Exit(demo(timeout))


@app.command("migrate")
def migrate_all(
    services: list[str] = typer.Argument(None, help="Services to migrate (default: all five)."),
) -> None:
    """Run every service's database migrations once (before the services start), then exit."""
    from apev_stack.migrate import SERVICES, migrate

    for service, where in asyncio.run(migrate(services or list(SERVICES))).items():
        typer.echo(f"migrate: {service} at head on {where}")


@app.command("stop")
def stop_all() -> None:
    """Stop every process the Makefile started (every `*.pid` under the state folder)."""
    root = state_dir()
    # Kafka last: the services commit their offsets while they stop.
    pid_files = sorted(root.glob("*/*.pid"), key=lambda f: (f.parent.name == "kafka", str(f))) if root.exists() else []
    stopped = [f for f in pid_files if _stop_one(f)]
    if not stopped:
        typer.echo("stack: nothing was running")


# ---------------------------------------------------------------------------- events


@app.command("publish")
def publish_cmd(
    topic: str = typer.Argument(..., help="Topic (datasource.created) or CloudEvents type (com.agentprovision....v1)."),
    data: list[str] = typer.Option([], "--data", "-d", help="A payload field as key=value (JSON values allowed)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A JSON file: a CloudEvent, or only its data."),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Tenant id (default: the data's tenant_id)."),
    source: str = typer.Option("apev/cli", help="CloudEvents source."),
    event_id: str | None = typer.Option(None, "--id", help="Event id (default: a new UUID)."),
    bootstrap: str | None = BootstrapOpt,
    prefix: str | None = PrefixOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the event; send nothing."),
) -> None:
    """Publish one event, validated by the contracts first (an invalid one is refused, naming the field)."""
    payload: dict[str, Any] = {}
    if file is not None:
        file_type, payload = ops.load_event_file(file)
        topic = file_type or topic
    for item in data:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--data {item!r}: expected key=value")
        try:
            payload[key] = json.loads(value)
        except ValueError:
            payload[key] = value
    try:
        event = ops.build_event(topic, payload, tenant=tenant, source=source, event_id=event_id)
    except Exception as exc:
        _fail(f"not a valid {topic} event: {exc}")
        raise
    if dry_run:
        typer.echo(event.model_dump_json(indent=2))
        return
    where = asyncio.run(ops.publish(_bootstrap(bootstrap), find_topic_prefix(prefix), event))
    typer.echo(f"published {event.type} id={event.id} to {where[0]}[{where[1]}]@{where[2]}")


@app.command("tail")
def tail_cmd(
    topic: list[str] = typer.Option([], "--topic", help="Topic to follow (repeatable; default: all and their DLQs)."),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's events."),
    type_: str | None = typer.Option(None, "--type", help="Only event types containing this (e.g. run.finished)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest event, not now."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Stop after this many events."),
    bootstrap: str | None = BootstrapOpt,
    prefix: str | None = PrefixOpt,
) -> None:
    """Follow topics and print each event on one line (joins no consumer group, commits nothing)."""
    broker, topic_prefix = _bootstrap(bootstrap), find_topic_prefix(prefix)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            ops.tail_events(
                broker,
                topic_prefix,
                topics=topic or None,
                tenant=tenant,
                type_=type_,
                from_beginning=from_beginning,
                limit=limit,
            )
        )


def _dlq_topic(topic: str, prefix: str) -> str:
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    return name if name.startswith(prefix) else prefix + name


@dlq_app.command("list")
def dlq_list(
    topic: str = typer.Argument(..., help="The dead-letter topic (run.finished.dlq, or run.finished)."),
    bootstrap: str | None = BootstrapOpt,
    prefix: str | None = PrefixOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """List every message on a DLQ with the reason it is there."""
    from apev_runtime.delivery.tools import read_dlq

    name = _dlq_topic(topic, find_topic_prefix(prefix))
    try:
        messages = asyncio.run(read_dlq(_bootstrap(bootstrap), name))
    except ValueError as exc:
        _fail(str(exc))
        raise
    if as_json:
        for m in messages:
            typer.echo(json.dumps(m.summary()))
        return
    cols = ("ref", "original", "reason", "error_class", "error", "attempts", "event_type", "key")
    table = Table(title=f"{name}: {len(messages)} message(s)")
    for col in cols:
        table.add_column(col, overflow="fold")
    for m in messages:
        s = m.summary()
        table.add_row(*(str(s[c]) for c in cols))
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: str = typer.Argument(..., help="The dead-letter topic to replay from."),
    ref: list[str] = typer.Option([], "--ref", help="partition:offset of a message to replay (repeatable)."),
    reason: str | None = typer.Option(None, help="Only messages dead-lettered for this reason."),
    error_class: str | None = typer.Option(None, help="Only messages whose error class matches this glob."),
    event_type: str | None = typer.Option(None, help="Only messages of this CloudEvents type."),
    replay_all: bool = typer.Option(False, "--all", help="Replay everything the filters match (no --ref needed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed; send nothing."),
    bootstrap: str | None = BootstrapOpt,
    prefix: str | None = PrefixOpt,
) -> None:
    """Send chosen DLQ messages back to their original topic (try --dry-run first)."""
    from apev_runtime.delivery.tools import Filter, read_dlq, replay

    if not ref and not (replay_all or reason or error_class or event_type):
        _fail("choose messages with --ref, a filter, or --all")
    name = _dlq_topic(topic, find_topic_prefix(prefix))
    broker = _bootstrap(bootstrap)
    try:
        if ref:
            present = {m.ref for m in asyncio.run(read_dlq(broker, name))}
            missing = [r for r in ref if r not in present]
            if missing:
                _fail(f"{name} has no message {', '.join(missing)} (present: {', '.join(sorted(present)) or 'none'})")
        selection = Filter(refs=frozenset(ref), reason=reason, error_class=error_class, event_type=event_type)
        chosen = asyncio.run(replay(broker, name, selection, dry_run=dry_run))
    except ValueError as exc:
        _fail(str(exc))
        raise
    verb = "would replay" if dry_run else "replayed"
    for m in chosen:
        typer.echo(f"{verb} {m.ref} -> {m.letter.topic} ({m.letter.reason.value}: {m.letter.error_class})")
    typer.echo(f"{verb} {len(chosen)} message(s)")


# ---------------------------------------------------------------------------- services' APIs


def _show(part: str, path: str, tenant: str, role: str = "admin", params: dict[str, Any] | None = None) -> None:
    url = _url(part) + path
    token = ops.dev_token(_secret(), tenant, [role])
    try:
        status, body = ops.get_json(url, token, params)
    except Exception as exc:
        _fail(f"{url}: {type(exc).__name__}: {exc}")
        raise
    if status == 404 and isinstance(body, dict) and body.get("detail") == "Not Found":
        _fail(f"{part} serves no {path} yet (its service has not landed)", 1)
    typer.echo(json.dumps(body, indent=2))
    if status >= 400:
        raise typer.Exit(1)


TenantOpt = typer.Option("demo-dental", "--tenant", "-t", help="Tenant whose data to show (the token's tenant).")


@app.command("jobs")
def jobs_cmd(
    request_id: str | None = typer.Option(None, "--request", help="A job request id: its job, run and state."),
    tenant: str = TenantOpt,
) -> None:
    """Show the tenant's data sources with their ingestion jobs and last runs, or one job request."""
    if request_id:
        _show("jobs", f"/api/v1/databricks/requests/{request_id}", tenant)
    else:
        _show("ingest", "/api/v1/datasources", tenant, params={"tenant": tenant})


@app.command("runs")
def runs_cmd(
    job_id: str | None = typer.Option(None, "--job", help="A job id: its runs, newest first."),
    run_id: str | None = typer.Option(None, "--run", help="One run with its attempts."),
    tenant: str = TenantOpt,
) -> None:
    """Show a job's runs or one run, as the jobs service tracks them."""
    if run_id:
        _show("jobs", f"/api/v1/databricks/runs/{run_id}", tenant)
    elif job_id:
        _show("jobs", f"/api/v1/databricks/jobs/{job_id}/runs", tenant)
    else:
        _fail("give --job <job id> or --run <run id> (`jobs` lists the tenant's jobs)")


@app.command("alerts")
def alerts_cmd(tenant: str = TenantOpt) -> None:
    """Show alerts (pending, firing, resolved) from the monitor service."""
    _show("monitor", "/api/v1/monitor/alerts", tenant)


@app.command("insights")
def insights_cmd(
    state: str = typer.Option("held", help="Which insights: held, applied, rejected, ..."),
    tenant: str = TenantOpt,
) -> None:
    """Show insights waiting for approval (held) from the writeback service."""
    _show("writeback", "/api/v1/writeback/insights", tenant, params={"state": state})


@app.command("health")
def health_cmd(bootstrap: str | None = BootstrapOpt) -> None:
    """Ask every part of the running stack whether it is ready; exit 1 if any is not."""
    state = load_state()
    if state is None:
        _fail("no running stack found (start it with `make run`, or set APEV_STATE_DIR)")
    assert state is not None
    results = asyncio.run(ops.health(state.urls, bootstrap or state.bootstrap))
    table = Table(title="health")
    for col in ("part", "ok", "detail"):
        table.add_column(col, overflow="fold")
    for part, ok, detail in results:
        table.add_row(part, "[green]yes[/]" if ok else "[red]no[/]", detail)
    console.print(table)
    raise typer.Exit(0 if all(ok for _, ok, _ in results) else 1)


@token_app.command("mint")
def token_mint(
    tenant: str = typer.Option(..., help="tenant_id claim."),
    role: list[str] = typer.Option(["admin"], help="Role claim (repeatable): admin, engineer, analyst, agent."),
    subject: str = typer.Option("dev-user"),
    ttl: int = typer.Option(3600, help="Lifetime in seconds."),
) -> None:
    """Print a development token for the services' APIs (key: APEV_JWT_SECRET, else the running stack's)."""
    typer.echo(ops.dev_token(_secret(), tenant, role, ttl, subject))


def main() -> None:
    app()
