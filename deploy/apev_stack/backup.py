"""Backups of the services' state and of the local workspace's data, and their restore.

Both are synchronous (files and subprocesses; Kafka through `asyncio.run`): from async code, `asyncio.to_thread`.

    backup(out, targets, workspace_data, bootstrap)   one folder: a dump per service, the workspace's tar.gz,
                                                      manifest.json (time, versions, checksums, Kafka offsets)
    restore(folder, targets, workspace_data, bootstrap)  checksums first, then each database, the workspace's
                                                      data, and each service's consumer group back to the offsets
                                                      committed when the backup was taken

PostgreSQL: `pg_dump --format=custom` of the service's schema (or its whole database without one), restored with
`pg_restore` after the schema is dropped. SQLite: the online backup API (a consistent copy while the service runs).

Why the offsets: a restored database forgets what it handled after the backup, while Kafka's committed offsets
remember. Restore puts each group back at the offsets read *before* the dump (so everything below them is in the
dumped inbox); on start the service re-reads from there: what the restored inbox holds is skipped (nothing twice),
what it lost is handled again (nothing lost), provided the topics still hold those records (retention longer than
the backup's age: `restore` refuses, naming the partition, when a recorded offset is below the earliest one kept).
Stop the services before `restore` (a group with members cannot be moved).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


MANIFEST = "manifest.json"
FORMAT = 1
PACKAGES = ("apev-contracts", "apev-runtime", "apev-ingest", "apev-jobs", "apev-serving", "apev-writeback",
            "apev-monitor", "apev-workspace", "apev-stack")  # fmt: skip


class BackupError(Exception):
    """A backup or restore that cannot go on, with what to do."""


@dataclass(frozen=True)
class Target:
    """One service's state: its database URL (SQLAlchemy, async driver), schema, consumer group, topic prefix."""

    service: str
    database_url: str
    schema: str | None
    group: str
    topic_prefix: str = ""


def target_of(service: str, data_dir: Path | None = None) -> Target:
    """The service's own settings (environment), as the service reads them; `data_dir` overrides SQLite's folder."""
    import importlib

    settings = importlib.import_module(f"apev_{service}.settings").Settings()
    if data_dir is not None and not settings.database_url:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return Target(service, settings.resolved_database_url(), settings.database_schema, settings.consumer_group,
                  settings.kafka_topic_prefix)  # fmt: skip


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _libpq(url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... for pg_dump and pg_restore."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_path(url: str) -> Path:
    parsed = make_url(url)
    if not parsed.database:
        raise BackupError(f"SQLite URL {url!r} names no file")
    return Path(parsed.database)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[:2000]}")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        pg = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=False)
        out["pg_dump"] = pg.stdout.strip()
    except FileNotFoundError:
        pass
    return out


# ---------------------------------------------------------------- Kafka offsets
async def committed_offsets(bootstrap: str, group: str) -> dict[str, int]:
    """`topic:partition` -> the group's committed offset."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {f"{tp.topic}:{tp.partition}": m.offset for tp, m in found.items() if m.offset >= 0}


async def reset_offsets(bootstrap: str, group: str, offsets: dict[str, int]) -> dict[str, int]:
    """Commit `offsets` for `group` (which must have no members). Refuses an offset the topic no longer holds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    if not offsets:
        return {}
    tps = {key: TopicPartition(key.rsplit(":", 1)[0], int(key.rsplit(":", 1)[1])) for key in offsets}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(tps.values()))
        earliest = await consumer.beginning_offsets(list(tps.values()))
        lost = {k: (offsets[k], earliest[tp]) for k, tp in tps.items() if earliest[tp] > offsets[k]}
        if lost:
            detail = ", ".join(f"{k} (backup at {a}, earliest kept {b})" for k, (a, b) in sorted(lost.items()))
            raise BackupError(
                f"the topics no longer hold what group {group!r} handled after the backup: {detail}; records "
                "past retention cannot be replayed (restore a newer backup, or accept the loss with --offsets keep)"
            )
        await consumer.commit({tp: OffsetAndMetadata(offsets[k], "") for k, tp in tps.items()})
    finally:
        await consumer.stop()
    return offsets


