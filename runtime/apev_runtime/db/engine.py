"""One async engine per service: SQLite file by default (embedded), PostgreSQL in production and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


@dataclass
class Database:
    engine: AsyncEngine
    schema: str | None
    dialect: str

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction: committed on exit, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _loopback(url: str) -> bool:
    host = make_url(url).host or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def create_database(url: str, schema: str | None = None, *, echo: bool = False) -> Database:
    """Build the engine. With `schema` (PostgreSQL), every runtime and service table lives in that schema."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return Database(engine=engine, schema=None, dialect="sqlite")
    connect_args: dict[str, object] = {}
    if schema and url.startswith("postgresql+asyncpg"):
        # Raw SQL (text()) lands in the service's schema too, not only the mapped Table objects.
        connect_args = {"server_settings": {"search_path": f'"{schema}"'}}
    if url.startswith("postgresql+asyncpg") and _loopback(url) and "ssl" not in url:
        connect_args["ssl"] = False  # asyncpg's default tries TLS first; pointless to a loopback server
    # No pool_pre_ping: it costs a `SELECT 1` round trip per transaction. A connection that died is
    # invalidated by the failing statement (SQLAlchemy detects disconnects), the delivery kit retries the
    # message as a transient error on a fresh one; pool_recycle bounds how stale an idle one gets.
    engine = create_async_engine(url, echo=echo, pool_recycle=1800, connect_args=connect_args)
    if schema:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return Database(engine=engine, schema=schema, dialect=engine.dialect.name)
