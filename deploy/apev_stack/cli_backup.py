"""`apev backup create|restore|verify`: the services' databases and the local workspace's data (apev_stack.backup).

    uv run apev backup create --out backups/2026-12-01 [--service jobs ...] [--workspace-data .stack/data/workspace]
    uv run apev backup verify backups/2026-12-01
    uv run apev backup restore backups/2026-12-01 --service monitor [--offsets backup|keep]   # services stopped

Each service's database is where its settings say (`<SERVICE>_DATABASE_URL`, `_DATABASE_SCHEMA`, else SQLite under
`--data-dir`, default `.stack/data/services` when `make run`'s stack is there, else the service's `_DATA_DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from apev_stack.backup import BackupError, Target, backup, read_manifest, restore, target_of
from apev_stack.migrate import SERVICES
from apev_stack.paths import state_dir
from apev_stack.state import StackNotFound, find_bootstrap

app = typer.Typer(no_args_is_help=True, help="Back up and restore the services' databases and the workspace's data.")
console = Console(highlight=False)

ServiceOpt = typer.Option(None, "--service", "-s", help="A service (repeatable; default: all five).")
DataDirOpt = typer.Option(None, "--data-dir", help="Folder of the services' SQLite files (default: the stack's).")
BootstrapOpt = typer.Option(None, "--bootstrap", "-b", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS, the stack's).")
NoKafkaOpt = typer.Option(False, "--no-kafka", help="Record (or move) no consumer offsets.")


def _targets(services: list[str] | None, data_dir: Path | None) -> list[Target]:
    chosen = services or list(SERVICES)
    unknown = [s for s in chosen if s not in SERVICES]
    if unknown:
        raise typer.BadParameter(f"unknown services {unknown}; expected some of {list(SERVICES)}")
    if data_dir is None and (state_dir() / "data" / "services").is_dir():
        data_dir = state_dir() / "data" / "services"
    return [target_of(s, data_dir) for s in chosen]


def _kafka(explicit: str | None, off: bool) -> str | None:
    if off:
        return None
    try:
        return find_bootstrap(explicit)
    except StackNotFound as exc:
        console.print(f"[red]{exc}[/red] (or pass --no-kafka)")
        raise typer.Exit(2) from exc


@app.command("create")
def create(
    out: Path = typer.Option(..., "--out", "-o", help="A new folder for this backup."),
    service: list[str] | None = ServiceOpt,
    data_dir: Path | None = DataDirOpt,
    workspace_data: Path | None = typer.Option(None, help="The local workspace's data folder to include."),
    bootstrap: str | None = BootstrapOpt,
    no_kafka: bool = NoKafkaOpt,
) -> None:
    """Dump each service's database, archive the workspace's data, write manifest.json (time, versions, checksums,
    the consumer groups' committed offsets)."""
    try:
        manifest = backup(out, _targets(service, data_dir), workspace_data=workspace_data,
                                      bootstrap=_kafka(bootstrap, no_kafka))  # fmt: skip
    except BackupError as exc:
        console.print(f"[red]backup failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(json.dumps({"ok": True, "out": str(out), "services": sorted(manifest["services"]),
                              "files": manifest["checksums"]}))  # fmt: skip


@app.command("verify")
def verify(folder: Path = typer.Argument(..., help="A backup folder.")) -> None:
    """Check every file of a backup against its manifest's checksums."""
    try:
        manifest = read_manifest(folder)
    except BackupError as exc:
        console.print(f"[red]not valid:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        json.dumps({"ok": True, "created_at": manifest["created_at"], "services": sorted(manifest["services"])})
    )


@app.command("restore")
def restore_cmd(
    folder: Path = typer.Argument(..., help="A backup folder."),
    service: list[str] | None = ServiceOpt,
    data_dir: Path | None = DataDirOpt,
    workspace_data: Path | None = typer.Option(None, help="Restore the workspace's data into this folder."),
    offsets: str = typer.Option("backup", help="backup: each group back to the backup's offsets; keep: leave them."),
    bootstrap: str | None = BootstrapOpt,
    no_kafka: bool = NoKafkaOpt,
) -> None:
    """Restore databases (stop the services first), the workspace's data, and the consumer groups' offsets."""
    if offsets not in ("backup", "keep"):
        raise typer.BadParameter("--offsets is backup or keep")
    try:
        kafka = _kafka(bootstrap, no_kafka or offsets == "keep")
        targets = _targets(service, data_dir)
        done = restore(folder, targets, workspace_data=workspace_data, bootstrap=kafka, offsets=offsets)
    except BackupError as exc:
        console.print(f"[red]restore failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(json.dumps({"ok": True, "restored": done}))