# ---------------------------------------------------------------- backup
def _dump(target: Target, out: Path) -> dict[str, Any]:
    url = make_url(target.database_url)
    if url.get_backend_name() == "sqlite":
        source = _sqlite_path(target.database_url)
        if not source.exists():
            raise BackupError(f"{target.service}: no database at {source} (is this the stack's data directory?)")
        file = out / f"{target.service}.sqlite"
        src, dst = sqlite3.connect(source), sqlite3.connect(file)
        try:
            src.backup(dst)  # the online backup API: consistent while the service writes
        finally:
            dst.close()
            src.close()
        kind = "sqlite"
    elif url.get_backend_name() == "postgresql":
        file = out / f"{target.service}.pgdump"
        cmd = ["pg_dump", "--format=custom", "--no-owner", f"--file={file}"]
        if target.schema:
            cmd.append(f"--schema={target.schema}")
        _run([*cmd, _libpq(target.database_url)])
        kind = "pg_dump"
    else:
        raise BackupError(f"{target.service}: cannot back up a {url.get_backend_name()!r} database")
    return {"file": file.name, "kind": kind, "schema": target.schema,
            "database": url.render_as_string(hide_password=True)}  # fmt: skip


def backup(out: Path, targets: list[Target], *, workspace_data: Path | None, bootstrap: str | None) -> dict[str, Any]:
    """Write one backup folder; returns its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise BackupError(f"{out} already holds a backup; choose a new folder")
    services: dict[str, Any] = {}
    for target in targets:
        # Offsets before the dump: every record below them was handled, so its inbox row is in the dump.
        offsets = asyncio.run(committed_offsets(bootstrap, target.group)) if bootstrap else {}
        entry = _dump(target, out)
        entry.update(group=target.group, offsets=offsets)
        services[target.service] = entry
    files = [out / e["file"] for e in services.values()]
    workspace = None
    if workspace_data is not None:
        if not workspace_data.is_dir():
            raise BackupError(f"no workspace data directory at {workspace_data}")
        archive = out / "workspace.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(workspace_data, arcname="workspace")
        workspace = {"file": archive.name, "source": str(workspace_data)}
        files.append(archive)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "versions": _versions(),
        "services": services,
        "workspace": workspace,
        "checksums": {f.name: {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------- restore
def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, after every file's checksum was verified."""
    path = folder / MANIFEST
    if not path.exists():
        raise BackupError(f"{folder} has no {MANIFEST}: not a backup folder")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r}; this tool reads {FORMAT}")
    for name, want in manifest["checksums"].items():
        file = folder / name
        if not file.exists() or _sha256(file) != want["sha256"]:
            raise BackupError(f"{file} is missing or does not match its checksum in the manifest: not restoring")
    return manifest


def _load(target: Target, entry: dict[str, Any], folder: Path) -> None:
    file = folder / entry["file"]
    if entry["kind"] == "sqlite":
        dest = _sqlite_path(target.database_url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for stale in (dest, dest.with_name(dest.name + "-wal"), dest.with_name(dest.name + "-shm")):
            stale.unlink(missing_ok=True)
        src, dst = sqlite3.connect(file), sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return
    url = _libpq(target.database_url)
    schema = entry.get("schema")
    if schema:
        _run(["psql", "--quiet", "--set=ON_ERROR_STOP=1", url, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'])
        _run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={url}", str(file)])
    else:
        _run(["pg_restore", "--no-owner", "--clean", "--if-exists", "--exit-on-error", f"--dbname={url}", str(file)])


def restore(
    folder: Path,
    targets: list[Target],
    *,
    workspace_data: Path | None,
    bootstrap: str | None,
    offsets: str = "backup",
) -> dict[str, Any]:
    """Restore the named services (and the workspace's data when `workspace_data`); `offsets`: `backup` (each
    group back to the offsets of the backup) or `keep` (leave them: what was handled after the backup is lost)."""
    manifest = read_manifest(folder)
    done: dict[str, Any] = {}
    for target in targets:
        entry = manifest["services"].get(target.service)
        if entry is None:
            raise BackupError(
                f"the backup in {folder} has no {target.service!r}; it has {sorted(manifest['services'])}"
            )
        _load(target, entry, folder)
        moved: dict[str, int] = {}
        if offsets == "backup" and bootstrap:
            moved = asyncio.run(reset_offsets(bootstrap, target.group, entry.get("offsets") or {}))
        done[target.service] = {"restored": entry["file"], "offsets": moved}
    if workspace_data is not None and manifest.get("workspace"):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(folder / manifest["workspace"]["file"]) as tar:
            tar.extractall(tmp, filter="data")
            if workspace_data.exists():
                shutil.rmtree(workspace_data)
            shutil.copytree(Path(tmp) / "workspace", workspace_data)
        done["workspace"] = {"restored": str(workspace_data)}
    return done


def make_url(url: str) -> URL:
    """SQLAlchemy's URL parser, imported on first use (it costs every `apev` command ~0.4 s to import)."""
    from sqlalchemy.engine import make_url as parse

    return parse(url)
