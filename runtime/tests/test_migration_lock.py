"""Concurrent migrations of one schema go one after the other (replicas starting together, or a replica and the
`migrate` job): PostgreSQL through an advisory lock on the schema name, SQLite through a lock file. Without the
lock, replicas upgrading a fresh PostgreSQL schema race on `CREATE SCHEMA` (`pg_namespace_nspname_index`) and
on the version table. The replicas are processes (`migrate_worker.py`), as in production."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import uuid
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database

PROCESSES = 3
RUNTIME_TABLES = {"apev_inbox", "apev_outbox", "apev_leases"}
WORKER = Path(__file__).with_name("migrate_worker.py")


def _heads() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", str(migrate.RUNTIME_VERSIONS))
    cfg.set_main_option("path_separator", "space")
    return set(ScriptDirectory.from_config(cfg).get_heads())


async def _upgrade_in_processes(url: str, schema: str | None, tmp_path: Path, n: int = PROCESSES) -> list[str]:
    """`n` replicas migrate at the same moment (each imported and connected first); their failures."""
    go = tmp_path / "go"
    env = {**os.environ, "DB_URL": url, "DB_SCHEMA": schema or "", "GO_FILE": str(go)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        for _ in range(n)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            while (line := await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
                assert line, "a worker exited before it was ready"
        go.touch()
        outputs = [(await asyncio.wait_for(proc.communicate(), 120))[0].decode() for proc in procs]
        return [out.strip()[-500:] for proc, out in zip(procs, outputs, strict=True) if proc.returncode != 0]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.postgres
async def test_replicas_migrating_a_fresh_schema_at_once_all_succeed(pg_url: str, tmp_path: Path) -> None:
    schema = f"miglock_{uuid.uuid4().hex[:10]}"
    db = create_database(pg_url, schema)
    try:
        assert await _upgrade_in_processes(pg_url, schema, tmp_path) == []
        async with db.engine.connect() as conn:
            tables = {
                r[0]
                for r in await conn.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
                )
            }
            versions = {r[0] for r in await conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))}  # noqa: S608
            versions_elsewhere = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version' "
                        "AND table_schema IN (:s, 'public')"
                    ),
                    {"s": schema},
                )
            ).scalar_one()
        assert tables == RUNTIME_TABLES | {"alembic_version"}
        assert versions == _heads()
        assert versions_elsewhere == 1  # one version table, in the service's schema
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await db.dispose()


@pytest.mark.postgres
async def test_an_upgrade_waits_for_the_schema_lock(pg_url: str) -> None:
    """Whoever holds the schema's migration lock (another replica mid-migration) holds the upgrade back; a
    different schema's lock does not."""
    schema = f"miglock_{uuid.uuid4().hex[:10]}"
    db = create_database(pg_url, schema)
    holder = create_async_engine(pg_url)
    try:
        async with holder.connect() as conn:
            other = migrate.migration_lock_key(schema + "_other")
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": other})
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrate.migration_lock_key(schema)})
            upgrade = asyncio.create_task(migrate.upgrade(db))
            await asyncio.sleep(1.0)
            assert not upgrade.done()
            created = (
                await conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema})
            ).scalar_one()
            assert created == 0  # held back before CREATE SCHEMA
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await asyncio.wait_for(upgrade, 30)
            versions = {r[0] for r in await conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))}  # noqa: S608
            assert versions == _heads()
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await conn.commit()
    finally:
        await holder.dispose()
        await db.dispose()


async def test_replicas_migrating_a_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    db = create_database(url)
    try:
        assert await _upgrade_in_processes(url, None, tmp_path, n=2) == []
        async with db.engine.connect() as conn:
            tables = {r[0] for r in await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
            versions = {r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))}
        assert RUNTIME_TABLES | {"alembic_version"} <= tables
        assert versions == _heads()
    finally:
        await db.dispose()


async def test_a_sqlite_upgrade_waits_for_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    db = create_database(f"sqlite+aiosqlite:///{path}")
    fd = os.open(f"{path}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process mid-migration
        upgrade = asyncio.create_task(migrate.upgrade(db))
        await asyncio.sleep(1.0)
        assert not upgrade.done()
        assert not path.exists() or path.stat().st_size == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        await asyncio.wait_for(upgrade, 30)
        async with db.engine.connect() as conn:
            versions = {r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))}
        assert versions == _heads()
    finally:
        os.close(fd)
        await db.dispose()
