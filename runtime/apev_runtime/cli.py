"""`python -m apev_runtime`: operator commands (dead-letter queues, development tokens); an alias kept for
`python -m apev_stack dlq|token`, the one operator entry point.

python -m apev_runtime dlq list run.finished.dlq
python -m apev_runtime dlq replay run.finished.dlq --ref 0:12 --ref 2:3 --dry-run
python -m apev_runtime dlq replay run.finished.dlq --reason transient_exhausted
python -m apev_runtime token mint --tenant acme --role analyst
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from apev_runtime.auth import mint_token
from apev_runtime.delivery.tools import Filter, read_dlq, replay

app = typer.Typer(no_args_is_help=True, help="Operator commands of the AgentProvision event layer.")
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter topics (<topic>.dlq).")
token_app = typer.Typer(no_args_is_help=True, help="Development JWTs for the services' APIs.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(token_app, name="token")

BootstrapOpt = typer.Option(
    None,
    "--bootstrap",
    "-b",
    help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else the running local stack's broker).",
)


def _bootstrap(explicit: str | None) -> str:
    """`-b`, `KAFKA_BOOTSTRAP_SERVERS`, or the broker the local stack (`make run` / `make kafka`) recorded in its
    state folder (`APEV_STATE_DIR`, default `./.stack`); otherwise a one-line error saying what to set."""
    if explicit or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return explicit or os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    root = Path(os.environ.get("APEV_STATE_DIR", ".stack"))
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads((root / "run" / "stack.json").read_text())["bootstrap"])
    with contextlib.suppress(OSError):
        return (root / "kafka" / "bootstrap").read_text().strip()
    typer.echo(f"error: no broker: pass -b, set KAFKA_BOOTSTRAP_SERVERS, or start the stack (make run) in {root}")
    raise typer.Exit(2)


@dlq_app.command("list")
def dlq_list(
    topic: str = typer.Argument(..., help="The dead-letter topic, e.g. run.finished.dlq."),
    bootstrap: str | None = BootstrapOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """List every message on a DLQ with the reason it is there."""
    messages = asyncio.run(read_dlq(_bootstrap(bootstrap), topic))
    if as_json:
        for m in messages:
            typer.echo(json.dumps(m.summary()))
        return
    table = Table(title=f"{topic}: {len(messages)} message(s)")
    for col in ("ref", "original", "reason", "error_class", "error", "attempts", "event_type", "key"):
        table.add_column(col, overflow="fold")
    for m in messages:
        s = m.summary()
        table.add_row(
            *(str(s[c]) for c in ("ref", "original", "reason", "error_class", "error", "attempts", "event_type", "key"))
        )
    Console().print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: str = typer.Argument(..., help="The dead-letter topic to replay from."),
    bootstrap: str | None = BootstrapOpt,
    ref: list[str] = typer.Option([], "--ref", help="partition:offset of a message to replay (repeatable)."),
    reason: str | None = typer.Option(None, help="Only messages dead-lettered for this reason."),
    error_class: str | None = typer.Option(None, help="Only messages whose error class matches this glob."),
    event_type: str | None = typer.Option(None, help="Only messages of this CloudEvents type."),
    replay_all: bool = typer.Option(False, "--all", help="Replay everything the filters match (no --ref needed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed; send nothing."),
) -> None:
    """Send chosen DLQ messages back to their original topic."""
    if not ref and not (replay_all or reason or error_class or event_type):
        raise typer.BadParameter("choose messages with --ref, a filter, or --all")
    selection = Filter(refs=frozenset(ref), reason=reason, error_class=error_class, event_type=event_type)
    chosen = asyncio.run(replay(_bootstrap(bootstrap), topic, selection, dry_run=dry_run))
    verb = "would replay" if dry_run else "replayed"
    for m in chosen:
        typer.echo(f"{verb} {m.ref} -> {m.letter.topic} ({m.letter.reason.value}: {m.letter.error_class})")
    typer.echo(f"{verb} {len(chosen)} message(s)")


@token_app.command("mint")
def token_mint(
    tenant: str = typer.Option(..., help="tenant_id claim."),
    role: list[str] = typer.Option(["admin"], help="Role claim (repeatable): admin, engineer, analyst, agent."),
    subject: str = typer.Option("dev-user"),
    ttl: int = typer.Option(3600, help="Lifetime in seconds."),
    secret: str = typer.Option(..., envvar="APEV_JWT_SECRET", help="HS256 key (the services' JWT secret)."),
    issuer: str = typer.Option("agentprovision"),
    audience: str = typer.Option("apev"),
) -> None:
    """Print a development token for the services' APIs."""
    typer.echo(
        mint_token(
            secret, tenant_id=tenant, roles=role, subject=subject, issuer=issuer, audience=audience, ttl_seconds=ttl
        )
    )


def main() -> None:
    app()
