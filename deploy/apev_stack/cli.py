"""`python -m apev_stack`: start and stop the local stack's processes (what `make kafka` and `make stop` call)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import typer

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

app = typer.Typer(no_args_is_help=True, help="Local stack: Apache Kafka from its jars, and stopping it all.")
kafka_app = typer.Typer(no_args_is_help=True, help="The local Kafka broker (KRaft, 127.0.0.1).")
app.add_typer(kafka_app, name="kafka")


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


@kafka_app.command("start")
def kafka_start(
    port: int = typer.Option(0, envvar="KAFKA_PORT", help="Broker port; 0 picks a free one (first start only)."),
) -> None:
    """Start the broker in the background unless it already runs; create every topic; print the bootstrap."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        typer.echo(f"kafka: KAFKA_BOOTSTRAP_SERVERS is set; using {bootstrap} and starting nothing")
    else:
        home = _kafka_home()
        bootstrap_or_none = _running_bootstrap(home)
        if bootstrap_or_none is None:
            # Reuse the ports of an earlier start so the data directory's advertised listener stays valid.
            ports_file = home / "ports"
            if ports_file.exists():
                broker_port, controller_port = (int(p) for p in ports_file.read_text().split())
            else:
                broker_port, controller_port = port or free_port(), free_port()
            broker = KafkaBroker(home=home, port=broker_port, controller_port=controller_port)
            started = time.monotonic()
            typer.echo(f"kafka: starting broker on {broker.bootstrap} (data in {home}) ...")
            broker.start()
            ports_file.write_text(f"{broker_port} {controller_port}")
            typer.echo(f"kafka: ready in {time.monotonic() - started:.1f}s (log: {broker.log_file})")
            bootstrap = broker.bootstrap
        else:
            bootstrap = bootstrap_or_none
            typer.echo("kafka: already running")
    created = asyncio.run(create_topics(bootstrap))
    if created:
        typer.echo(f"kafka: created {len(created)} topics")
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


@app.command("run")
def run_all(
    port: int = typer.Option(0, envvar="KAFKA_PORT", help="Broker port on first start; 0 picks a free one."),
) -> None:
    """Start Kafka (background), the stand-ins and the five services (foreground) until Ctrl-C."""
    from apev_stack.supervisor import run

    kafka_start(port)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (_kafka_home() / "bootstrap").read_text().strip()
    raise typer.Exit(run(bootstrap))


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


def main() -> None:
    app()
