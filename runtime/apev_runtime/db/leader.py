"""One holder at a time of a named role per database (the outbox relay), across processes and replicas.

PostgreSQL: a session-level advisory lock, held on a dedicated connection for as long as the holder lives;
a holder that dies (or loses its connection) frees it at once. SQLite: a lease row renewed on each use and
taken over when it expires (the embedded default runs one process, but two must still not both relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import or_, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_runtime.db.engine import Database
from apev_runtime.db.tables import leases

log = structlog.get_logger("apev.leader")


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Hold the role now (taking it, keeping it, or renewing it); False while another holder has it."""
        ...

    async def release(self) -> None: ...


def advisory_key(name: str, schema: str | None) -> int:
    """A PostgreSQL advisory lock key (signed 64 bits), distinct per role name and per service schema."""
    digest = hashlib.sha256(f"apev:{name}:{schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AdvisoryLock:
    """`pg_try_advisory_lock` on a connection kept for the holder's lifetime."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        # Distinct per role and per service schema: services sharing one database relay independently.
        self.key = advisory_key(name, db.schema)
        self._conn: AsyncConnection | None = None
        # One holder may be asked from several tasks (the monitor's evaluate and notify loops): their checks
        # must not overlap on the one connection (asyncpg refuses a second operation in flight, and a failed
        # check drops the connection, hence the lock, which another replica may then take).
        self._guard = asyncio.Lock()

    async def acquire(self) -> bool:
        async with self._guard:
            return await self._acquire()

    async def _acquire(self) -> bool:
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))  # the session, hence the lock, is alive
                await self._conn.commit()
                return True
            except Exception:
                log.warning("leader_connection_lost", role=self.name, exc_info=True)
                await self._drop()
        conn = await self.db.engine.connect()
        try:
            got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar())
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        log.info("leader_acquired", role=self.name, schema=self.db.schema)
        return True

    async def release(self) -> None:
        async with self._guard:
            if self._conn is None:
                return
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                await self._conn.commit()
            except Exception:
                log.warning("leader_release_failed", role=self.name, exc_info=True)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                with contextlib.suppress(Exception):  # already closed: nothing left to free
                    await conn.invalidate()


class Lease:
    """A row (name, holder, expires_at): renewed by its holder, taken over by another once it expired."""

    def __init__(self, db: Database, name: str, *, holder: str | None = None, ttl_seconds: float = 15.0) -> None:
        self.db = db
        self.name = name
        self.holder = holder or holder_id()
        self.ttl = timedelta(seconds=ttl_seconds)

    async def acquire(self) -> bool:
        now = datetime.now(UTC)
        async with self.db.transaction() as tx:
            renewed = await tx.execute(
                update(leases)
                .where(leases.c.name == self.name, or_(leases.c.holder == self.holder, leases.c.expires_at < now))
                .values(holder=self.holder, expires_at=now + self.ttl)
            )
            if renewed.rowcount:
                return True
            created = await tx.execute(
                sqlite_insert(leases)
                .values(name=self.name, holder=self.holder, expires_at=now + self.ttl)
                .on_conflict_do_nothing()
            )
            return bool(created.rowcount)

    async def release(self) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
            )


def leadership_for(db: Database, name: str) -> Leadership:
    return AdvisoryLock(db, name) if db.dialect == "postgresql" else Lease(db, name)
