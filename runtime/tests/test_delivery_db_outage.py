"""The service's own database goes away mid-stream (a PostgreSQL restart, a failover): delivery pauses and
redelivers, it does not spend the events' retries and dead-letter them. Nothing lost, nothing twice, no DLQ.

The outage is real at the socket level: the harness reaches PostgreSQL through a TCP relay that the test cuts
(open connections reset, new ones refused) and restores on the same port, so the driver sees exactly what a
restarting server shows it, without restarting the PostgreSQL cluster other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from apev_runtime.errors import DatabaseUnavailable, Failure, classify
from apev_runtime.testing import Harness, job_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class Relay:
    """A TCP relay to PostgreSQL that can be cut (every connection reset, new ones refused) and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()  # a reset, as a server that went away
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[Relay]:
    parts = urlsplit(pg_url)
    r = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await r.start()
    try:
        yield r
    finally:
        await r.close()


def _through(pg_url: str, port: int) -> str:
    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_a_database_outage_pauses_delivery_and_dead_letters_nothing(
    kafka_bootstrap: str, pg_url: str, relay: Relay
) -> None:
    h = Harness(kafka_bootstrap, _through(pg_url, relay.port))
    h.delivery.db_unavailable_pause_seconds = 0.2
    await h.start()
    try:
        before = [job_event(key=f"before-{i}") for i in range(20)]
        for e in before:
            await h.send(e)
        await wait_for(lambda: _all_once(h, before), what="the events before the outage")

        await relay.cut()
        during = [job_event(key=f"during-{i}") for i in range(20)]
        for e in during:
            await h.send(e)
        # The outage lasts longer than the whole retry budget would (4 attempts, 0.3 s apart at most): without
        # the pause these events would be dead-lettered as transient_exhausted.
        await asyncio.sleep(3.0)
        await relay.start()

        after = [job_event(key=f"after-{i}") for i in range(20)]
        for e in after:
            await h.send(e)
        await wait_for(lambda: _all_once(h, before + during + after), timeout=60, what="every event once")
        assert await h.dead_letters() == []
        for e in before + during + after:
            assert await h.effects(e.id) == 1, e.data.key
    finally:
        await h.stop()


async def _all_once(h: Harness, events: list) -> bool:  # type: ignore[type-arg]
    try:
        return all([await h.effects(e.id) == 1 for e in events])
    except (OSError, DatabaseUnavailable):
        return False


async def test_real_driver_errors_of_an_unreachable_database_are_classified_as_a_pause(
    pg_url: str, relay: Relay
) -> None:
    """The errors the drivers really raise: a refused connect is wrapped by the kit, a connection dropped
    mid-transaction arrives as SQLAlchemy's InterfaceError with `connection_invalidated`."""
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    url = _through(pg_url, relay.port).replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    try:
        with pytest.raises(Exception) as dropped:  # noqa: PT011 - the class is what the test learns
            async with engine.connect() as conn:
                await conn.execute(sqlalchemy.text("SELECT 1"))
                await relay.cut()
                await conn.execute(sqlalchemy.text("SELECT 1"))
        assert classify(dropped.value) is Failure.CIRCUIT_OPEN, repr(dropped.value)
    finally:
        await engine.dispose()
    assert classify(DatabaseUnavailable("refused")) is Failure.CIRCUIT_OPEN
    assert classify(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup"))) is Failure.TRANSIENT
